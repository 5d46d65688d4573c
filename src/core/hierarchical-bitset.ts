/**
 * A bitset with summary levels, for "next set bit" in O(log32 n).
 *
 *   level 0:  the bits themselves, 32 per word
 *   level 1:  bit w set  <=>  level-0 word w is non-zero
 *   level 2:  bit w set  <=>  level-1 word w is non-zero
 *   ...       up to a level that fits in one word
 *
 * Invariant (checked by the property tests): for every level k > 0, bit w of
 * level k is set exactly when word w of level k-1 is non-zero.
 *
 * Sizes are bit counts below 2^31, so every index fits the int32 bit operators.
 */
/* eslint-disable @typescript-eslint/no-non-null-assertion --
   every typed-array index here is computed from a bounds-checked bit index */

/** Index of the lowest set bit of a non-zero 32-bit word. */
function ctz(word: number): number {
  return 31 - Math.clz32(word & -word);
}

/** Mask of the bits at positions >= `bit` (0..31) of a word. */
function maskFrom(bit: number): number {
  return -1 << bit;
}

/** Mask of the bits at positions < `bit` (1..32) of a word. */
function maskBelow(bit: number): number {
  return bit >= 32 ? -1 : (1 << bit) - 1;
}

export class HierarchicalBitset {
  /** Number of bits. */
  readonly size: number;
  /** levels[0] holds the bits; levels[k] summarises levels[k - 1]. */
  private readonly levels: Int32Array[];
  /** Bit count of each level. */
  private readonly bits: number[];
  /** levels[0], kept apart for the hot single-bit paths. */
  private readonly words: Int32Array;

  /** Creates a bitset of `size` bits, all set (`fill`) or all clear. */
  constructor(size: number, fill: boolean) {
    if (!Number.isInteger(size) || size < 0 || size >= 2 ** 31) {
      throw new RangeError(`bitset size ${size} out of range`);
    }
    this.size = size;
    this.levels = [];
    this.bits = [];
    let n = size;
    do {
      const words = Math.max(1, Math.ceil(n / 32));
      this.levels.push(new Int32Array(words));
      this.bits.push(n);
      n = words;
    } while (n > 1);
    this.words = this.levels[0]!;
    if (fill && size > 0) this.setRange(0, size);
  }

  /** Bytes held by the bitset and its summaries. */
  get byteSize(): number {
    let total = 0;
    for (const level of this.levels) total += level.byteLength;
    return total;
  }

  get(i: number): boolean {
    return (this.words[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  set(i: number): void {
    const w = i >>> 5;
    const before = this.words[w]!;
    this.words[w] = before | (1 << (i & 31));
    if (before === 0 && this.levels.length > 1) this.setAt(1, w);
  }

  clear(i: number): void {
    const w = i >>> 5;
    const after = this.words[w]! & ~(1 << (i & 31));
    this.words[w] = after;
    if (after === 0 && this.levels.length > 1) this.clearAt(1, w);
  }

  /** Sets bits [start, end). */
  setRange(start: number, end: number): void {
    if (start < end) this.setRangeAt(0, start, end);
  }

  /** Clears bits [start, end). */
  clearRange(start: number, end: number): void {
    if (start < end) this.clearRangeAt(0, start, end);
  }

  /** First set bit in [from, end), or `end` if there is none. */
  nextSet(from: number, end: number): number {
    if (from >= end) return end;
    const found = this.findAt(0, from);
    return found < 0 || found >= end ? end : found;
  }

  /** True when any bit of [start, end) is set. */
  anySet(start: number, end: number): boolean {
    return this.nextSet(start, end) < end;
  }

  /** Number of set bits in [start, end). */
  count(start: number, end: number): number {
    let n = 0;
    for (let i = this.nextSet(start, end); i < end; i = this.nextSet(i + 1, end)) n++;
    return n;
  }

  // --- level-generic helpers -------------------------------------------

  private setAt(k: number, i: number): void {
    const words = this.levels[k]!;
    const w = i >>> 5;
    const before = words[w]!;
    words[w] = before | (1 << (i & 31));
    if (before === 0 && k + 1 < this.levels.length) this.setAt(k + 1, w);
  }

  private clearAt(k: number, i: number): void {
    const words = this.levels[k]!;
    const w = i >>> 5;
    const after = words[w]! & ~(1 << (i & 31));
    words[w] = after;
    if (after === 0 && k + 1 < this.levels.length) this.clearAt(k + 1, w);
  }

  private setRangeAt(k: number, start: number, end: number): void {
    const words = this.levels[k]!;
    const w0 = start >>> 5;
    const w1 = (end - 1) >>> 5;
    if (w0 === w1) {
      words[w0] = words[w0]! | (maskFrom(start & 31) & maskBelow(end - (w0 << 5)));
    } else {
      words[w0] = words[w0]! | maskFrom(start & 31);
      words.fill(-1, w0 + 1, w1);
      words[w1] = words[w1]! | maskBelow(end - (w1 << 5));
    }
    // Every word in [w0, w1] now has a set bit.
    if (k + 1 < this.levels.length) this.setRangeAt(k + 1, w0, w1 + 1);
  }

  private clearRangeAt(k: number, start: number, end: number): void {
    const words = this.levels[k]!;
    const w0 = start >>> 5;
    const w1 = (end - 1) >>> 5;
    const up = k + 1 < this.levels.length;
    if (w0 === w1) {
      const after = words[w0]! & ~(maskFrom(start & 31) & maskBelow(end - (w0 << 5)));
      words[w0] = after;
      if (after === 0 && up) this.clearAt(k + 1, w0);
      return;
    }
    const head = words[w0]! & ~maskFrom(start & 31);
    const tail = words[w1]! & ~maskBelow(end - (w1 << 5));
    words[w0] = head;
    words.fill(0, w0 + 1, w1);
    words[w1] = tail;
    if (!up) return;
    // Words strictly between w0 and w1 are now zero; the edges only if emptied.
    const lo = head === 0 ? w0 : w0 + 1;
    const hi = tail === 0 ? w1 + 1 : w1;
    if (lo < hi) this.clearRangeAt(k + 1, lo, hi);
  }

  /**
   * First set bit >= i at level k, or -1: climb while the current word has
   * nothing at or after the position, then descend through the first set
   * bits of the summaries. Iterative; the levels are few (7 for 2^31 bits).
   */
  private findAt(k: number, i: number): number {
    const levels = this.levels;
    const top = levels.length - 1;
    for (;;) {
      if (i >= this.bits[k]!) return -1;
      const w = i >>> 5;
      const word = levels[k]![w]! & maskFrom(i & 31);
      if (word !== 0) {
        i = (w << 5) + ctz(word);
        break;
      }
      if (k === top) return -1;
      i = w + 1; // the next word of level k is bit w + 1 of level k + 1
      k++;
    }
    while (k > 0) {
      k--;
      i = (i << 5) + ctz(levels[k]![i]!);
    }
    return i;
  }
}
