/**
 * The host side of the converting guest (convert.S): builds the scripts its
 * vCPUs run (conversions through the doorbell, reads and writes of guest
 * memory) and reads back one result per step.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { MAP_GPA_RANGE_ENCRYPTED, MAP_GPA_RANGE_PAGE_SZ_1G, MAP_GPA_RANGE_PAGE_SZ_2M } from '../conversion/request.js';

/** Script operations (see convert.S). */
export const SCRIPT_OP = { done: 0n, convert: 1n, write64: 2n, read64: 3n, fill64: 4n, sum64: 5n, write32: 6n, write8: 7n } as const;

/** Bytes per step. */
export const SCRIPT_STEP_BYTES = 32;
/** Where the results start, from the script's first byte. */
export const SCRIPT_RESULTS_OFFSET = 0x8000;
/** Steps a script can hold, the final DONE included. */
export const SCRIPT_MAX_STEPS = SCRIPT_RESULTS_OFFSET / SCRIPT_STEP_BYTES;

type Step = readonly [bigint, bigint, bigint, bigint];

/** A script for one vCPU of the converting guest. */
export class GuestScript {
  private readonly steps: Step[] = [];

  /** Steps so far (without the final DONE). */
  get length(): number {
    return this.steps.length;
  }

  /** MAP_GPA_RANGE with raw arguments (for hostile ones too); returns the step's index. */
  convert(gpa: bigint | number, npages: bigint | number, attributes: bigint | number): number {
    return this.push([SCRIPT_OP.convert, BigInt(gpa), BigInt(npages), BigInt(attributes)]);
  }

  /** Converts [gpa, gpa + size) to `to`, declaring `pageSize` (4 KiB, 2 MiB or 1 GiB). */
  request(gpa: number, size: number, to: 'private' | 'shared', pageSize = 4096): number {
    const sizeBits = pageSize === 2 ** 21 ? MAP_GPA_RANGE_PAGE_SZ_2M : pageSize === 2 ** 30 ? MAP_GPA_RANGE_PAGE_SZ_1G : 0n;
    return this.convert(gpa, size / 4096, (to === 'private' ? MAP_GPA_RANGE_ENCRYPTED : 0n) | sizeBits);
  }

  /** The guest writes the u64 `value` at `gpa`. */
  write64(gpa: bigint | number, value: bigint): number {
    return this.push([SCRIPT_OP.write64, BigInt(gpa), BigInt.asUintN(64, value), 0n]);
  }

  /** The guest reads the u64 at `gpa`. */
  read64(gpa: bigint | number): number {
    return this.push([SCRIPT_OP.read64, BigInt(gpa), 0n, 0n]);
  }

  /** The guest fills [gpa, gpa + bytes) with the u64 `value`. */
  fill64(gpa: bigint | number, bytes: number, value: bigint): number {
    return this.push([SCRIPT_OP.fill64, BigInt(gpa), BigInt(bytes), BigInt.asUintN(64, value)]);
  }

  /** The guest sums the u64s of [gpa, gpa + bytes). */
  sum64(gpa: bigint | number, bytes: number): number {
    return this.push([SCRIPT_OP.sum64, BigInt(gpa), BigInt(bytes), 0n]);
  }

  /** The guest writes the u32 `value` at `gpa` (a 4-byte access). */
  write32(gpa: bigint | number, value: number): number {
    return this.push([SCRIPT_OP.write32, BigInt(gpa), BigInt(value >>> 0), 0n]);
  }

  /** The guest writes the byte `value` at `gpa` (a 1-byte access). */
  write8(gpa: bigint | number, value: number): number {
    return this.push([SCRIPT_OP.write8, BigInt(gpa), BigInt(value & 0xff), 0n]);
  }

  /** The script as the guest reads it, DONE appended. */
  encode(): Uint8Array {
    const bytes = new Uint8Array((this.steps.length + 1) * SCRIPT_STEP_BYTES);
    const view = new DataView(bytes.buffer);
    this.steps.forEach((step, i) => {
      step.forEach((word, j) => { view.setBigUint64(i * SCRIPT_STEP_BYTES + j * 8, word, true); });
    });
    return bytes;
  }

  private push(step: Step): number {
    if (this.steps.length + 1 >= SCRIPT_MAX_STEPS) throw new InvalidArgumentError(`a guest script holds at most ${SCRIPT_MAX_STEPS - 1} steps`);
    this.steps.push(step);
    return this.steps.length - 1;
  }
}
