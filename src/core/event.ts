/**
 * Disposables: subscriptions and owned resources are released through
 * `dispose()` or `using` (Symbol.dispose).
 */

/** Something that holds a resource or a subscription until disposed. */
export interface Disposable {
  /** Releases it. Calling it again does nothing. */
  dispose(): void;
  /** The same as {@link dispose}, for `using` declarations. */
  [Symbol.dispose](): void;
}

/** Builds a {@link Disposable} that runs `release` once. */
export function toDisposable(release: () => void): Disposable {
  let done = false;
  const dispose = (): void => {
    if (done) return;
    done = true;
    release();
  };
  return { dispose, [Symbol.dispose]: dispose };
}
