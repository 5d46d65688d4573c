/**
 * The kernel's DMA mapping API for an assigned device, as one interface: a
 * container (VFIO type1) or an IO address space (iommufd) into which IOVA
 * ranges are mapped onto host memory and pinned.
 *
 *   IOVA   [iova ................ iova + size)     what the device addresses (here: the GPA)
 *   host   [vaddr ............... vaddr + size)    the shared backing, pinned while mapped
 *
 * Two models implement it, each following its kernel's documented rules with
 * the kernel's errno: {@link VfioType1Model} and {@link IommufdModel}. A
 * backend driving real ioctls can implement the same interface.
 */
import { DmaMapError, InvalidArgumentError } from '../core/errors.js';
import { toDisposable, type Disposable } from '../core/event.js';
import { hex } from '../core/units.js';
import { IntervalMap } from './interval-map.js';

/** One mapping: an IOVA range onto host memory. */
export interface DmaMapping {
  /** First IOVA. */
  readonly iova: number;
  /** Length in bytes. */
  readonly size: number;
  /** Host virtual address of the first byte. */
  readonly vaddr: number;
}

/** A change a mapper made, for observers such as {@link DmaChecker}. */
export type DmaMapperEvent =
  | { readonly kind: 'map'; readonly mapping: DmaMapping }
  | { readonly kind: 'unmap'; readonly mapping: DmaMapping }
  | { readonly kind: 'cut'; readonly iova: number; readonly from: DmaMapping };

/** What a mapper has done. */
export interface DmaMapperStats {
  /** Mappings now. */
  readonly mappings: number;
  /** Most mappings at any time. */
  readonly peakMappings: number;
  /** Bytes pinned now (every mapped byte). */
  readonly pinnedBytes: number;
  /** Most bytes pinned at any time. */
  readonly peakPinnedBytes: number;
  /** Successful maps. */
  readonly mapCalls: number;
  /** Successful unmaps. */
  readonly unmapCalls: number;
  /** Cuts that split a mapping. */
  readonly cutCalls: number;
  /** Failed calls, by errno name. */
  readonly failures: Readonly<Record<string, number>>;
}

/**
 * A DMA mapping API (a VFIO container, an iommufd IOAS).
 *
 * Contract, common to both kernels:
 * - iova, size and vaddr are multiples of {@link pageSize}; size is not 0.
 * - A map never overlaps an existing mapping (EEXIST).
 * - An unmap removes whole mappings only; what it does when the range
 *   splits one depends on the kernel (see each model).
 * - Mappings never merge: two adjacent maps stay two mappings.
 * - A failed call says what it changed (normally nothing).
 */
export interface DmaMapper {
  /** Names the container in errors, e.g. `vfio0`. */
  readonly name: string;
  /** The API modelled. */
  readonly kind: 'vfio-type1' | 'iommufd';
  /** The IOMMU's smallest page: the alignment of every call. */
  readonly pageSize: number;
  /** Most mappings at once (type1's dma_entry_limit); Infinity when there is no limit. */
  readonly mappingLimit: number;
  /** The name of that limit, for messages (`dma_entry_limit`). */
  readonly limitName: string;
  /** Mappings in use. */
  readonly mappingCount: number;
  /** Whether {@link cut} exists at all (it may still fail). */
  readonly canCut: boolean;
  /** What the mapper has done. */
  readonly stats: DmaMapperStats;
  /**
   * Maps [iova, iova + size) onto host memory at vaddr and pins it.
   *
   * @throws DmaMapError: EINVAL (alignment, zero size, wrap-around), EEXIST
   *         (overlap), ENOSPC (limit), ENOMEM (pin limit); nothing changed.
   */
  map(iova: number, size: number, vaddr: number): void;
  /**
   * Unmaps every mapping inside [iova, iova + size) and unpins it.
   *
   * @returns the bytes unmapped.
   * @throws DmaMapError when the range splits a mapping (type1: EINVAL,
   *         nothing changed; iommufd: ENOENT, after unmapping the mappings
   *         before it) or is malformed.
   */
  unmap(iova: number, size: number): number;
  /**
   * Splits the mapping holding `iova` into two at `iova`, so that either
   * side can be unmapped alone. Nothing to split (iova at a boundary or
   * unmapped) is not an error.
   *
   * @returns true when a mapping was split.
   * @throws DmaMapError: ENOTTY where the API has no cut (type1),
   *         EOPNOTSUPP or ENOMEM where the driver cannot split; nothing changed.
   */
  cut(iova: number): boolean;
  /** The mappings meeting [iova, iova + size), ascending (all of them by default). */
  mappings(iova?: number, size?: number): DmaMapping[];
  /** Calls `fn` after every change. */
  onChange(fn: (event: DmaMapperEvent) => void): Disposable;
}

