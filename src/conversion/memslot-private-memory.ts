/**
 * Private memory made of memslots, for kernels with guest_memfd but without
 * memory attributes (the fd-based proposal's private memslots, made real).
 * Each RAM block is laid out as its maximal runs of one state, one memslot
 * per run:
 *
 *   block   |---- private ----|- shared -|------- private -------|
 *   slots   | gmem-only slot  | memfd    | gmem-only slot        |
 *           | (gmem offset =  | (host    | (gmem offset =        |
 *           |  block offset)  |  mapping)|  block offset)        |
 *
 * A private slot binds the block's guest_memfd (created with MMAP and
 * without INIT_SHARED, so the host cannot read it) with no host address; a
 * shared slot maps the shared memory. A guest_memfd slot cannot be changed,
 * only deleted and created again, so a conversion re-lays the slots around
 * the runs that change: the layout stays canonical (neighbours of one state
 * are one slot), and only slots that differ are touched. Converting 4 KiB in
 * the middle of a private run costs four ioctls (delete one, create three),
 * converting it back four again.
 *
 * An ioctl costs about 40 µs plus 0.33 µs per MiB of the slot it creates or
 * deletes (KVM allocates and frees per-page metadata), and a little more for
 * every slot the VM has (docs/conversion.md has the measurements). So slots
 * are also cut at fixed cell boundaries (32 MiB for blocks up to 32 GiB,
 * growing with the block so that its cells need at most 1024 slots): a 4 KiB
 * conversion in a 1 TiB block re-lays slots of one cell, not of half a
 * terabyte.
 *
 * KVM allows a limited number of memslots (KVM_CAP_NR_MEMSLOTS); a change
 * that would need more is refused before any ioctl. vCPUs must be out of
 * KVM_RUN during a change: between the delete and the create a range has no
 * slot, and an access there would be an MMIO exit.
 */
import { InconsistentStateError, InvalidArgumentError } from '../core/errors.js';
import type { ByteRange } from '../core/range.js';
import { traceMemslotRelayout } from '../core/trace-events.js';
import { hex } from '../core/units.js';
import { GuestMemfdStore } from '../backing/guest-memfd-store.js';
import type { Memslot, MemslotChange } from '../kvm/memslot-rules.js';
import type { MemslotSpec } from '../kvm/vm.js';
import type { RamBlock } from './guest-memory.js';
import { NO_CHANGE, type PrivateMemory, type PrivateMemoryChange } from './private-memory.js';
import { conversionError } from './request.js';

/** What the mechanism needs of a VM (a kvm Vm is one; tests wrap one to inject failures). */
export interface MemslotTable {
  /** KVM_CAP_NR_MEMSLOTS. */
  readonly maxMemslots: number;
  /** The VM's memslots, by id. */
  readonly memslots: ReadonlyMap<number, Memslot>;
  /** Creates (or changes) a memslot. */
  setMemslot(spec: MemslotSpec): MemslotChange;
  /** Deletes a memslot. */
  deleteMemslot(slot: number): void;
}

/** Options for {@link MemslotPrivateMemory}. */
export interface MemslotPrivateMemoryOptions {
  /**
   * At most this many memslots in the VM (all of them, not only this
   * mechanism's). Default: what KVM allows.
   */
  readonly slotLimit?: number;
  /** Lowest slot id to use (lower ids are left to the caller, e.g. low RAM). Default 1. */
  readonly firstSlot?: number;
  /**
   * Largest memslot, in bytes (a power of two, at least 4 KiB): slots are
   * cut at multiples of it. Default: per block, 32 MiB or block size / 1024,
   * whichever is larger.
   */
  readonly maxSlotBytes?: number;
}

/** The default cell: 32 MiB, or larger so that a block has at most this many. */
const DEFAULT_CELL = 32 * 1024 * 1024;
const MAX_CELLS_PER_BLOCK = 1024;

/** One run of a block's layout and its memslot. */
interface Segment {
  readonly start: number;
  readonly end: number;
  readonly private: boolean;
  readonly slot: number;
}

type Shape = Omit<Segment, 'slot'>;

