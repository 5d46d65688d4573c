/**
 * Backing stores: where guest memory lives. One interface, three mechanisms:
 * guest_memfd (private memory), memfd with 4 KiB pages, THP or hugetlb
 * (shared memory), and a simulated store with the same semantics and no
 * system calls.
 *
 * Semantics every store keeps (the conformance suite checks them):
 * - offsets and sizes are multiples of the host page size (4 KiB) and inside
 *   the store; anything else is an InvalidRangeError and changes nothing;
 * - allocate backs the range; already backed pages are left as they are,
 *   with their data. With huge pages it backs whole huge pages (always with
 *   hugetlb; with THP when the huge page held nothing yet);
 * - discard drops the range's data (it reads zero afterwards) and frees it;
 *   with hugetlb only whole huge pages can be freed, so a huge page of which
 *   part is discarded stays backed and the ledger shows that part as stranded
 *   until the rest of the page is discarded too;
 * - a failed call leaves the store and its ledger exactly as they were
 *   (a partial allocation is punched again), or, if even that fails, throws
 *   InconsistentStateError and refuses further use.
 */
import { InconsistentStateError, ResourceClosedError, UnsupportedOperationError } from '../core/errors.js';
import type { ByteRange } from '../core/range.js';
import { checkRange } from '../core/range.js';
import type { ByteCount } from '../core/units.js';
import { BackingLedger, type PagingPolicy } from './ledger.js';

/** The mechanism of a store. */
export type BackingKind = 'guest_memfd' | 'memfd' | 'memfd-thp' | 'hugetlb' | 'simulated';

/** Host access to a store's memory. */
export interface HostMapping {
  /** The mapping's address in this process (0 for a simulated store). */
  readonly start: bigint;
  /** Bytes mapped (the store's size). */
  readonly length: number;
  /** The memory itself (no copy); invalid once the store is closed. */
  readonly bytes: Uint8Array;
}

/** Where a range of guest memory is backed. */
export interface BackingStore {
  /** Name in errors and reports. */
  readonly name: string;
  /** The mechanism behind the store. */
  readonly kind: BackingKind;
  /** Size in bytes. */
  readonly size: number;
  /** Bytes per page the kernel backs: 4 KiB, or the huge page size. */
  readonly pageSize: number;
  /** Smallest allocate/discard unit: the host page size (4 KiB). */
  readonly granularity: number;
  /** Which bytes are backed and requested right now. */
  readonly ledger: BackingLedger;
  /** Whether {@link map} can give host access. */
  readonly mappable: boolean;
  /** True once {@link close} was called. */
  readonly closed: boolean;
  /** Backs [offset, offset + size). */
  allocate(offset: ByteCount, size: ByteCount): void;
  /** Drops [offset, offset + size): zeroes it and frees every page left unrequested. */
  discard(offset: ByteCount, size: ByteCount): void;
  /**
   * Marks [offset, offset + size) as in use without allocating it: a guest
   * will fault pages in as it touches them. The ledger counts the range as
   * requested and as possibly backed (an upper bound), so a later discard
   * punches it and a huge page keeps what is still in use.
   */
  expose(offset: ByteCount, size: ByteCount): void;
  /**
   * What the kernel holds of [offset, offset + size), one byte per 4 KiB page
   * (1: backed), including pages a guest faulted in; undefined when the store
   * cannot tell (a guest_memfd without MMAP).
   */
  residentPages(offset: ByteCount, size: ByteCount): Uint8Array | undefined;
  /** Host access to the whole store (one mapping per store, kept until close). */
  map(): HostMapping;
  /** Releases the store's memory and descriptors. */
  close(): void;
  /** The same as {@link close}, for `using`. */
  [Symbol.dispose](): void;
}

