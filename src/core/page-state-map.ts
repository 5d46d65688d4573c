/**
 * The state of every page of a block: shared or private. The compact
 * representation behind {@link RamBlockAttributes}.
 *
 * Pages are grouped into chunks of 512 (2 MiB of 4 KiB pages). Each chunk is
 * private, shared, or mixed, told by two bitsets with one bit per chunk:
 *
 *   someShared  somePrivate   chunk is
 *       0           1         all private
 *       1           0         all shared
 *       1           1         mixed: an entry in the chunk index, either
 *                             - a singleton: all pages in one state but one
 *                               page (the entry encodes which), or
 *                             - a leaf: 512 bits (64 bytes) in a slab.
 *
 * A single 4 KiB conversion in a uniform chunk makes a singleton, which costs
 * only its index entry; a second odd page in the chunk turns it into a leaf.
 * A leaf is freed when its chunk becomes uniform (it is not turned back into
 * a singleton). Both bitsets carry summary levels ({@link HierarchicalBitset}),
 * so finding the next chunk that holds a shared (or private) page skips
 * uniform stretches 32, 1024, 32768... chunks at a time. Costs per TiB of
 * 4 KiB pages (QEMU's flat bitmap: 32 MiB):
 *
 *   all private or all shared          130 KiB (the two bitsets)
 *   + n chunks with one odd page       + 11-21 bytes each (index entry)
 *   + n chunks with more               + about 75 bytes each (leaf + index)
 *   every chunk mixed (worst case)     34.1 MiB (1.07 x the flat bitmap)
 *
 * Invariants (checked by the property tests against a page-by-page model):
 * - a chunk has an index entry exactly when both of its bits are set;
 * - a singleton's chunk has exactly one page in the other state;
 * - a leaf is never uniform over the chunk's pages;
 * - leaf bits past the last page of the block carry no meaning.
 */
/* eslint-disable @typescript-eslint/no-non-null-assertion --
   slab and word indices are derived from chunk numbers < chunkCount and slots
   handed out by this class */
import { ChunkIndex } from './chunk-index.js';
import { HierarchicalBitset } from './hierarchical-bitset.js';
import type { RunVisitor } from './range.js';

/** Pages per chunk (one leaf). */
export const CHUNK_PAGES = 512;
const LEAF_WORDS = CHUNK_PAGES / 32;
const DEFAULT_SLAB_LEAVES = 1024;
/** Largest page count a map can hold (2 PiB of 4 KiB pages). */
export const MAX_PAGES = 2 ** 39;

// Index entries: a slot >= 0 is a leaf; a value <= -2 is a singleton, encoding
// the odd page's bit and the chunk's background state (-1 is "no entry").
function singleton(bit: number, backgroundShared: boolean): number {
  return -2 - (bit * 2 + (backgroundShared ? 1 : 0));
}
function singletonBit(entry: number): number {
  return (-2 - entry) >>> 1;
}
function singletonBackground(entry: number): boolean {
  return ((-2 - entry) & 1) === 1;
}

/**
 * Turns a walk's contiguous segments (each wanted or not) into maximal runs
 * of wanted pages for a {@link RunVisitor}.
 */
class RunCursor {
  private runStart = -1;
  stopped = false;
  private readonly visit: RunVisitor;

  constructor(visit: RunVisitor) {
    this.visit = visit;
  }

  /** The next segment [start, end), contiguous with the previous one. */
  segment(start: number, end: number, wanted: boolean): void {
    if (start >= end || this.stopped) return;
    if (wanted) {
      if (this.runStart < 0) this.runStart = start;
    } else if (this.runStart >= 0) {
      if (this.visit(this.runStart, start) === false) this.stopped = true;
      this.runStart = -1;
    }
  }

  /** Ends the walk at `end`, emitting the run still open. */
  finish(end: number): void {
    if (this.runStart >= 0 && !this.stopped) this.visit(this.runStart, end);
  }
}