interface BlockLayout {
  readonly block: RamBlock;
  /** Slots never cross a multiple of this. */
  readonly cell: number;
  readonly guestMemfd: GuestMemfdStore;
  readonly sharedAddress: bigint;
  segments: Segment[];
}


/** Private memory as memslots over a guest_memfd and the shared memory. */
export class MemslotPrivateMemory implements PrivateMemory {
  /** Always `memslots`. */
  readonly kind = 'memslots' as const;
  readonly needsPause = true;
  private readonly table: MemslotTable;
  private readonly limit: number;
  private readonly firstSlot: number;
  private readonly maxSlotBytes: number | undefined;
  private readonly layouts = new Map<RamBlock, BlockLayout>();

  constructor(table: MemslotTable, options: MemslotPrivateMemoryOptions = {}) {
    this.table = table;
    const limit = options.slotLimit ?? table.maxMemslots;
    if (!Number.isSafeInteger(limit) || limit < 1) throw new InvalidArgumentError(`memslot limit must be a positive integer, got ${String(limit)}`);
    this.limit = Math.min(limit, table.maxMemslots);
    this.firstSlot = options.firstSlot ?? 1;
    if (!Number.isSafeInteger(this.firstSlot) || this.firstSlot < 0 || this.firstSlot >= table.maxMemslots) {
      throw new InvalidArgumentError(`firstSlot must be an integer from 0 to ${table.maxMemslots - 1}, got ${String(options.firstSlot)}`);
    }
    const max = options.maxSlotBytes;
    if (max !== undefined && (!Number.isSafeInteger(max) || max < 4096 || 2 ** Math.round(Math.log2(max)) !== max)) {
      throw new InvalidArgumentError(`maxSlotBytes must be a power of two of at least 4 KiB, got ${String(max)}`);
    }
    this.maxSlotBytes = max;
  }

  get memslotsInUse(): number {
    let n = 0;
    for (const layout of this.layouts.values()) n += layout.segments.length;
    return n;
  }

  /** The block's layout: its runs and their slots, ascending. */
  layoutOf(block: RamBlock): readonly Segment[] {
    return this.layout(block).segments;
  }

  /**
   * Lays the block out as private slots, one per cell.
   *
   * @throws InvalidArgumentError when the private store is not a
   *         guest_memfd or the shared store cannot be mapped;
   *         ConversionError (`memslot-limit`) when no slot is left.
   */
  addBlock(block: RamBlock): void {
    if (this.layouts.has(block)) throw new InvalidArgumentError(`memslot private memory: block '${block.name}' added twice`);
    if (!(block.private instanceof GuestMemfdStore)) {
      throw new InvalidArgumentError(`memslot private memory: block '${block.name}' needs a guest_memfd private store, not ${block.private.kind}`);
    }
    if (!block.shared.mappable) throw new InvalidArgumentError(`memslot private memory: block '${block.name}': the shared store must be mappable`);
    const cell = this.maxSlotBytes ?? Math.max(DEFAULT_CELL, 2 ** Math.ceil(Math.log2(block.size / MAX_CELLS_PER_BLOCK)));
    const layout: BlockLayout = { block, cell, guestMemfd: block.private, sharedAddress: block.shared.map().start, segments: [] };
    const whole = cut([{ start: 0, end: block.size, private: true }], cell);
    this.checkLimit(block, 0, whole.length);
    const segments = this.withSlots(block, whole, []);
    this.relayout(layout, [], segments);
    layout.segments = segments;
    this.layouts.set(block, layout);
  }

  /** Deletes the block's slots. */
  removeBlock(block: RamBlock): void {
    const layout = this.layouts.get(block);
    if (!layout) return;
    this.relayout(layout, layout.segments, []);
    this.layouts.delete(block);
  }

