/**
 * A memory mapping this process owns (mmap), with views onto it.
 */
import { ResourceClosedError } from '../core/errors.js';
import { viewOf } from './ffi.js';
import { madvise, mincore, mmap, munmap, type CallContext } from './libc.js';

export class Mapping {
  /** What is mapped, for errors. */
  readonly description: string;
  /** Length in bytes. */
  readonly length: number;
  private address: bigint | undefined;
  private buffer: ArrayBuffer | undefined;

  private constructor(address: bigint, length: number, description: string) {
    this.address = address;
    this.length = length;
    this.description = description;
  }

  /**
   * Maps `length` bytes of `fd` at `offset` (or anonymous memory when fd is -1).
   *
   * @throws SystemCallError from mmap.
   */
  static map(length: number, prot: number, flags: number, fd: number, offset: number, description: string): Mapping {
    const context: CallContext = { target: description };
    return new Mapping(mmap(length, prot, flags, fd, offset, context), length, description);
  }

  /** The start address. @throws ResourceClosedError after close. */
  get start(): bigint {
    if (this.address === undefined) throw new ResourceClosedError(`mapping of ${this.description}`);
    return this.address;
  }

  get closed(): boolean {
    return this.address === undefined;
  }

  /**
   * The mapped bytes, without copying. Invalid after close (reading it then
   * would fault), so keep it no longer than the mapping.
   */
  get bytes(): Uint8Array {
    return new Uint8Array(this.arrayBuffer());
  }

  /** A DataView of the mapped bytes (same lifetime rule as {@link bytes}). */
  get dataView(): DataView {
    return new DataView(this.arrayBuffer());
  }

  /** madvise over [offset, offset + length) of the mapping. */
  advise(offset: number, length: number, advice: number): void {
    madvise(this.start + BigInt(offset), length, advice, { target: this.description, range: { offset, size: length } });
  }

  /** Resident pages of [offset, offset + length), one byte per page (mincore). */
  residency(offset = 0, length = this.length): Uint8Array {
    return mincore(this.start + BigInt(offset), length, { target: this.description });
  }

  /** Unmaps; later calls do nothing. */
  close(): void {
    if (this.address === undefined) return;
    const address = this.address;
    this.address = undefined;
    this.buffer = undefined;
    munmap(address, this.length, { target: this.description });
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private arrayBuffer(): ArrayBuffer {
    this.buffer ??= viewOf(this.start, this.length);
    return this.buffer;
  }
}