/** Options for {@link PageStateMap}. */
export interface PageStateMapOptions {
  /** State of every page at creation. Default: private. */
  readonly initial?: 'private' | 'shared';
  /**
   * Leaves per slab, a power of two (default 1024, i.e. 64 KiB slabs).
   * Smaller slabs waste less memory in tiny maps; tests use them to exercise
   * slab reuse and compaction.
   */
  readonly slabLeaves?: number;
}

/** Counters describing the representation. */
export interface PageStateMapStats {
  /** Mixed chunks stored as a leaf. */
  readonly leaves: number;
  /** Mixed chunks stored as a singleton (one odd page, no leaf). */
  readonly singletons: number;
  /** Slabs of leaves allocated. */
  readonly slabs: number;
  /** How the chunk index is stored: a hash while sparse, an array once that is smaller. */
  readonly indexMode: 'hash' | 'direct';
  /** Bytes held by the representation. */
  readonly byteSize: number;
}

/** First bit in [from, hi) of a leaf whose state is not `state`, or `hi`. */
function nextDifferent(words: Int32Array, base: number, from: number, hi: number, state: boolean): number {
  const flip = state ? -1 : 0;
  let w = from >>> 5;
  let word = (words[base + w]! ^ flip) & (-1 << (from & 31));
  const lastWord = (hi - 1) >>> 5;
  for (;;) {
    if (word !== 0) {
      const bit = w * 32 + (31 - Math.clz32(word & -word));
      return bit < hi ? bit : hi;
    }
    if (++w > lastWord) return hi;
    word = words[base + w]! ^ flip;
  }
}

/**
 * One shared/private state per page of a block, in two chunk bitsets plus
 * singletons and leaves (see the module documentation above).
 */
export class PageStateMap {
  /** Number of pages. */
  readonly pages: number;
  /** Number of chunks (the last one may be short). */
  readonly chunkCount: number;
  private readonly lastChunkPages: number;
  private readonly someShared: HierarchicalBitset;
  private readonly somePrivate: HierarchicalBitset;
  private readonly index: ChunkIndex;
  private readonly slabLeaves: number;
  private readonly slabShift: number;
  private readonly slabMask: number;
  private readonly slabs: Int32Array[] = [];
  /** Head of the free-slot list, linked through word 0 of each free leaf. */
  private freeHead = -1;
  /** Slots handed out so far (free or in use); slots below this exist in slabs. */
  private slotsUsed = 0;
  private leafCount = 0;
  private singletonCount = 0;

  constructor(pages: number, options: PageStateMapOptions = {}) {
    if (!Number.isSafeInteger(pages) || pages < 0 || pages > MAX_PAGES) {
      throw new RangeError(`page count ${pages} out of range (0 .. 2^39)`);
    }
    this.pages = pages;
    this.chunkCount = Math.ceil(pages / CHUNK_PAGES);
    this.lastChunkPages = pages - (this.chunkCount - 1) * CHUNK_PAGES;
    const shared = options.initial === 'shared';
    this.someShared = new HierarchicalBitset(this.chunkCount, shared);
    this.somePrivate = new HierarchicalBitset(this.chunkCount, !shared);
    this.index = new ChunkIndex(this.chunkCount);
    this.slabLeaves = options.slabLeaves ?? DEFAULT_SLAB_LEAVES;
    if (!Number.isInteger(Math.log2(this.slabLeaves)) || this.slabLeaves > 2 ** 20) {
      throw new RangeError(`slabLeaves must be a power of two up to 2^20, got ${this.slabLeaves}`);
    }
    this.slabShift = Math.log2(this.slabLeaves);
    this.slabMask = this.slabLeaves - 1;
  }

  /** Bytes held by the representation. */
  get byteSize(): number {
    return this.someShared.byteSize + this.somePrivate.byteSize + this.index.byteSize
      + this.slabs.length * this.slabLeaves * LEAF_WORDS * 4;
  }

  /** Counters of the representation: leaves, singletons, slabs, bytes. */
  get stats(): PageStateMapStats {
    return {
      leaves: this.leafCount,
      singletons: this.singletonCount,
      slabs: this.slabs.length,
      indexMode: this.index.mode,
      byteSize: this.byteSize,
    };
  }

