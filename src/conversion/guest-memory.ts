/**
 * Guest physical memory as the conversion path sees it: RAM blocks, each
 * with its page-state tracker and its two backings (shared and private), and
 * MMIO holes between them.
 *
 *   gpa  0 ........ block A ........ | hole (MMIO) | ..... block B ..... | unmapped ...
 *
 * A request's range is resolved into pieces, one per block, hole or
 * unmapped stretch it touches, so every piece can be validated before
 * anything changes.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { RamBlockAttributes } from '../core/ram-block-attributes.js';
import { RamDiscardManager } from '../core/ram-discard-manager.js';
import { MemoryRegion } from '../core/section.js';
import { hex, toSafeByteCount, type ByteCount } from '../core/units.js';
import type { BackingStore } from '../backing/backing-store.js';

const PAGE = 4096;

/** Options for {@link RamBlock}. */
export interface RamBlockOptions {
  /** Name in errors, traces and reports. */
  readonly name: string;
  /** Guest physical address of the block's first byte (4 KiB aligned). */
  readonly gpa: ByteCount;
  /** Size in bytes (a multiple of 4 KiB); both stores have this size. */
  readonly size: ByteCount;
  /** Where shared pages live (a memfd, or simulated). */
  readonly shared: BackingStore;
  /** Where private pages live (a guest_memfd, or simulated). */
  readonly private: BackingStore;
}

/**
 * A RAM block: its tracker (all private at first), the discard manager its
 * listeners register with, and its backings. The private backing is exposed
 * whole at creation (the guest may fault any page in while it is private).
 */
export class RamBlock {
  /** Name in errors, traces and reports. */
  readonly name: string;
  /** Guest physical address of the first byte. */
  readonly gpa: number;
  /** Bytes. */
  readonly size: number;
  /** The block as a memory region (what listeners register sections of). */
  readonly region: MemoryRegion;
  /** The region's discard manager: where listeners register. */
  readonly manager: RamDiscardManager;
  /** The block's shared/private state (the tracker). */
  readonly attributes: RamBlockAttributes;
  /** Where shared pages live. */
  readonly shared: BackingStore;
  /** Where private pages live. */
  readonly private: BackingStore;

  constructor(options: RamBlockOptions) {
    this.name = options.name;
    this.gpa = toSafeByteCount(options.gpa, `RAM block '${options.name}': gpa`);
    this.size = toSafeByteCount(options.size, `RAM block '${options.name}': size`);
    if (this.gpa % PAGE !== 0 || this.size === 0 || this.size % PAGE !== 0) {
      throw new InvalidArgumentError(`RAM block '${this.name}': ${hex(this.gpa)}+${hex(this.size)} is not a non-empty 4 KiB-aligned range`);
    }
    for (const [side, store] of [['shared', options.shared], ['private', options.private]] as const) {
      if (store.size !== this.size) {
        throw new InvalidArgumentError(`RAM block '${this.name}': the ${side} store '${store.name}' has ${hex(store.size)} bytes, the block ${hex(this.size)}`);
      }
    }
    this.shared = options.shared;
    this.private = options.private;
    this.region = new MemoryRegion(this.name, this.size);
    this.manager = new RamDiscardManager(this.region);
    this.attributes = new RamBlockAttributes(this.manager);
    this.private.expose(0, this.size);
  }

  /** One past the last guest physical address. */
  get end(): number {
    return this.gpa + this.size;
  }
}

/** A stretch of guest physical addresses that is device memory, not RAM. */
export interface MmioHole {
  /** Name in errors. */
  readonly name: string;
  /** Guest physical address of the first byte. */
  readonly gpa: number;
  /** Bytes. */
  readonly size: number;
}

/** One part of a resolved range. */
export type MemoryPiece =
  | { readonly kind: 'ram'; readonly block: RamBlock; readonly gpa: number; readonly offset: number; readonly size: number }
  | { readonly kind: 'hole'; readonly hole: MmioHole; readonly gpa: number; readonly size: number }
  | { readonly kind: 'unmapped'; readonly gpa: number; readonly size: number };

/** The blocks and holes of a guest. */
export class GuestMemory {
  /** The RAM blocks, by guest physical address. */
  readonly blocks: readonly RamBlock[];
  /** The MMIO holes, by guest physical address. */
  readonly holes: readonly MmioHole[];
  private readonly spans: readonly ({ readonly start: number; readonly end: number } & ({ readonly block: RamBlock } | { readonly hole: MmioHole }))[];

  /** @throws InvalidArgumentError when blocks or holes overlap. */
  constructor(blocks: readonly RamBlock[], holes: readonly MmioHole[] = []) {
    this.blocks = [...blocks].sort((a, b) => a.gpa - b.gpa);
    this.holes = [...holes].sort((a, b) => a.gpa - b.gpa);
    const spans = [
      ...this.blocks.map((block) => ({ start: block.gpa, end: block.end, block })),
      ...this.holes.map((hole) => ({ start: hole.gpa, end: hole.gpa + hole.size, hole })),
    ].sort((a, b) => a.start - b.start);
    for (let i = 1; i < spans.length; i++) {
      const prev = spans[i - 1];
      const cur = spans[i];
      if (prev && cur && cur.start < prev.end) {
        throw new InvalidArgumentError(`guest memory: ${describe(cur)} overlaps ${describe(prev)}`);
      }
    }
    this.spans = spans;
  }

  /** The block holding `gpa`, if any. */
  blockAt(gpa: number): RamBlock | undefined {
    return this.blocks.find((b) => gpa >= b.gpa && gpa < b.end);
  }

  /** Splits [gpa, gpa + size) into the blocks, holes and unmapped stretches it touches, in order. */
  resolve(gpa: number, size: number): MemoryPiece[] {
    const pieces: MemoryPiece[] = [];
    const end = gpa + size;
    let p = gpa;
    for (const span of this.spans) {
      if (span.end <= p) continue;
      if (span.start >= end) break;
      if (span.start > p) {
        pieces.push({ kind: 'unmapped', gpa: p, size: span.start - p });
        p = span.start;
      }
      const e = Math.min(end, span.end);
      if ('block' in span) pieces.push({ kind: 'ram', block: span.block, gpa: p, offset: p - span.block.gpa, size: e - p });
      else pieces.push({ kind: 'hole', hole: span.hole, gpa: p, size: e - p });
      p = e;
    }
    if (p < end) pieces.push({ kind: 'unmapped', gpa: p, size: end - p });
    return pieces;
  }
}

function describe(span: { readonly start: number; readonly end: number } & ({ readonly block: RamBlock } | { readonly hole: MmioHole })): string {
  const name = 'block' in span ? `RAM block '${span.block.name}'` : `MMIO hole '${span.hole.name}'`;
  return `${name} ${hex(span.start)}-${hex(span.end)}`;
}
