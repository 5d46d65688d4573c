/**
 * Units, byte counts and the one hex printer.
 *
 * Public entry points accept `number | bigint` for guest addresses and sizes
 * (a hypercall argument is a u64). Inside, everything is a plain number: x86
 * guest physical addresses are at most 52 bits wide, below 2^53, so a safe
 * integer holds every valid one. Anything that is not a safe non-negative
 * integer is rejected at the boundary by {@link toByteCount}.
 */
import { InvalidArgumentError } from './errors.js';

/** A byte offset or size as the public API accepts it. */
export type ByteCount = number | bigint;

/** 2^10 bytes. */
export const KiB = 1024;
/** 2^20 bytes. */
export const MiB = 1024 * KiB;
/** 2^30 bytes. */
export const GiB = 1024 * MiB;
/** 2^40 bytes. */
export const TiB = 1024 * GiB;

/** Largest guest physical address width on x86-64 (bits). */
export const MAX_PHYS_ADDR_BITS = 52;
/** Exclusive upper bound of any guest physical address or RAM size guestmem handles. */
export const MAX_PHYS_ADDR = 2 ** MAX_PHYS_ADDR_BITS;

/** Prints a number as QEMU's trace events do: `0x` and lower-case hex, no padding. */
export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

/**
 * Converts a byte count from the public API to a number, or reports it.
 * Returns `undefined` for a non-negative integer that is too large to be a
 * guest address (the caller reports that as out of bounds, with its range).
 *
 * @throws InvalidArgumentError for negative, fractional, NaN or non-numeric input.
 */
export function toByteCount(value: unknown, what: string): number | undefined {
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 0) {
      return value <= Number.MAX_SAFE_INTEGER ? value : undefined;
    }
  } else if (typeof value === 'bigint') {
    if (value >= 0n) {
      return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined;
    }
  }
  throw new InvalidArgumentError(`${what} must be a non-negative integer, got ${describe(value)}`);
}

/** Like {@link toByteCount}, but a value above 2^53 is an argument error too. */
export function toSafeByteCount(value: unknown, what: string): number {
  const n = toByteCount(value, what);
  if (n === undefined) {
    throw new InvalidArgumentError(`${what} is too large: ${describe(value)}`);
  }
  return n;
}

/** True for 1, 2, 4, 8, ... (any safe-integer power of two). */
export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** Checks a page or granule size: a power of two no smaller than 1 byte. */
export function checkPowerOfTwo(n: unknown, what: string): number {
  const v = toSafeByteCount(n, what);
  if (!isPowerOfTwo(v)) {
    throw new InvalidArgumentError(`${what} must be a power of two, got ${hex(v)}`);
  }
  return v;
}

/** Renders any value briefly for an error message. */
export function describe(value: unknown): string {
  if (typeof value === 'bigint') return `${hex(value)}n`;
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? hex(value) : String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null) return 'null';
  return typeof value;
}

/** Formats a byte count for people: `4 KiB`, `1.5 GiB`, `1 TiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const text = Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1);
  return `${text} ${units[u] ?? 'B'}`;
}

const SIZE_SUFFIX: Record<string, number> = { '': 1, b: 1, k: KiB, kib: KiB, m: MiB, mib: MiB, g: GiB, gib: GiB, t: TiB, tib: TiB };

/**
 * Parses a byte size as people write it: `4096`, `0x1000`, `64K`, `2M`,
 * `16G`, `1TiB` (binary units, case-insensitive).
 *
 * @throws InvalidArgumentError for anything else, or a size above 2^53.
 */
export function parseByteSize(text: string): number {
  const m = /^\s*(0x[0-9a-f]+|\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const factor = m ? SIZE_SUFFIX[(m[2] ?? '').toLowerCase()] : undefined;
  if (!m || factor === undefined) throw new InvalidArgumentError(`not a size: ${JSON.stringify(text)} (try 4096, 64K, 2M, 16G, 1T)`);
  const value = (m[1]?.startsWith('0x') ? Number.parseInt(m[1], 16) : Number(m[1])) * factor;
  if (!Number.isSafeInteger(value)) throw new InvalidArgumentError(`size ${JSON.stringify(text)} is not a whole number of bytes below 2^53`);
  return value;
}