/** The part every store shares: validation, the ledger, undoing partial allocations. */
export abstract class BaseBackingStore implements BackingStore {
  readonly name: string;
  abstract readonly kind: BackingKind;
  readonly size: number;
  readonly pageSize: number;
  readonly granularity: number;
  readonly ledger: BackingLedger;
  abstract readonly mappable: boolean;
  private broken: InconsistentStateError | undefined;
  private isClosed = false;

  protected constructor(name: string, size: number, pageSize: number, granularity: number, policy: PagingPolicy) {
    this.name = name;
    this.size = size;
    this.pageSize = pageSize;
    this.granularity = granularity;
    this.ledger = new BackingLedger(size, pageSize, granularity, policy);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  allocate(offset: ByteCount, size: ByteCount): void {
    this.assertUsable();
    const r = checkRange(`${this.name}: allocate`, offset, size, this.granularity, this.size);
    const span = this.ledger.allocationSpan(r.offset, r.size);
    if (this.ledger.anyUnbacked(span)) {
      try {
        this.kernelAllocate(span.offset, span.size);
      } catch (error) {
        // The ledger still holds the state from before the call.
        this.undoAllocate(this.ledger.unbackedRuns(span), error);
        throw error;
      }
    }
    this.ledger.recordAllocate(r.offset, r.size, span);
  }

  discard(offset: ByteCount, size: ByteCount): void {
    this.assertUsable();
    const r = checkRange(`${this.name}: discard`, offset, size, this.granularity, this.size);
    const span = this.ledger.discardSpan(r.offset, r.size);
    // Nothing backed in the span: nothing to zero or free.
    if (this.ledger.anyBacked(span.offset, span.size)) this.kernelPunch(span.offset, span.size);
    this.ledger.recordDiscard(r.offset, r.size, span);
  }

  expose(offset: ByteCount, size: ByteCount): void {
    this.assertUsable();
    const r = checkRange(`${this.name}: expose`, offset, size, this.granularity, this.size);
    this.ledger.recordAllocate(r.offset, r.size, this.ledger.allocationSpan(r.offset, r.size));
  }

  residentPages(offset: ByteCount, size: ByteCount): Uint8Array | undefined {
    this.assertUsable();
    const r = checkRange(`${this.name}: resident pages`, offset, size, this.granularity, this.size);
    return this.kernelResidency(r.offset, r.size);
  }

  map(): HostMapping {
    this.assertUsable();
    if (!this.mappable) throw new UnsupportedOperationError(`${this.name}: this ${this.kind} store cannot be mapped for host access`);
    return this.hostMapping();
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.release();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** Backs [offset, offset + size) in the kernel (may have backed part of it when it throws). */
  protected abstract kernelAllocate(offset: number, size: number): void;
  /** Punches [offset, offset + size): zeroes it, frees whole pages inside it. */
  protected abstract kernelPunch(offset: number, size: number): void;
  /** The store's one host mapping (called only when mappable). */
  protected abstract hostMapping(): HostMapping;
  /** Per-4 KiB residency of a validated range, from the kernel. */
  protected abstract kernelResidency(offset: number, size: number): Uint8Array | undefined;
  /** Frees the store's resources (called once). */
  protected abstract release(): void;

  /** Punches again what a failed allocation may have backed, so the kernel matches the ledger. */
  private undoAllocate(fresh: readonly ByteRange[], cause: unknown): void {
    try {
      for (const run of fresh) this.kernelPunch(run.offset, run.size);
    } catch (error) {
      this.broken = new InconsistentStateError(
        `${this.name}: an allocation failed and what it may have backed could not be freed again `
          + `(${fresh.map((r) => `0x${r.offset.toString(16)}+0x${r.size.toString(16)}`).join(', ')}); the store refuses further use`,
        error,
      );
      throw new InconsistentStateError(this.broken.message, cause);
    }
  }

  private assertUsable(): void {
    if (this.isClosed) throw new ResourceClosedError(`backing store '${this.name}'`);
    if (this.broken) throw this.broken;
  }
}