  /** True when page `page` is shared. */
  isShared(page: number): boolean {
    const c = (page / CHUNK_PAGES) | 0;
    if (!this.someShared.get(c)) return false;
    if (!this.somePrivate.get(c)) return true;
    const entry = this.index.get(c);
    const bit = page - c * CHUNK_PAGES;
    if (entry < 0) return (bit === singletonBit(entry)) !== singletonBackground(entry);
    const word = this.slabs[entry >>> this.slabShift]![(entry & this.slabMask) * LEAF_WORDS + (bit >>> 5)]!;
    return ((word >>> (bit & 31)) & 1) !== 0;
  }

  /** First shared page in [from, end), or `end`. */
  nextShared(from: number, end: number): number {
    return this.nextInState(from, end, true);
  }

  /** First private page in [from, end), or `end`. */
  nextPrivate(from: number, end: number): number {
    return this.nextInState(from, end, false);
  }

  /** First page in [from, end) that is shared (`shared`) or private, or `end`. */
  nextInState(from: number, end: number, shared: boolean): number {
    if (from >= end) return end;
    const has = shared ? this.someShared : this.somePrivate;
    let c = (from / CHUNK_PAGES) | 0;
    if (has.get(c)) {
      const p = this.scanChunk(c, from - c * CHUNK_PAGES, shared);
      if (p >= 0) return p < end ? p : end;
    }
    const lastChunk = ((end - 1) / CHUNK_PAGES) | 0;
    c = has.nextSet(c + 1, lastChunk + 1);
    if (c > lastChunk) return end;
    const p = this.scanChunk(c, 0, shared);
    return p < end ? p : end;
  }

  /**
   * Calls `visit(start, end)` for each maximal run of shared (`shared`) or
   * private pages within [first, end), in ascending order, in one pass: each
   * mixed chunk is looked up once and each stretch of uniform chunks costs
   * one summary query.
   */
  forEachRun(first: number, end: number, shared: boolean, visit: RunVisitor): void {
    if (first >= end) return;
    const cursor = new RunCursor(visit);
    const has = shared ? this.someShared : this.somePrivate;
    const other = shared ? this.somePrivate : this.someShared;
    const lastChunk = ((end - 1) / CHUNK_PAGES) | 0;
    let c = (first / CHUNK_PAGES) | 0;
    let p = first; // every page below p has been given to the cursor
    while (c <= lastChunk && !cursor.stopped) {
      const wanted = has.get(c);
      if (!wanted || !other.get(c)) {
        // Uniform: as is every chunk up to the next one that holds the other state.
        const next = (wanted ? other : has).nextSet(c + 1, lastChunk + 1);
        const to = next > lastChunk ? end : next * CHUNK_PAGES;
        cursor.segment(p, to, wanted);
        p = to;
        c = next;
        continue;
      }
      const base = c * CHUNK_PAGES;
      const limit = Math.min(end, base + this.chunkPages(c));
      const entry = this.index.get(c);
      if (entry < 0) {
        const odd = base + singletonBit(entry);
        const background = singletonBackground(entry) === shared;
        if (odd >= p && odd < limit) {
          cursor.segment(p, odd, background);
          cursor.segment(odd, odd + 1, !background);
          cursor.segment(odd + 1, limit, background);
        } else {
          cursor.segment(p, limit, background);
        }
      } else {
        const words = this.slabs[entry >>> this.slabShift]!;
        const wordBase = (entry & this.slabMask) * LEAF_WORDS;
        const hi = limit - base;
        for (let q = p - base; q < hi;) {
          const state = ((words[wordBase + (q >>> 5)]! >>> (q & 31)) & 1) === 1;
          const r = nextDifferent(words, wordBase, q, hi, state);
          cursor.segment(base + q, base + r, state === shared);
          q = r;
        }
      }
      p = limit;
      c++;
    }
    cursor.finish(end);
  }

