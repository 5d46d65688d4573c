/**
 * Events and disposables. An event is a function that subscribes a handler and
 * returns a {@link Disposable}; firing snapshots the handlers first, so a handler
 * may unsubscribe itself or others while the event fires.
 */

/** Something that holds a resource or a subscription until disposed. */
export interface Disposable {
  /** Releases it. Calling it again does nothing. */
  dispose(): void;
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

/** Subscribes `handler`; the returned disposable unsubscribes it. */
export type Event<T> = (handler: (value: T) => void) => Disposable;

/**
 * The producer side of an {@link Event}. Handlers that throw are isolated: the
 * others still run, and the first error is rethrown after all have run, so a
 * broken observer is loud but cannot starve the rest.
 */
export class Emitter<T> {
  private handlers: ((value: T) => void)[] = [];
  private disposed = false;

  /** The subscription function to expose to consumers. */
  readonly event: Event<T> = (handler) => {
    if (this.disposed) return toDisposable(() => undefined);
    this.handlers.push(handler);
    return toDisposable(() => {
      const i = this.handlers.indexOf(handler);
      if (i >= 0) this.handlers.splice(i, 1);
    });
  };

  /** True when at least one handler is subscribed. */
  get hasHandlers(): boolean {
    return this.handlers.length > 0;
  }

  fire(value: T): void {
    if (this.handlers.length === 0) return;
    let failure: { error: unknown } | undefined;
    for (const handler of this.handlers.slice()) {
      try {
        handler(value);
      } catch (error) {
        failure ??= { error };
      }
    }
    if (failure) throw failure.error;
  }

  /** Drops every handler; later `fire` calls and subscriptions do nothing. */
  dispose(): void {
    this.disposed = true;
    this.handlers = [];
  }
}