  plan(block: RamBlock, _range: ByteRange, runs: readonly ByteRange[], toPrivate: boolean): PrivateMemoryChange {
    const layout = this.layout(block);
    const first = runs[0];
    const last = runs[runs.length - 1];
    if (!first || !last) return NO_CHANGE;
    const segments = layout.segments;
    // The window: the segments the runs touch and one neighbour on each side,
    // which a flipped run may merge with.
    const i0 = Math.max(0, indexOf(segments, first.offset) - 1);
    const i1 = Math.min(segments.length - 1, indexOf(segments, last.offset + last.size - 1) + 1);
    const before = segments.slice(i0, i1 + 1);
    const after = cut(flip(before, runs, toPrivate), layout.cell);
    const { kept, deletes, creates } = diff(before, after);
    if (deletes.length === 0 && creates.length === 0) return NO_CHANGE;
    this.checkLimit(block, deletes.length, creates.length);
    // Everything is computed here, before the vCPUs are paused: apply() is
    // the ioctls and two assignments (JavaScript right after a system call
    // runs slowly on hosts whose system calls flush the TLB).
    let made = this.withSlots(block, creates, deletes);
    let window = merge(kept, made);
    let next = splice(segments, before, window);
    let applied = false;
    return {
      calls: deletes.length + creates.length,
      apply: () => {
        this.checkLimit(block, deletes.length, creates.length);
        if (!this.slotsFree(made, deletes)) {
          // Another block's conversion took an id since the plan.
          made = this.withSlots(block, creates, deletes);
          window = merge(kept, made);
          next = splice(segments, before, window);
        }
        this.relayout(layout, deletes, made);
        layout.segments = next;
        applied = true;
      },
      revert: () => {
        if (!applied) return;
        const back = diff(window, before.map(shape));
        try {
          const again = this.withSlots(block, back.creates, back.deletes);
          this.relayout(layout, back.deletes, again);
          layout.segments = splice(layout.segments, window, merge(back.kept, again));
          applied = false;
        } catch (error) {
          throw new InconsistentStateError(`block '${block.name}': the memslots could not be laid out again as before the conversion`, error);
        }
      },
    };
  }

  private layout(block: RamBlock): BlockLayout {
    const layout = this.layouts.get(block);
    if (!layout) throw new InvalidArgumentError(`memslot private memory: unknown block '${block.name}'`);
    return layout;
  }

  private checkLimit(block: RamBlock, deletes: number, creates: number): void {
    const after = this.table.memslots.size - deletes + creates;
    if (after > this.limit) {
      throw conversionError('memslot-limit',
        `block '${block.name}': the conversion needs ${after} memslots (deleting ${deletes}, creating ${creates}), the limit is ${this.limit}`);
    }
  }

  /**
   * Slot ids for `shapes`: first those of `freed` (deleted before these are
   * created), then ids the VM does not use.
   */
  private withSlots(block: RamBlock, shapes: readonly Shape[], freed: readonly Segment[]): Segment[] {
    const reuse = freed.map((s) => s.slot);
    let id = this.firstSlot;
    return shapes.map((shape) => {
      let slot = reuse.shift();
      if (slot === undefined) {
        while (id < this.table.maxMemslots && this.table.memslots.has(id)) id++;
        if (id >= this.table.maxMemslots) throw conversionError('memslot-limit', `block '${block.name}': no free memslot id below ${this.table.maxMemslots}`);
        slot = id++;
      }
      return { ...shape, slot };
    });
  }

  /** True when the ids of `made` are free once `deletes` are deleted. */
  private slotsFree(made: readonly Segment[], deletes: readonly Segment[]): boolean {
    return made.every((s) => !this.table.memslots.has(s.slot) || deletes.some((d) => d.slot === s.slot));
  }

  /**
   * Deletes `deletes` and creates `creates` (ids chosen), all or nothing: on
   * failure what was done is undone and the error rethrown
   * (InconsistentStateError if the undo fails as well).
   */
  private relayout(layout: BlockLayout, deletes: readonly Segment[], creates: readonly Segment[]): void {
    const undo: (() => void)[] = [];
    try {
      for (const segment of deletes) {
        this.table.deleteMemslot(segment.slot);
        undo.push(() => { this.create(layout, segment); });
      }
      for (const segment of creates) {
        this.create(layout, segment);
        undo.push(() => {
          this.table.deleteMemslot(segment.slot);
        });
      }
    } catch (error) {
      try {
        for (let i = undo.length - 1; i >= 0; i--) undo[i]?.();
      } catch (undoError) {
        throw new InconsistentStateError(
          `block '${layout.block.name}': a memslot change failed (${error instanceof Error ? error.message : String(error)}) and could not be undone`,
          undoError,
        );
      }
      throw error;
    }
    traceMemslotRelayout.emit(layout.block.name, deletes.length, creates.length, this.table.memslots.size);
  }