  /** Number of shared pages in [first, end). */
  countShared(first: number, end: number): number {
    let n = 0;
    this.forEachRun(first, end, true, (s, e) => {
      n += e - s;
    });
    return n;
  }

  /**
   * Sets one page to shared (`true`) or private (`false`) and tells whether
   * it changed: {@link isShared} and {@link setRange} in one pass, for the
   * common 4 KiB conversion.
   */
  setPage(page: number, shared: boolean): boolean {
    const c = (page / CHUNK_PAGES) | 0;
    const sh = this.someShared.get(c);
    const pr = this.somePrivate.get(c);
    if (shared ? !pr : !sh) return false; // uniformly in the target state
    const bit = page - c * CHUNK_PAGES;
    if (!sh || !pr) {
      // Uniformly in the other state: one odd page makes a singleton.
      if (this.chunkPages(c) === 1) {
        this.markUniform(c, shared);
      } else {
        this.index.insert(c, singleton(bit, sh));
        this.singletonCount++;
        this.someShared.set(c);
        this.somePrivate.set(c);
      }
      return true;
    }
    const entry = this.index.get(c);
    if (entry < 0) {
      const odd = singletonBit(entry);
      const background = singletonBackground(entry);
      if (shared === background) {
        if (bit !== odd) return false;
        // The odd page joins the background: the chunk is uniform again.
        this.index.delete(c);
        this.singletonCount--;
        this.markUniform(c, background);
        return true;
      }
      if (bit === odd) return false;
      // A second odd page: the chunk needs a leaf (unless, in a two-page last
      // chunk, it now has no background page left).
      const slot = this.leafFromSingleton(c, entry);
      this.setLeafBits(slot, bit, bit + 1, shared);
      if (this.leafIsUniform(slot, this.chunkPages(c), shared)) {
        this.dropEntry(c);
        this.markUniform(c, shared);
      }
      return true;
    }
    const words = this.slabs[entry >>> this.slabShift]!;
    const i = (entry & this.slabMask) * LEAF_WORDS + (bit >>> 5);
    const mask = 1 << (bit & 31);
    const word = words[i]!;
    if (((word & mask) !== 0) === shared) return false;
    words[i] = word ^ mask;
    if (this.leafIsUniform(entry, this.chunkPages(c), shared)) {
      this.dropEntry(c);
      this.markUniform(c, shared);
    }
    return true;
  }

  /** Sets pages [first, end) to shared (`true`) or private (`false`). */
  setRange(first: number, end: number, shared: boolean): void {
    if (first >= end) return;
    if (end - first === 1) {
      this.setPage(first, shared);
      return;
    }
    const c0 = (first / CHUNK_PAGES) | 0;
    const c1 = ((end - 1) / CHUNK_PAGES) | 0;
    const lo = first - c0 * CHUNK_PAGES;
    const hi = end - c1 * CHUNK_PAGES;
    if (c0 === c1) {
      this.setWithinChunk(c0, lo, hi, shared);
      return;
    }
    // Partial chunks at either end go bit by bit, whole chunks in between at once:
    //
    //   chunk c0          c0+1 ...          c1
    //   [....|xxxxxx][xxxxxxxx][xxxxxxxx][xxx|.....]
    //        lo       whole chunks (a..b)     hi
    let a = c0;
    let b = c1 + 1;
    if (lo !== 0) {
      this.setWithinChunk(c0, lo, CHUNK_PAGES, shared);
      a = c0 + 1;
    }
    if (hi !== this.chunkPages(c1)) {
      this.setWithinChunk(c1, 0, hi, shared);
      b = c1;
    }
    if (a < b) this.setWholeChunks(a, b, shared);
  }

  // --- internals ---------------------------------------------------------

  private chunkPages(c: number): number {
    return c === this.chunkCount - 1 ? this.lastChunkPages : CHUNK_PAGES;
  }

