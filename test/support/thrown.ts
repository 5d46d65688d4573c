import assert from 'node:assert/strict';

/**
 * Runs `fn`, asserts that it throws an instance of `type`, and returns the
 * error for closer inspection (node:assert's `throws` returns nothing).
 */
export function thrown<E>(type: abstract new (...args: never[]) => E, fn: () => unknown): E {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected ${type.name}, nothing was thrown`);
}