  private create(layout: BlockLayout, segment: Segment): void {
    const block = layout.block;
    const size = segment.end - segment.start;
    this.table.setMemslot(segment.private
      ? { slot: segment.slot, gpa: block.gpa + segment.start, size, guestMemfd: layout.guestMemfd.guestMemfd, guestMemfdOffset: segment.start }
      : { slot: segment.slot, gpa: block.gpa + segment.start, size, userspaceAddr: layout.sharedAddress + BigInt(segment.start) });
  }
}

/** Index of the segment holding `offset`. */
function indexOf(segments: readonly Segment[], offset: number): number {
  let lo = 0;
  let hi = segments.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((segments[mid]?.start ?? Infinity) <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The window's shapes after `runs` are made private (or shared), neighbours merged. */
function flip(window: readonly Segment[], runs: readonly ByteRange[], toPrivate: boolean): Shape[] {
  const out: Shape[] = [];
  const push = (start: number, end: number, priv: boolean): void => {
    if (start >= end) return;
    const prev = out[out.length - 1];
    if (prev?.private === priv && prev.end === start) out[out.length - 1] = { start: prev.start, end, private: priv };
    else out.push({ start, end, private: priv });
  };
  for (const segment of window) {
    let p = segment.start;
    // Runs are few (the changed runs of one request): a scan per segment is fine.
    for (const run of runs) {
      if (run.offset + run.size <= p) continue;
      if (run.offset >= segment.end) break;
      const a = Math.max(run.offset, p);
      const b = Math.min(run.offset + run.size, segment.end);
      push(p, a, segment.private);
      push(a, b, toPrivate);
      p = b;
    }
    push(p, segment.end, segment.private);
  }
  return out;
}

/**
 * Which segments stay, which go, which are new: one merge walk over the two
 * lists, both ascending and each a partition of the same window.
 */
function diff(before: readonly Segment[], after: readonly Shape[]): { kept: Segment[]; deletes: Segment[]; creates: Shape[] } {
  const kept: Segment[] = [];
  const deletes: Segment[] = [];
  const creates: Shape[] = [];
  let i = 0;
  for (const shape of after) {
    for (let old = before[i]; old && old.start < shape.start; old = before[++i]) deletes.push(old);
    const same = before[i];
    if (same?.start === shape.start && same.end === shape.end && same.private === shape.private) {
      kept.push(same);
      i++;
    } else {
      creates.push(shape);
    }
  }
  deletes.push(...before.slice(i));
  return { kept, deletes, creates };
}

/** The shapes cut at every multiple of `cell`. */
function cut(shapes: readonly Shape[], cell: number): Shape[] {
  const out: Shape[] = [];
  for (const s of shapes) {
    let p = s.start;
    while (p < s.end) {
      const e = Math.min(s.end, (Math.floor(p / cell) + 1) * cell);
      out.push({ start: p, end: e, private: s.private });
      p = e;
    }
  }
  return out;
}

function shape(s: Segment): Shape {
  return { start: s.start, end: s.end, private: s.private };
}

/** Two disjoint segment lists as one, ascending. */
function merge(a: readonly Segment[], b: readonly Segment[]): Segment[] {
  return [...a, ...b].sort((x, y) => x.start - y.start);
}

/** `segments` with the contiguous window `out` replaced by `replacement`. */
function splice(segments: readonly Segment[], out: readonly Segment[], replacement: readonly Segment[]): Segment[] {
  const first = out[0];
  if (!first) throw new InvalidArgumentError('memslot layout: empty window');
  const i = segments.indexOf(first);
  if (i < 0) throw new InvalidArgumentError(`memslot layout: the window at ${hex(first.start)} is not in the layout`);
  return [...segments.slice(0, i), ...replacement, ...segments.slice(i + out.length)];
}