  /**
   * First page of the wanted state at or after bit `start` of chunk `c`, or
   * -1. The chunk must hold at least one page of that state.
   */
  private scanChunk(c: number, start: number, shared: boolean): number {
    const len = this.chunkPages(c);
    if (start >= len) return -1;
    const other = shared ? this.somePrivate : this.someShared;
    if (!other.get(c)) return c * CHUNK_PAGES + start; // uniform, wanted state
    const entry = this.index.get(c);
    if (entry < 0) {
      const odd = singletonBit(entry);
      if (singletonBackground(entry) === shared) {
        // Every page but the odd one is wanted.
        const p = start === odd ? start + 1 : start;
        return p < len ? c * CHUNK_PAGES + p : -1;
      }
      return odd >= start ? c * CHUNK_PAGES + odd : -1;
    }
    const words = this.slabs[entry >>> this.slabShift]!;
    const base = (entry & this.slabMask) * LEAF_WORDS;
    const flip = shared ? 0 : -1;
    let w = start >>> 5;
    let word = (words[base + w]! ^ flip) & (-1 << (start & 31));
    for (;;) {
      if (word !== 0) {
        const bit = w * 32 + (31 - Math.clz32(word & -word));
        return bit < len ? c * CHUNK_PAGES + bit : -1;
      }
      if (++w === LEAF_WORDS) return -1;
      word = words[base + w]! ^ flip;
    }
  }

  /** Sets pages [lo, hi) of chunk c, 0 <= lo < hi <= chunkPages(c), hi - lo > 1. */
  private setWithinChunk(c: number, lo: number, hi: number, shared: boolean): void {
    const sh = this.someShared.get(c);
    const pr = this.somePrivate.get(c);
    if (shared ? !pr : !sh) return; // already uniformly in the target state
    const len = this.chunkPages(c);
    if (!sh || !pr) {
      // Uniformly in the other state.
      if (lo === 0 && hi === len) {
        this.markUniform(c, shared);
        return;
      }
      const slot = this.newLeaf(sh);
      this.index.insert(c, slot);
      this.leafCount++;
      this.setLeafBits(slot, lo, hi, shared);
      this.someShared.set(c);
      this.somePrivate.set(c);
      return;
    }
    let slot = this.index.get(c);
    if (slot < 0) slot = this.leafFromSingleton(c, slot);
    this.setLeafBits(slot, lo, hi, shared);
    if (this.leafIsUniform(slot, len, shared)) {
      this.dropEntry(c);
      this.markUniform(c, shared);
    }
  }

  /** Sets whole chunks [a, b) to one state, dropping the entries of mixed ones. */
  private setWholeChunks(a: number, b: number, shared: boolean): void {
    // Visit only the mixed chunks: alternate between the two bitsets.
    for (let c = this.someShared.nextSet(a, b); c < b; c = this.someShared.nextSet(c, b)) {
      if (this.somePrivate.get(c)) {
        this.dropEntry(c);
        c++;
      } else {
        c = this.somePrivate.nextSet(c, b);
      }
    }
    if (shared) {
      this.someShared.setRange(a, b);
      this.somePrivate.clearRange(a, b);
    } else {
      this.somePrivate.setRange(a, b);
      this.someShared.clearRange(a, b);
    }
  }

  private markUniform(c: number, shared: boolean): void {
    if (shared) {
      this.someShared.set(c);
      this.somePrivate.clear(c);
    } else {
      this.somePrivate.set(c);
      this.someShared.clear(c);
    }
  }

  private setLeafBits(slot: number, lo: number, hi: number, shared: boolean): void {
    const words = this.slabs[slot >>> this.slabShift]!;
    const base = (slot & this.slabMask) * LEAF_WORDS;
    const w0 = lo >>> 5;
    const w1 = (hi - 1) >>> 5;
    for (let w = w0; w <= w1; w++) {
      const from = w === w0 ? lo & 31 : 0;
      const to = w === w1 ? hi - w * 32 : 32;
      const mask = (-1 << from) & (to === 32 ? -1 : (1 << to) - 1);
      const i = base + w;
      words[i] = shared ? words[i]! | mask : words[i]! & ~mask;
    }
  }

