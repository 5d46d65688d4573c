/**
 * An assigned device's DMA mappings kept equal to the shared memory of one
 * RAM region: a {@link RamDiscardListener} that maps what is populated
 * (shared) and unmaps what is discarded (private), through a
 * {@link DmaMapper}. The IOVA of a byte is its guest physical address (the
 * section's address-space offset); its host address is the region's host
 * mapping plus the offset.
 *
 * Strategies differ only in how a populated section is cut into mappings:
 *
 *   populate [.............................]   (one maximal shared run)
 *   per-granule   |..|..|..|..|..|..|..|..|   one mapping per 4 KiB granule (QEMU)
 *   aligned       |........|........|.....|   one per 2 MiB / 1 GiB granule
 *   coalesced     |...........................|  one for the run
 *
 * Granule edges are measured in the region, and mappings are clipped to the
 * section.
 *
 * Discards never leave a mapping over memory that went private, and never
 * take a mapping from memory that stays shared:
 * - before a discard ({@link prepareDiscard}) the mappings that straddle its
 *   ends are cut there, so the unmap takes whole mappings only. Where the
 *   mapper cannot cut (type1) or the cut fails, the discard, and so the
 *   conversion, is refused: nothing has changed yet.
 * - an unprepared discard that straddles a mapping (which the protocol does
 *   not produce) is cut then; if that fails the straddling mapping is
 *   unmapped whole and what stays shared is mapped again: a transient gap,
 *   counted, but never a stale mapping.
 *
 * Populates are all or nothing: the mappings needed are counted against the
 * mapper's limit first, and a populate that would pass it is refused (a
 * veto) with an error naming the limit; a map that fails anyway undoes the
 * maps of the same populate. The same count refuses a registration whose
 * replay alone would pass the limit.
 */
import { DmaMapError, InconsistentStateError, InvalidArgumentError } from '../core/errors.js';
import type { RamDiscardListener } from '../core/ram-discard-manager.js';
import type { MemoryRegionSection } from '../core/section.js';
import { MiB, hex } from '../core/units.js';
import type { DmaMapper, DmaMapping } from './dma-mapper.js';

/** How populated sections become mappings (see the module documentation). */
export type DmaStrategy = 'per-granule' | 'coalesced' | 'aligned';

/** The strategies, in the order reports list them. */
export const DMA_STRATEGIES: readonly DmaStrategy[] = ['per-granule', 'coalesced', 'aligned'];

/** Options for {@link DmaMappingListener}. */
export interface DmaMappingListenerOptions {
  /** Names the listener in errors and traces. Default `dma:<mapper>`. */
  readonly name?: string;
  /** The container or IOAS the device is attached to (may be shared by several listeners). */
  readonly mapper: DmaMapper;
  /** How populated sections become mappings. */
  readonly strategy: DmaStrategy;
  /**
   * Mapping granule: for `per-granule` default the mapper's page size (4 KiB),
   * for `aligned` default 2 MiB (use the conversion granularity the policy
   * enforces). Ignored by `coalesced`.
   */
  readonly granule?: number;
  /** Host virtual address of the region's first byte (its shared backing). */
  readonly hostAddress: number;
}

/** What a listener has done. */
export interface DmaListenerStats {
  /** Populate notifications accepted. */
  readonly populates: number;
  /** Discard notifications handled. */
  readonly discards: number;
  /** Refusals: the limit would be passed (populate or registration). */
  readonly limitRefusals: number;
  /** Refusals: a discard needed a cut that the mapper could not make. */
  readonly cutRefusals: number;
  /** Mappings cut to prepare discards. */
  readonly cuts: number;
  /** Mappings unmapped whole and mapped again around an unprepared discard (transient gaps). */
  readonly remaps: number;
}

