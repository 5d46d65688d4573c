/**
 * Disjoint IOVA intervals in a B+ tree keyed by start (sorted-btree), the way
 * the kernel keeps vfio_dma and iopt_area nodes in trees: lookup of the
 * interval holding an address and walks over a range in O(log n + k).
 */
import sortedBtree from 'sorted-btree';

const BTree = sortedBtree.default;

/** An IOVA interval. */
export interface Interval {
  readonly iova: number;
  readonly size: number;
}

/** Disjoint intervals by IOVA. The caller keeps them disjoint. */
export class IntervalMap<T extends Interval> {
  private readonly tree = new BTree<number, T>();
  private bytes = 0;

  /** Number of intervals. */
  get count(): number {
    return this.tree.size;
  }

  /** Sum of their sizes. */
  get totalBytes(): number {
    return this.bytes;
  }

  /** The interval holding `iova`, if any. */
  at(iova: number): T | undefined {
    const pair = this.tree.getPairOrNextLower(iova);
    const m = pair?.[1];
    return m && iova < m.iova + m.size ? m : undefined;
  }

  /** True when some interval meets [iova, iova + size). */
  overlaps(iova: number, size: number): boolean {
    if (this.at(iova)) return true;
    const next = this.tree.nextHigherPair(iova);
    return next !== undefined && next[0] < iova + size;
  }

  /** The intervals meeting [iova, iova + size), ascending. */
  within(iova: number, size: number): T[] {
    const found: T[] = [];
    const first = this.at(iova);
    if (first) found.push(first);
    // Those starting inside the range (one starting at iova is `first`).
    this.tree.forRange(iova + 1, iova + size, false, (_k, m) => {
      found.push(m);
    });
    return found;
  }

  /** Adds an interval (which must not overlap any). */
  add(m: T): void {
    this.tree.set(m.iova, m);
    this.bytes += m.size;
  }

  /** Removes the interval starting at `iova`. */
  remove(m: T): void {
    if (this.tree.delete(m.iova)) this.bytes -= m.size;
  }

  /** Every interval, ascending. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (const [, m] of this.tree.entries()) yield m;
  }
}