  /** True when every page of the leaf (first `len` bits) is in state `shared`. */
  private leafIsUniform(slot: number, len: number, shared: boolean): boolean {
    const words = this.slabs[slot >>> this.slabShift]!;
    const base = (slot & this.slabMask) * LEAF_WORDS;
    const want = shared ? -1 : 0;
    const full = len >>> 5;
    for (let w = 0; w < full; w++) if (words[base + w]! !== want) return false;
    const rest = len & 31;
    if (rest === 0) return true;
    const mask = (1 << rest) - 1;
    return ((words[base + full]! ^ want) & mask) === 0;
  }

  /** Replaces a singleton entry by a leaf holding the same pages. */
  private leafFromSingleton(c: number, entry: number): number {
    const background = singletonBackground(entry);
    const odd = singletonBit(entry);
    const slot = this.newLeaf(background);
    this.setLeafBits(slot, odd, odd + 1, !background);
    this.index.update(c, slot);
    this.singletonCount--;
    this.leafCount++;
    return slot;
  }

  /** A leaf slot with every bit set to the given state (not yet in the index). */
  private newLeaf(fillShared: boolean): number {
    let slot = this.freeHead;
    if (slot >= 0) {
      this.freeHead = this.slabs[slot >>> this.slabShift]![(slot & this.slabMask) * LEAF_WORDS]!;
    } else {
      slot = this.slotsUsed++;
      if (slot === this.slabs.length * this.slabLeaves) {
        this.slabs.push(new Int32Array(this.slabLeaves * LEAF_WORDS));
      }
    }
    const base = (slot & this.slabMask) * LEAF_WORDS;
    const words = this.slabs[slot >>> this.slabShift]!;
    const fill = fillShared ? -1 : 0;
    for (let w = base; w < base + LEAF_WORDS; w++) words[w] = fill; // a loop beats fill() for 16 words
    return slot;
  }

  /** Removes a mixed chunk's index entry, freeing its leaf if it has one. */
  private dropEntry(c: number): void {
    const entry = this.index.get(c);
    this.index.delete(c);
    if (entry < 0) {
      this.singletonCount--;
      return;
    }
    this.slabs[entry >>> this.slabShift]![(entry & this.slabMask) * LEAF_WORDS] = this.freeHead;
    this.freeHead = entry;
    this.leafCount--;
    if (this.slabs.length > 1 && this.leafCount * 4 <= this.slotsUsed) this.compact();
  }

  /**
   * Moves every leaf into the lowest slabs and drops the rest, once at most a
   * quarter of the slots are in use. Amortised O(1) per freed leaf: the next
   * compaction needs another three quarters of the slots freed.
   */
  private compact(): void {
    const keep = Math.max(1, Math.ceil(this.leafCount / this.slabLeaves));
    const limit = keep * this.slabLeaves;
    // Free slots below the limit receive the leaves that live above it.
    const holes: number[] = [];
    for (let s = this.freeHead; s >= 0;) {
      if (s < limit) holes.push(s);
      s = this.slabs[s >>> this.slabShift]![(s & this.slabMask) * LEAF_WORDS]!;
    }
    this.index.remap((entry) => {
      if (entry < limit) return entry; // singletons (negative) and low leaves stay
      const to = holes.pop()!;
      const from = this.slabs[entry >>> this.slabShift]!;
      const fromBase = (entry & this.slabMask) * LEAF_WORDS;
      this.slabs[to >>> this.slabShift]!.set(from.subarray(fromBase, fromBase + LEAF_WORDS), (to & this.slabMask) * LEAF_WORDS);
      return to;
    });
    this.slabs.length = keep;
    // Rebuild the free list from what is left below the limit.
    this.freeHead = -1;
    for (const s of holes) {
      this.slabs[s >>> this.slabShift]![(s & this.slabMask) * LEAF_WORDS] = this.freeHead;
      this.freeHead = s;
    }
    // Every slot below the limit is now either in use or on the free list.
    this.slotsUsed = limit;
  }
}