/** Options common to both models. */
export interface DmaMapperModelOptions {
  /** Names the container. */
  readonly name?: string;
  /** IOMMU page size. Default 4 KiB. */
  readonly pageSize?: number;
  /** RLIMIT_MEMLOCK in bytes: a map past it fails with ENOMEM. Default: none. */
  readonly memlockLimit?: number;
}

/** What the two models share: the interval tree, pinning, statistics, observers. */
export abstract class DmaMapperModel implements DmaMapper {
  readonly name: string;
  abstract readonly kind: 'vfio-type1' | 'iommufd';
  readonly pageSize: number;
  abstract readonly mappingLimit: number;
  abstract readonly limitName: string;
  abstract readonly canCut: boolean;
  protected readonly tree = new IntervalMap<DmaMapping>();
  private readonly memlockLimit: number;
  private readonly observers = new Set<(event: DmaMapperEvent) => void>();
  private peakMappings = 0;
  private peakPinned = 0;
  private mapCalls = 0;
  private unmapCalls = 0;
  private cutCalls = 0;
  private readonly failures: Record<string, number> = {};

  protected constructor(defaultName: string, options: DmaMapperModelOptions) {
    this.name = options.name ?? defaultName;
    const page = options.pageSize ?? 4096;
    if (!Number.isSafeInteger(page) || page <= 0 || (page & (page - 1)) !== 0) {
      throw new InvalidArgumentError(`${this.name}: pageSize must be a power of two, got ${String(page)}`);
    }
    this.pageSize = page;
    const memlock = options.memlockLimit ?? Infinity;
    if (!(memlock >= 0)) throw new InvalidArgumentError(`${this.name}: memlockLimit must be a byte count, got ${String(memlock)}`);
    this.memlockLimit = memlock;
  }

  get mappingCount(): number {
    return this.tree.count;
  }

  get stats(): DmaMapperStats {
    return {
      mappings: this.tree.count, peakMappings: this.peakMappings,
      pinnedBytes: this.tree.totalBytes, peakPinnedBytes: this.peakPinned,
      mapCalls: this.mapCalls, unmapCalls: this.unmapCalls, cutCalls: this.cutCalls,
      failures: { ...this.failures },
    };
  }

  mappings(iova = 0, size = Number.MAX_SAFE_INTEGER - iova): DmaMapping[] {
    return this.tree.within(iova, size);
  }

  onChange(fn: (event: DmaMapperEvent) => void): Disposable {
    const own = (event: DmaMapperEvent): void => {
      fn(event);
    };
    this.observers.add(own);
    return toDisposable(() => this.observers.delete(own));
  }

  abstract map(iova: number, size: number, vaddr: number): void;
  abstract unmap(iova: number, size: number): number;
  abstract cut(iova: number): boolean;

  // --- for the models ---------------------------------------------------------

  /** A failed call: counted, returned to be thrown. */
  protected fail(call: string, errnoName: string, iova: number, size: number, detail: string, hint?: string): DmaMapError {
    this.failures[errnoName] = (this.failures[errnoName] ?? 0) + 1;
    return new DmaMapError({ mapper: this.name, call, errnoName, iova: safe(iova), size: safe(size), detail, ...(hint ? { hint } : {}) });
  }

  /** True when every argument is a safe non-negative integer multiple of the page size. */
  protected aligned(...values: number[]): boolean {
    return values.every((v) => Number.isSafeInteger(v) && v >= 0 && v % this.pageSize === 0);
  }

