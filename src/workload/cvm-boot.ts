/**
 * The conversions of a confidential VM's life, as a request stream:
 *
 * 1. boot: the guest's SWIOTLB bounce pool (about 6% of RAM, at most 1 GiB,
 *    2 MiB aligned) converted to shared in 2 MiB requests, as TDX splits
 *    MapGPA; then scattered 4 KiB pages shared by dma_alloc;
 * 2. runtime: dma_alloc/free churn of 4 KiB buffers at random places;
 * 3. kexec: every shared page back to private before a kexec, in 1 GiB
 *    requests over all of RAM, as Linux's TDX kexec path does. Most of these
 *    ranges are mixed, where QEMU notifies one page at a time.
 *
 * Every request is page aligned and inside RAM; the stream is reproducible
 * from its seed.
 */
import { InvalidArgumentError } from '../core/errors.js';
import type { PageState } from '../core/ram-block-attributes.js';
import { GiB, KiB, MiB, hex, toSafeByteCount, type ByteCount } from '../core/units.js';
import { Rng } from './rng.js';

/** One conversion the guest asks for. */
export interface ScenarioRequest {
  /** First byte, within guest RAM. */
  readonly offset: number;
  /** Length in bytes. */
  readonly size: number;
  /** The state the guest asks for. */
  readonly to: PageState;
}

/** A named part of a scenario. */
export interface Phase {
  /** Short name, e.g. `swiotlb`. */
  readonly name: string;
  /** One line on what the guest does in this phase. */
  readonly description: string;
  /** The requests, in order. */
  readonly requests: readonly ScenarioRequest[];
}

/** Options for {@link cvmBootScenario}. */
export interface CvmBootOptions {
  /** Guest RAM in bytes (a multiple of 2 MiB). */
  readonly ramSize: ByteCount;
  /** SWIOTLB pool as a fraction of RAM (Linux's CoCo default: 6%). */
  readonly swiotlbFraction?: number;
  /** Cap of the pool (Linux: 1 GiB). */
  readonly swiotlbMax?: ByteCount;
  /** 4 KiB pages shared by dma_alloc during boot. Default 10,000. */
  readonly bootDmaPages?: number;
  /** dma_alloc/free operations at run time. Default 20,000. */
  readonly churn?: number;
  /** Buffers live at once during the churn. Default 2,000. */
  readonly liveBuffers?: number;
  /** Seed of the random placement. Default 1. */
  readonly seed?: number;
  /**
   * What a dma_alloc converts (boot and runtime): 4 KiB by default; 2 MiB for
   * a guest that converts at 2 MiB (the buffer's whole aligned block).
   */
  readonly dmaGranule?: number;
  /** Keep dma_alloc buffers out of the bounce pool (they come from the page allocator). Default false. */
  readonly avoidPool?: boolean;
}

const PAGE = 4 * KiB;
const HUGE = 2 * MiB;

/** The request stream of a CVM boot followed by runtime DMA churn. */
export function cvmBootScenario(options: CvmBootOptions): Phase[] {
  const ramSize = toSafeByteCount(options.ramSize, 'ramSize');
  if (ramSize === 0 || ramSize % HUGE !== 0) throw new InvalidArgumentError(`ramSize ${hex(ramSize)} must be a non-zero multiple of 2 MiB`);
  const fraction = options.swiotlbFraction ?? 0.06;
  if (!(fraction > 0 && fraction < 1)) throw new InvalidArgumentError(`swiotlbFraction must be in (0, 1), got ${fraction}`);
  const cap = toSafeByteCount(options.swiotlbMax ?? GiB, 'swiotlbMax');
  const rng = new Rng(options.seed ?? 1);

  // The pool: 2 MiB aligned, somewhere in the lower half of RAM.
  const poolSize = Math.max(HUGE, Math.floor(Math.min(ramSize * fraction, cap) / HUGE) * HUGE);
  const poolSlots = (Math.floor(ramSize / 2 / HUGE) * HUGE - poolSize) / HUGE;
  const poolStart = poolSlots > 0 ? rng.below(poolSlots + 1) * HUGE : 0;
  const pool: ScenarioRequest[] = [];
  for (let o = poolStart; o < poolStart + poolSize; o += HUGE) pool.push({ offset: o, size: HUGE, to: 'shared' });

  const unit = options.dmaGranule ?? PAGE;
  if (unit !== PAGE && unit !== HUGE) throw new InvalidArgumentError(`dmaGranule must be 4 KiB or 2 MiB, got ${hex(unit)}`);
  const units = ramSize / unit;
  const poolUnits = { first: poolStart / unit, end: (poolStart + poolSize) / unit };
  if (options.avoidPool && units - (poolUnits.end - poolUnits.first) <= 0) throw new InvalidArgumentError('the pool leaves no room for dma_alloc buffers');
  /** A random buffer's first byte (outside the pool when asked). */
  const place = options.avoidPool
    ? (): number => {
      const u = rng.below(units - (poolUnits.end - poolUnits.first));
      return (u < poolUnits.first ? u : u + (poolUnits.end - poolUnits.first)) * unit;
    }
    : (): number => rng.below(units) * unit;

  const dma: ScenarioRequest[] = [];
  for (let i = 0; i < (options.bootDmaPages ?? 10_000); i++) dma.push({ offset: place(), size: unit, to: 'shared' });

  const churn: ScenarioRequest[] = [];
  const live = new Float64Array(options.liveBuffers ?? 2_000).fill(-1);
  for (let i = 0; i < (options.churn ?? 20_000); i++) {
    const slot = rng.below(live.length);
    const page = live[slot] ?? -1;
    if (page >= 0) {
      churn.push({ offset: page, size: unit, to: 'private' });
      live[slot] = -1;
    } else {
      const p = place();
      churn.push({ offset: p, size: unit, to: 'shared' });
      live[slot] = p;
    }
  }
  const kexec: ScenarioRequest[] = [];
  for (let o = 0; o < ramSize; o += GiB) kexec.push({ offset: o, size: Math.min(GiB, ramSize - o), to: 'private' });
  return [
    { name: 'swiotlb', description: `bounce pool ${hex(poolStart)}+${hex(poolSize)} shared in 2 MiB requests`, requests: pool },
    { name: 'boot dma', description: `scattered ${unit === PAGE ? '4 KiB pages' : '2 MiB blocks'} shared by dma_alloc`, requests: dma },
    { name: 'runtime', description: `dma_alloc/free churn of ${unit === PAGE ? '4 KiB buffers' : 'buffers converted at 2 MiB'}`, requests: churn },
    { name: 'kexec', description: 'all RAM back to private in 1 GiB requests', requests: kexec },
  ];
}
