/**
 * Narrowing for tests: an element that must exist, a value that must be an
 * instance of a class. Each fails the test with a message instead of
 * letting `undefined` or the wrong object travel on.
 */
import assert from 'node:assert/strict';

/** `array[i]`, which must exist. */
export function at<T>(array: readonly T[], i: number): T {
  const value = array[i];
  assert.ok(value !== undefined, `no element ${i} (length ${array.length})`);
  return value;
}

/** `value`, which must not be undefined or null. */
export function defined<T>(value: T | undefined | null, what: string): T {
  assert.ok(value !== undefined && value !== null, `${what} is missing`);
  return value;
}

/** `value` as an instance of `type` (a class, even one with a private constructor), which it must be. */
export function instance<T extends object>(value: unknown, type: { readonly prototype: T; readonly name: string }): T {
  assert.ok(typeof value === 'object' && value !== null && Object.prototype.isPrototypeOf.call(type.prototype, value), `expected a ${type.name}`);
  return value as T;
}