  /**
   * The checks both kernels make of a map, in their order: alignment and
   * size (EINVAL), wrap-around (`wrapErrno`), overlap (EEXIST); then the
   * model's own (`more`, e.g. the entry limit); then the pin (ENOMEM).
   */
  protected checkMap(call: string, iova: number, size: number, vaddr: number, wrapErrno: string, more?: () => DmaMapError | undefined): void {
    if (size === 0 || !this.aligned(iova, size, vaddr)) {
      throw this.fail(call, 'EINVAL', iova, size, `iova, size and vaddr ${fmt(vaddr)} must be non-zero multiples of the IOMMU page size ${hex(this.pageSize)}`);
    }
    if (!Number.isSafeInteger(iova + size) || !Number.isSafeInteger(vaddr + size)) {
      throw this.fail(call, wrapErrno, iova, size, 'the range wraps around');
    }
    const overlap = this.tree.overlaps(iova, size) ? this.tree.within(iova, size)[0] : undefined;
    if (overlap) {
      // iommufd calls its mappings areas.
      const noun = this.kind === 'iommufd' ? 'area' : 'mapping';
      throw this.fail(call, 'EEXIST', iova, size, `overlaps the ${noun} ${hex(overlap.iova)}+${hex(overlap.size)}`);
    }
    const refusal = more?.() ?? this.pinLimitError(call, iova, size);
    if (refusal) throw refusal;
  }

  /** The checks both kernels make of an unmap's range: alignment and size (EINVAL), wrap-around (`wrapErrno`). */
  protected checkUnmap(call: string, iova: number, size: number, wrapErrno: string): void {
    if (size === 0 || !this.aligned(iova, size)) {
      throw this.fail(call, 'EINVAL', iova, size, `iova and size must be non-zero multiples of the IOMMU page size ${hex(this.pageSize)}`);
    }
    if (!Number.isSafeInteger(iova + size)) throw this.fail(call, wrapErrno, iova, size, 'the range wraps around');
  }

  /** The pin of a new mapping: ENOMEM past RLIMIT_MEMLOCK. */
  protected pinLimitError(call: string, iova: number, size: number): DmaMapError | undefined {
    if (this.tree.totalBytes + size <= this.memlockLimit) return undefined;
    return this.fail(call, 'ENOMEM', iova, size,
      `pinning would lock ${String(this.tree.totalBytes + size)} bytes, past RLIMIT_MEMLOCK ${String(this.memlockLimit)}`);
  }

  protected added(m: DmaMapping): void {
    this.tree.add(m);
    this.mapCalls++;
    if (this.tree.count > this.peakMappings) this.peakMappings = this.tree.count;
    if (this.tree.totalBytes > this.peakPinned) this.peakPinned = this.tree.totalBytes;
    this.emit({ kind: 'map', mapping: m });
  }

  protected removed(m: DmaMapping): void {
    this.tree.remove(m);
    this.emit({ kind: 'unmap', mapping: m });
  }

  protected unmapped(): void {
    this.unmapCalls++;
  }

  protected split(m: DmaMapping, at: number): void {
    this.tree.remove(m);
    const head = { iova: m.iova, size: at - m.iova, vaddr: m.vaddr };
    const tail = { iova: at, size: m.iova + m.size - at, vaddr: m.vaddr + (at - m.iova) };
    this.tree.add(head);
    this.tree.add(tail);
    this.cutCalls++;
    if (this.tree.count > this.peakMappings) this.peakMappings = this.tree.count;
    this.emit({ kind: 'cut', iova: at, from: m });
  }

  private emit(event: DmaMapperEvent): void {
    for (const fn of this.observers) fn(event);
  }
}

/** A value as the kernel would print it: hex, or as given when it is no address. */
function fmt(v: number): string {
  return Number.isSafeInteger(v) && v >= 0 ? hex(v) : String(v);
}

/** A value to print in an error: the number, or 0 when it is not one. */
function safe(v: number): number {
  return Number.isSafeInteger(v) && v >= 0 ? v : 0;
}
