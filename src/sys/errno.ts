/**
 * errno numbers to names and descriptions, from Node's own table (libuv's),
 * which covers every errno Linux returns here.
 */
import { getSystemErrorMap } from 'node:util';

const map = getSystemErrorMap();

/** `EINVAL` for 22; `E<n>` for a number the table does not know. */
export function errnoName(errno: number): string {
  return map.get(-errno)?.[0] ?? `E${errno}`;
}

/** `invalid argument` for 22. */
export function errnoDescription(errno: number): string {
  return map.get(-errno)?.[1] ?? `errno ${errno}`;
}

/** The number of an errno name (`EINVAL` -> 22), for tests and validation. */
export function errnoNumber(name: string): number {
  for (const [negative, [n]] of map) if (n === name) return -negative;
  throw new RangeError(`unknown errno name ${name}`);
}
