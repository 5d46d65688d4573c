/**
 * Which bytes of a backing store are backed right now, and which its owner
 * asked for.
 *
 *   requested   per host page (4 KiB): allocated by the owner and not discarded since
 *   backed      held in the kernel
 *   stranded    backed but not requested
 *
 * How a store's kernel backs memory is its paging policy:
 *
 *   base              4 KiB pages: backed is requested, nothing is stranded
 *   transparent-huge  shmem THP: an allocation backs the whole 2 MiB windows it
 *                     touches. The kernel fills a window's holes with folios of
 *                     whatever orders fit (a 2 MiB huge page into an empty window;
 *                     since Linux 6.14 smaller large folios elsewhere, falling back
 *                     to smaller ones when memory is fragmented), so only a whole
 *                     window gives a count that does not depend on that. A discard
 *                     splits the folio and frees exactly what it discards. Backed
 *                     is tracked per 4 KiB page.
 *   huge              hugetlb: whole huge pages are backed; a discard frees only
 *                     the huge pages left with nothing requested, so a partial
 *                     discard strands the rest of its page. Backed is tracked per
 *                     huge page.
 *
 * Both maps are {@link PageStateMap}s (shared = requested / backed), so a
 * ledger of a huge, sparsely used store costs little.
 */
import { PageStateMap } from '../core/page-state-map.js';
import type { ByteRange } from '../core/range.js';

/** How the kernel backs a store's memory (see the module documentation). */
export type PagingPolicy = 'base' | 'transparent-huge' | 'huge';

/**
 * Which bytes of a store are backed and which are requested, per 4 KiB page,
 * with the paging policy's rules for huge pages (see the module documentation).
 */
export class BackingLedger {
  /** Store size in bytes. */
  readonly size: number;
  /** Bytes per kernel page: 4 KiB, or the (transparent or hugetlb) huge page size. */
  readonly pageSize: number;
  /** Bytes per requested unit: the host page size. */
  readonly granularity: number;
  /** How the kernel backs the store. */
  readonly policy: PagingPolicy;
  /** Bytes per unit of the backed map: the page size for hugetlb, else the granularity. */
  private readonly unit: number;
  private readonly requested: PageStateMap;
  private readonly backed: PageStateMap;
  private requestedCount = 0;
  private backedCount = 0;

  constructor(size: number, pageSize: number, granularity: number, policy: PagingPolicy) {
    this.size = size;
    this.pageSize = pageSize;
    this.granularity = granularity;
    this.policy = pageSize === granularity ? 'base' : policy;
    this.unit = this.policy === 'huge' ? pageSize : granularity;
    this.requested = new PageStateMap(size / granularity);
    this.backed = this.policy === 'base' ? this.requested : new PageStateMap(size / this.unit);
  }

  /** Bytes backed in the kernel. */
  get backedBytes(): number {
    return this.backedCount * this.unit;
  }

  /** Bytes allocated by the owner and not discarded since. */
  get requestedBytes(): number {
    return this.requestedCount * this.granularity;
  }

  /** Bytes backed but not requested (the rest of huge pages). */
  get strandedBytes(): number {
    return this.backedBytes - this.requestedBytes;
  }

  /** Bytes the ledger itself holds. */
  get byteSize(): number {
    return this.requested.byteSize + (this.backed === this.requested ? 0 : this.backed.byteSize);
  }

  /** True when every byte of the range is backed. */
  isBacked(offset: number, size: number): boolean {
    const [first, end] = this.units(offset, size);
    return this.backed.nextPrivate(first, end) >= end;
  }

  /** True when any byte of the range is backed. */
  anyBacked(offset: number, size: number): boolean {
    const [first, end] = this.units(offset, size);
    return this.backed.nextShared(first, end) < end;
  }

  /** True when every byte of the (granularity-aligned) range is requested. */
  isRequested(offset: number, size: number): boolean {
    const first = offset / this.granularity;
    const end = first + size / this.granularity;
    return this.requested.nextPrivate(first, end) >= end;
  }

  /** The maximal backed runs, in ascending order. */
  backedRuns(): ByteRange[] {
    return this.runsOf(0, this.backed.pages, true);
  }