/** A device's DMA mappings of one RAM region (see the module documentation). */
export class DmaMappingListener implements RamDiscardListener {
  /** Names the listener in errors and traces. */
  readonly name: string;
  /** The container or IOAS it maps into. */
  readonly mapper: DmaMapper;
  /** How populated sections become mappings. */
  readonly strategy: DmaStrategy;
  /** Mapping granule in bytes (0 for coalesced). */
  readonly granule: number;
  /** Host virtual address of the region's first byte. */
  readonly hostAddress: number;
  private populates = 0;
  private discards = 0;
  private limitRefusals = 0;
  private cutRefusals = 0;
  private cuts = 0;
  private remaps = 0;

  constructor(options: DmaMappingListenerOptions) {
    const mapper = options.mapper as DmaMapper | undefined;
    if (typeof mapper?.map !== 'function') throw new InvalidArgumentError('a DmaMappingListener needs a mapper');
    this.mapper = mapper;
    const strategy = options.strategy as unknown;
    if (!DMA_STRATEGIES.includes(strategy as DmaStrategy)) {
      throw new InvalidArgumentError(`strategy must be one of ${DMA_STRATEGIES.join(', ')}, got ${JSON.stringify(strategy)}`);
    }
    this.strategy = options.strategy;
    this.name = options.name ?? `dma:${mapper.name}`;
    const granule = this.strategy === 'coalesced' ? 0 : options.granule ?? (this.strategy === 'aligned' ? 2 * MiB : mapper.pageSize);
    if (this.strategy !== 'coalesced' && (!Number.isSafeInteger(granule) || granule < mapper.pageSize || (granule & (granule - 1)) !== 0)) {
      throw new InvalidArgumentError(`${this.name}: granule must be a power of two of at least the IOMMU page size ${hex(mapper.pageSize)}, got ${String(granule)}`);
    }
    this.granule = granule;
    if (!Number.isSafeInteger(options.hostAddress) || options.hostAddress < 0 || options.hostAddress % mapper.pageSize !== 0) {
      throw new InvalidArgumentError(`${this.name}: hostAddress must be a page-aligned address, got ${String(options.hostAddress)}`);
    }
    this.hostAddress = options.hostAddress;
  }

  /** What the listener has done. */
  get stats(): DmaListenerStats {
    return {
      populates: this.populates, discards: this.discards, limitRefusals: this.limitRefusals,
      cutRefusals: this.cutRefusals, cuts: this.cuts, remaps: this.remaps,
    };
  }

  /** Mappings a section needs under this strategy. */
  mappingsFor(section: MemoryRegionSection): number {
    if (this.granule === 0) return 1;
    const g = this.granule;
    const start = section.offsetWithinRegion;
    const end = start + section.size;
    return Math.ceil(end / g) - Math.floor(start / g);
  }

  /** Refuses a registration whose replay alone would pass the mapper's limit. */
  prepareRegistration(populated: readonly MemoryRegionSection[]): void {
    let need = 0;
    for (const s of populated) need += this.mappingsFor(s);
    const first = populated[0];
    if (first) this.checkLimit(need, first.offsetWithinAddressSpace, 0, 'the registration replay');
  }

  /** Maps the section (all or nothing); refuses when the limit would be passed. */
  notifyPopulate(section: MemoryRegionSection): void {
    const need = this.mappingsFor(section);
    this.checkLimit(need, section.offsetWithinAddressSpace, section.size, 'this populate');
    const done: DmaMapping[] = [];
    try {
      this.forEachPiece(section, (iova, size, vaddr) => {
        this.mapper.map(iova, size, vaddr);
        done.push({ iova, size, vaddr });
      });
    } catch (error) {
      // All or nothing: take back what this populate mapped.
      try {
        for (let i = done.length - 1; i >= 0; i--) {
          const m = done[i];
          if (m) this.mapper.unmap(m.iova, m.size);
        }
      } catch (undoError) {
        throw new InconsistentStateError(`${this.name}: a map failed (${describe(error)}) and the maps before it could not be taken back`, undoError);
      }
      throw error;
    }
    this.populates++;
  }

