/**
 * Maps a chunk number to an int32 value other than -1 (a leaf slot or an
 * encoded singleton, see page-state-map.ts), for the chunks that have one.
 *
 * Two representations, whichever is smaller for the current number of entries:
 * - hash: open addressing, linear probing, backward-shift deletion; keys and
 *   values in two Int32Arrays, load factor at most 3/4. Costs 8 bytes per
 *   table slot, so about 11-21 bytes per entry: right for a few scattered
 *   mixed chunks in a huge block.
 * - direct: one Int32 per chunk. Costs 4 bytes per chunk whatever the entry
 *   count: right once most chunks have a leaf.
 * The switch happens on growth (hash -> direct) and on shrinking well below
 * the break-even point (direct -> hash), so a workload near the boundary does
 * not flip back and forth.
 */
/* eslint-disable @typescript-eslint/no-non-null-assertion --
   table indices are masked to the table size, chunk numbers are < chunkCount */

const EMPTY = -1;
const MIN_CAPACITY = 16;

export class ChunkIndex {
  /** Number of chunks (keys are 0 .. chunkCount - 1). */
  readonly chunkCount: number;
  private count = 0;
  // hash representation (used when `direct` is undefined)
  private keys: Int32Array;
  private values: Int32Array;
  private mask: number;
  private shift: number;
  // direct representation
  private direct: Int32Array | undefined;

  constructor(chunkCount: number) {
    this.chunkCount = chunkCount;
    this.keys = new Int32Array(MIN_CAPACITY).fill(EMPTY);
    this.values = new Int32Array(MIN_CAPACITY);
    this.mask = MIN_CAPACITY - 1;
    this.shift = shiftFor(MIN_CAPACITY);
    if (this.directBytes() <= this.hashBytes(MIN_CAPACITY)) this.toDirect();
  }

  /** Number of entries. */
  get size(): number {
    return this.count;
  }

  /** Which representation is in use (for tests and reports). */
  get mode(): 'hash' | 'direct' {
    return this.direct ? 'direct' : 'hash';
  }

  /** Bytes held. */
  get byteSize(): number {
    return this.direct ? this.direct.byteLength : this.keys.byteLength + this.values.byteLength;
  }