  /**
   * The range an allocation of [offset, offset + size) asks the kernel for:
   * the range itself with 4 KiB pages, else widened to whole huge pages.
   */
  allocationSpan(offset: number, size: number): ByteRange {
    if (this.policy === 'base') return { offset, size };
    const lo = Math.floor(offset / this.pageSize) * this.pageSize;
    const hi = Math.ceil((offset + size) / this.pageSize) * this.pageSize;
    return { offset: lo, size: hi - lo };
  }

  /** True when some byte of the span is not backed yet (cheaper than {@link unbackedRuns}). */
  anyUnbacked(span: ByteRange): boolean {
    const [first, end] = this.units(span.offset, span.size);
    return this.backed.nextPrivate(first, end) < end;
  }

  /** The runs of a span that are not backed yet: what an allocation of it adds (and must free again if it fails). */
  unbackedRuns(span: ByteRange): ByteRange[] {
    const [first, end] = this.units(span.offset, span.size);
    return this.runsOf(first, end, false);
  }

  /**
   * The range a discard of [offset, offset + size) must punch: for the huge
   * policy, widened at either end to the whole huge page when nothing in it
   * would be requested after the discard (so it can be freed); otherwise the
   * range itself.
   */
  discardSpan(offset: number, size: number): ByteRange {
    if (this.policy !== 'huge') return { offset, size };
    const end = offset + size;
    const headPage = Math.floor(offset / this.pageSize) * this.pageSize;
    const tailPage = Math.floor((end - 1) / this.pageSize) * this.pageSize;
    const lo = offset > headPage && this.requestedOnlyWithin(headPage, offset, end) ? headPage : offset;
    const tailEnd = tailPage + this.pageSize;
    const hi = end < tailEnd && this.requestedOnlyWithin(tailPage, offset, end) ? tailEnd : end;
    return { offset: lo, size: hi - lo };
  }

  /** Records an allocation of [offset, offset + size) whose kernel call covered `span` ({@link allocationSpan}). */
  recordAllocate(offset: number, size: number, span: ByteRange): void {
    const first = offset / this.granularity;
    const end = first + size / this.granularity;
    if (end - first === 1) {
      if (this.requested.setPage(first, true)) this.requestedCount++;
    } else {
      this.requestedCount += end - first - this.requested.countShared(first, end);
      this.requested.setRange(first, end, true);
    }
    if (this.backed === this.requested) {
      this.backedCount = this.requestedCount;
      return;
    }
    const [b0, b1] = this.units(span.offset, span.size);
    this.backedCount += b1 - b0 - this.backed.countShared(b0, b1);
    this.backed.setRange(b0, b1, true);
  }

  /** Records a discard of [offset, offset + size) whose punch covered `span` ({@link discardSpan}). */
  recordDiscard(offset: number, size: number, span: ByteRange): void {
    const first = offset / this.granularity;
    const end = first + size / this.granularity;
    if (end - first === 1) {
      if (this.requested.setPage(first, false)) this.requestedCount--;
    } else {
      this.requestedCount -= this.requested.countShared(first, end);
      this.requested.setRange(first, end, false);
    }
    if (this.backed === this.requested) {
      this.backedCount = this.requestedCount;
      return;
    }
    // Freed: the units wholly inside the punched span.
    const b0 = Math.ceil(span.offset / this.unit);
    const b1 = Math.floor((span.offset + span.size) / this.unit);
    if (b0 < b1) {
      this.backedCount -= this.backed.countShared(b0, b1);
      this.backed.setRange(b0, b1, false);
    }
  }

  /** [first, end) of the backed map's units that cover a byte range. */
  private units(offset: number, size: number): [number, number] {
    return [Math.floor(offset / this.unit), Math.ceil((offset + size) / this.unit)];
  }

  private runsOf(first: number, end: number, backed: boolean): ByteRange[] {
    const runs: ByteRange[] = [];
    this.backed.forEachRun(first, end, backed, (a, b) => runs.push({ offset: a * this.unit, size: (b - a) * this.unit }));
    return runs;
  }

  /** True when the huge page at `pageStart` has no requested byte outside [lo, hi). */
  private requestedOnlyWithin(pageStart: number, lo: number, hi: number): boolean {
    const g = this.granularity;
    const p0 = pageStart / g;
    const p1 = (pageStart + this.pageSize) / g;
    const a = Math.max(p0, lo / g);
    const b = Math.min(p1, hi / g);
    return this.requested.nextShared(p0, a) >= a && this.requested.nextShared(b, p1) >= p1;
  }
}
