/**
 * Byte ranges and their validation: the one place that decides whether an
 * (offset, size) pair from a caller or a guest is acceptable.
 */
import { InvalidRangeError } from './errors.js';
import { hex, toByteCount, type ByteCount } from './units.js';

/** A half-open byte range [offset, offset + size). */
export interface ByteRange {
  /** First byte. */
  readonly offset: number;
  /** Length in bytes. */
  readonly size: number;
}

/**
 * Receives maximal runs [start, end) during a walk; returning `false` stops
 * the walk (any other value continues).
 */
export type RunVisitor = (start: number, end: number) => unknown;

const U64_LIMIT = 1n << 64n;

/**
 * Validates a range against QEMU's rules (ram_block_attributes' is_valid_range),
 * in this order, so the reported reason is the first rule broken:
 *
 * 1. offset and size are multiples of `granularity`;
 * 2. size is not zero;
 * 3. offset + size does not wrap around 2^64;
 * 4. offset + size <= `limit`.
 *
 * @param what    names the object for the error message, e.g. `ram-block 'pc.ram'`.
 * @returns the range as safe numbers.
 * @throws InvalidRangeError naming the rule; InvalidArgumentError for a
 *         negative, fractional or non-numeric offset or size.
 */
export function checkRange(what: string, offset: ByteCount, size: ByteCount, granularity: number, limit: number): ByteRange {
  const fast = validRange(offset, size, granularity, limit);
  if (fast) return fast;
  const o = toByteCount(offset, `${what}: offset`);
  const s = toByteCount(size, `${what}: size`);
  if (o !== undefined && s !== undefined) {
    if (o % granularity !== 0) throw unaligned(what, offset, size, 'offset', granularity);
    if (s % granularity !== 0) throw unaligned(what, offset, size, 'size', granularity);
    if (s === 0) throw new InvalidRangeError(what, offset, size, 'zero-size', 'size is zero');
    if (o + s > limit) throw outOfBounds(what, offset, size, limit);
    return { offset: o, size: s };
  }
  // At least one value is beyond 2^53: decide in bigint, then it can only fail.
  const bo = BigInt(offset);
  const bs = BigInt(size);
  const g = BigInt(granularity);
  if (bo % g !== 0n) throw unaligned(what, offset, size, 'offset', granularity);
  if (bs % g !== 0n) throw unaligned(what, offset, size, 'size', granularity);
  if (bs === 0n) throw new InvalidRangeError(what, offset, size, 'zero-size', 'size is zero');
  if (bo + bs >= U64_LIMIT) {
    throw new InvalidRangeError(what, offset, size, 'wrap-around', 'offset + size wraps around 2^64');
  }
  throw outOfBounds(what, offset, size, limit);
}

/**
 * The common case of {@link checkRange} without building anything else: the
 * range when both values are safe-integer numbers and the range is valid,
 * `undefined` otherwise (then call checkRange for the conversion or the error).
 */
export function validRange(offset: unknown, size: unknown, granularity: number, limit: number): ByteRange | undefined {
  if (typeof offset !== 'number' || typeof size !== 'number') return undefined;
  // Plain arithmetic only (Number.isInteger and a double `%` are library
  // calls on this path). For a power-of-two granularity the quotients are
  // exact, and `offset + size <= limit` (a safe integer) bounds both values;
  // NaN fails every comparison.
  const a = offset / granularity;
  const b = size / granularity;
  if (Math.floor(a) === a && Math.floor(b) === b && offset >= 0 && size > 0 && offset + size <= limit) {
    return { offset: offset + 0, size }; // + 0 turns -0 into 0
  }
  return undefined;
}

function unaligned(what: string, offset: ByteCount, size: ByteCount, field: 'offset' | 'size', granularity: number): InvalidRangeError {
  return new InvalidRangeError(what, offset, size, field === 'offset' ? 'unaligned-offset' : 'unaligned-size',
    `${field} is not a multiple of the granularity ${hex(granularity)}`);
}

function outOfBounds(what: string, offset: ByteCount, size: ByteCount, limit: number): InvalidRangeError {
  return new InvalidRangeError(what, offset, size, 'out-of-bounds', `range ends beyond ${hex(limit)}`);
}