  /** The value stored for `chunk`, or -1. */
  get(chunk: number): number {
    if (this.direct) return this.direct[chunk]!;
    const keys = this.keys;
    const mask = this.mask;
    for (let i = this.home(chunk); ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === chunk) return this.values[i]!;
      if (k === EMPTY) return EMPTY;
    }
  }

  /** Stores `slot` (any int32 but -1) for `chunk`, which must not have an entry yet. */
  insert(chunk: number, slot: number): void {
    this.count++;
    if (this.direct) {
      this.direct[chunk] = slot;
      return;
    }
    if (this.count * 4 > (this.mask + 1) * 3) {
      const capacity = (this.mask + 1) * 2;
      if (this.directBytes() <= this.hashBytes(capacity)) {
        this.toDirect();
        this.direct![chunk] = slot;
        return;
      }
      this.rehash(capacity);
    }
    this.put(chunk, slot);
  }

  /** Replaces the value of `chunk`, which must have an entry. */
  update(chunk: number, value: number): void {
    if (this.direct) {
      this.direct[chunk] = value;
      return;
    }
    const keys = this.keys;
    const mask = this.mask;
    let i = this.home(chunk);
    while (keys[i] !== chunk) i = (i + 1) & mask;
    this.values[i] = value;
  }

  /** Removes the entry of `chunk`, which must exist. */
  delete(chunk: number): void {
    this.count--;
    if (this.direct) {
      this.direct[chunk] = EMPTY;
      // Back to a hash once it would take at most half the direct array.
      const capacity = capacityFor(this.count);
      if (this.hashBytes(capacity) * 2 <= this.directBytes()) this.toHash(capacity);
      return;
    }
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    let i = this.home(chunk);
    while (keys[i] !== chunk) i = (i + 1) & mask;
    // Backward-shift deletion: pull later members of the probe run into the hole.
    let hole = i;
    for (let j = (i + 1) & mask; keys[j] !== EMPTY; j = (j + 1) & mask) {
      const home = this.home(keys[j]!);
      // Move j into the hole unless its home lies cyclically in (hole, j].
      const inRange = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!inRange) {
        keys[hole] = keys[j]!;
        values[hole] = values[j]!;
        hole = j;
      }
    }
    keys[hole] = EMPTY;
    const capacity = this.mask + 1;
    if (capacity > MIN_CAPACITY && this.count * 8 < capacity) this.rehash(capacity / 2);
  }

  /** Calls `fn(chunk, slot)` for every entry, in no particular order. */
  forEach(fn: (chunk: number, slot: number) => void): void {
    if (this.direct) {
      const d = this.direct;
      for (let c = 0; c < d.length; c++) if (d[c]! !== EMPTY) fn(c, d[c]!);
      return;
    }
    for (let i = 0; i <= this.mask; i++) if (this.keys[i]! !== EMPTY) fn(this.keys[i]!, this.values[i]!);
  }

  /** Replaces every entry's value by `fn(value)`, in place. */
  remap(fn: (slot: number) => number): void {
    const values = this.direct ?? this.values;
    const present = this.direct ?? this.keys;
    for (let i = 0; i < values.length; i++) if (present[i]! !== EMPTY) values[i] = fn(values[i]!);
  }

  private put(chunk: number, slot: number): void {
    const keys = this.keys;
    const mask = this.mask;
    let i = this.home(chunk);
    while (keys[i] !== EMPTY) i = (i + 1) & mask;
    keys[i] = chunk;
    this.values[i] = slot;
  }

  private rehash(capacity: number): void {
    const oldKeys = this.keys;
    const oldValues = this.values;
    this.keys = new Int32Array(capacity).fill(EMPTY);
    this.values = new Int32Array(capacity);
    this.mask = capacity - 1;
    this.shift = shiftFor(capacity);
    for (let i = 0; i < oldKeys.length; i++) {
      if (oldKeys[i]! !== EMPTY) this.put(oldKeys[i]!, oldValues[i]!);
    }
  }

  private toDirect(): void {
    const direct = new Int32Array(this.chunkCount).fill(EMPTY);
    for (let i = 0; i <= this.mask; i++) {
      if (this.keys[i]! !== EMPTY) direct[this.keys[i]!] = this.values[i]!;
    }
    this.direct = direct;
    this.keys = new Int32Array(0);
    this.values = new Int32Array(0);
    this.mask = -1;
  }

  private toHash(capacity: number): void {
    const direct = this.direct!;
    this.direct = undefined;
    this.keys = new Int32Array(capacity).fill(EMPTY);
    this.values = new Int32Array(capacity);
    this.mask = capacity - 1;
    this.shift = shiftFor(capacity);
    for (let c = 0; c < direct.length; c++) if (direct[c]! !== EMPTY) this.put(c, direct[c]!);
  }

  /** Home slot of a key: Fibonacci hashing, keeping the well-mixed high bits. */
  private home(chunk: number): number {
    return Math.imul(chunk, 0x9e3779b1) >>> this.shift;
  }

  private hashBytes(capacity: number): number {
    return capacity * 8;
  }

  private directBytes(): number {
    return this.chunkCount * 4;
  }
}

/** Right shift that leaves log2(capacity) bits of a 32-bit hash. */
function shiftFor(capacity: number): number {
  return 32 - Math.log2(capacity);
}

/** Smallest power-of-two table that holds `count` entries at load <= 3/4. */
function capacityFor(count: number): number {
  let capacity = MIN_CAPACITY;
  while (count * 4 > capacity * 3) capacity *= 2;
  return capacity;
}