  /** Cuts the mappings that straddle the section's ends; refuses when a cut is impossible or fails. */
  prepareDiscard(section: MemoryRegionSection): void {
    const start = section.offsetWithinAddressSpace;
    const end = start + section.size;
    for (const at of [start, end]) {
      const m = this.straddling(at);
      if (!m) continue;
      if (!this.mapper.canCut) {
        this.cutRefusals++;
        throw new DmaMapError({
          mapper: this.mapper.name, call: 'unmap', errnoName: 'EINVAL', iova: start, size: section.size,
          detail: `${this.mapper.kind} cannot split the mapping ${hex(m.iova)}+${hex(m.size)} at ${hex(at)}, and unmapping it whole would take DMA from memory that stays shared`,
          hint: 'map at the conversion granularity (aligned or per-granule strategy), or use iommufd',
        });
      }
      try {
        if (this.mapper.cut(at)) this.cuts++;
      } catch (error) {
        this.cutRefusals++;
        throw error;
      }
    }
  }

  /** Unmaps the section (whole mappings, after the preparation). */
  notifyDiscard(section: MemoryRegionSection): void {
    this.discards++;
    const iova = section.offsetWithinAddressSpace;
    const size = section.size;
    // Prepared discards never straddle a mapping; anything else is made safe here.
    for (const at of [iova, iova + size]) this.splitOrRemap(at, iova, iova + size);
    if (this.mapper.mappings(iova, size).length === 0) return;
    this.mapper.unmap(iova, size);
  }

  // --- internals --------------------------------------------------------------

  /** The mapping holding `at` that starts before it (which an unmap at `at` would split). */
  private straddling(at: number): DmaMapping | undefined {
    const m = this.mapper.mappings(at, 1)[0];
    return m && m.iova < at ? m : undefined;
  }

  /**
   * Makes `at` a mapping boundary without leaving [lo, hi) mapped: a cut
   * when possible, else the straddling mapping is unmapped and its parts
   * outside [lo, hi) mapped again.
   */
  private splitOrRemap(at: number, lo: number, hi: number): void {
    const m = this.straddling(at);
    if (!m) return;
    if (this.mapper.canCut && this.tryCut(at)) return;
    // No cut: the remap is safe, but leaves a gap.
    this.remaps++;
    this.mapper.unmap(m.iova, m.size);
    const end = m.iova + m.size;
    if (m.iova < lo) this.mapper.map(m.iova, lo - m.iova, m.vaddr);
    if (end > hi) this.mapper.map(hi, end - hi, m.vaddr + (hi - m.iova));
  }

  /** A cut at `at`; false when the mapper refused it (counted). */
  private tryCut(at: number): boolean {
    try {
      if (this.mapper.cut(at)) this.cuts++;
      return true;
    } catch (error) {
      if (!(error instanceof DmaMapError)) throw error;
      this.cutRefusals++;
      return false;
    }
  }

  /** Calls `fn` for each mapping a populated section becomes. */
  private forEachPiece(section: MemoryRegionSection, fn: (iova: number, size: number, vaddr: number) => void): void {
    const start = section.offsetWithinRegion;
    const end = start + section.size;
    const delta = section.offsetWithinAddressSpace - start;
    if (this.granule === 0) {
      fn(start + delta, section.size, this.hostAddress + start);
      return;
    }
    const g = this.granule;
    for (let p = start; p < end;) {
      const next = Math.min(end, (Math.floor(p / g) + 1) * g);
      fn(p + delta, next - p, this.hostAddress + p);
      p = next;
    }
  }

  /** Refuses, naming the limit, when `need` more mappings would pass it. */
  private checkLimit(need: number, iova: number, size: number, what: string): void {
    const mapper = this.mapper;
    if (mapper.mappingCount + need <= mapper.mappingLimit) return;
    this.limitRefusals++;
    throw new DmaMapError({
      mapper: mapper.name, call: 'map', errnoName: 'ENOSPC', iova, size,
      detail: `${what} needs ${String(need)} more mappings (${this.strategy}); ${String(mapper.mappingCount)} of ${mapper.limitName} ${String(mapper.mappingLimit)} are in use`,
      hint: `raise ${mapper.limitName}, use iommufd, or convert at 2 MiB with the aligned strategy`,
    });
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
