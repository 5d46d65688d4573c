/**
 * DMA mappings through a guest's life, measured: a simulated confidential
 * guest with one assigned device, a request stream (the CVM boot scenario or
 * a random fuzz stream) run through the orchestrator, and per step the
 * mapper's and the listeners' counts, the maximal shared runs (the fewest
 * mappings that can cover shared memory), and the checker's findings.
 */
import { ConversionError, InconsistentStateError } from '../core/errors.js';
import { KiB, MiB, formatBytes } from '../core/units.js';
import { createSimulatedCvmMemory } from '../conversion/cvm.js';
import type { ConversionResult } from '../conversion/orchestrator.js';
import { apiRequest } from '../conversion/request.js';
import type { DmaCheckReport } from '../iommu/dma-checker.js';
import type { DmaMapper } from '../iommu/dma-mapper.js';
import type { DmaStrategy } from '../iommu/dma-mapping-listener.js';
import { IommufdModel, type CutBehaviour } from '../iommu/iommufd-model.js';
import { DEFAULT_DMA_ENTRY_LIMIT, VfioType1Model } from '../iommu/vfio-type1-model.js';
import { cvmBootScenario, type ScenarioRequest } from './cvm-boot.js';
import { attachDmaDevice } from './dma-device.js';
import { Rng } from './rng.js';

/** The mapping APIs a scenario can run on. */
export type DmaModel = 'vfio-type1' | 'iommufd';

/** Options for {@link runDmaScenario}. */
export interface DmaScenarioOptions {
  /** Guest RAM (one block at GPA 0). */
  readonly ramSize: number;
  /** The conversions, in order. */
  readonly requests: readonly ScenarioRequest[];
  /** The conversion granularity the orchestrator enforces. */
  readonly granularity: '4k' | '2m';
  /** The mapping API of the device. */
  readonly model: DmaModel;
  /** The device's mapping strategy. */
  readonly strategy: DmaStrategy;
  /** type1's dma_entry_limit. Default 65535. */
  readonly dmaEntryLimit?: number;
  /** iommufd's cuts. Default `work`. */
  readonly cuts?: CutBehaviour;
  /** Check after every conversion (`each`), only at the end (`end`). Default `each`. */
  readonly check?: 'each' | 'end';
  /** Count the maximal shared runs after every conversion (for the minimum). Default false: at the end only. */
  readonly runsEachStep?: boolean;
}

/** What a scenario did. */
export interface DmaScenarioResult {
  /** The mapping API of the device. */
  readonly model: DmaModel;
  /** The device's mapping strategy. */
  readonly strategy: DmaStrategy;
  /** Conversions requested. */
  readonly conversions: number;
  /** Conversions refused because the device's listener refused them (a veto: nothing changed). */
  readonly vetoed: number;
  /** Of those, refused for the mapping limit. */
  readonly limitVetoes: number;
  /** Of those, refused for a cut the mapper could not make. */
  readonly cutVetoes: number;
  /** Failures in the middle of a conversion: discard notifications that threw, inconsistent states. Must be 0. */
  readonly midConversionFailures: number;
  /** Mappings unmapped whole and mapped again around an unprepared discard (must be 0). */
  readonly remaps: number;
  /** Other refusals (validation): not the device's doing. */
  readonly otherRefusals: number;
  /** Mappings at the end. */
  readonly mappings: number;
  /** Most mappings at any time. */
  readonly peakMappings: number;
  /** Maximal shared runs at the end: the fewest mappings that can cover shared memory. */
  readonly sharedRuns: number;
  /** Most (mappings - maximal shared runs) after any conversion (when counted each step). */
  readonly maxExcess: number | undefined;
  /** Successful maps. */
  readonly mapCalls: number;
  /** Successful unmaps. */
  readonly unmapCalls: number;
  /** Cuts that split a mapping. */
  readonly cutCalls: number;
  /** Bytes pinned at the end. */
  readonly pinnedBytes: number;
  /** Most bytes pinned at any time. */
  readonly peakPinnedBytes: number;
  /** Shared bytes at the end. */
  readonly sharedBytes: number;
  /** The checker's findings (every count 0 when the strategy is safe). */
  readonly check: DmaCheckReport;
  /** Wall time of the conversions, ms. */
  readonly elapsedMs: number;
}

/** Runs `options.requests` on a simulated guest with one device attached from the start. */
export async function runDmaScenario(options: DmaScenarioOptions): Promise<DmaScenarioResult> {
  const cvm = createSimulatedCvmMemory({ ram: [{ name: 'ram', gpa: 0, size: options.ramSize }], granularity: options.granularity, verify: false });
  const mapper: DmaMapper = options.model === 'vfio-type1'
    ? new VfioType1Model({ name: 'vfio0', dmaEntryLimit: options.dmaEntryLimit ?? DEFAULT_DMA_ENTRY_LIMIT })
    : new IommufdModel({ name: 'ioas0', cuts: options.cuts ?? 'work' });
  const granule = options.strategy === 'aligned' ? (options.granularity === '2m' ? 2 * MiB : 4 * KiB) : undefined;
  const device = await attachDmaDevice(cvm, { mapper, strategy: options.strategy, check: true, ...(granule ? { granule } : {}) });
  const checker = device.checker;
  const block = cvm.memory.blocks[0];
  if (!checker || !block) throw new Error('attachDmaDevice made no checker or the guest has no block');
  let vetoed = 0;
  let mid = 0;
  let other = 0;
  let maxExcess = options.runsEachStep ? 0 : undefined;
  const runs = (): number => {
    let n = 0;
    block.manager.replayPopulated(block.region.section(), () => { n++; });
    return n;
  };
  const each = (options.check ?? 'each') === 'each';
  const start = performance.now();
  for (const r of options.requests) {
    const request = apiRequest(r.offset, r.size, r.to);
    const convert = (): Promise<ConversionResult> => cvm.orchestrator.convert(request);
    try {
      const result = await (each ? checker.around(request, convert) : convert());
      mid += result.discardFailures.length;
    } catch (error) {
      if (error instanceof ConversionError && error.reason === 'listener-veto') vetoed++;
      else if (error instanceof InconsistentStateError) mid++;
      else if (error instanceof ConversionError) other++;
      else throw error;
    }
    if (maxExcess !== undefined) maxExcess = Math.max(maxExcess, mapper.mappingCount - runs());
  }
  const elapsedMs = performance.now() - start;
  checker.checkAll();
  const stats = mapper.stats;
  const listener = device.listeners[0];
  const result: DmaScenarioResult = {
    model: options.model, strategy: options.strategy, conversions: options.requests.length,
    vetoed, limitVetoes: listener?.stats.limitRefusals ?? 0, cutVetoes: listener?.stats.cutRefusals ?? 0,
    midConversionFailures: mid, remaps: listener?.stats.remaps ?? 0, otherRefusals: other,
    mappings: stats.mappings, peakMappings: stats.peakMappings, sharedRuns: runs(), maxExcess,
    mapCalls: stats.mapCalls, unmapCalls: stats.unmapCalls, cutCalls: stats.cutCalls,
    pinnedBytes: stats.pinnedBytes, peakPinnedBytes: stats.peakPinnedBytes,
    sharedBytes: block.attributes.sharedBytes, check: checker.report, elapsedMs,
  };
  await device.detach();
  cvm.close();
  return result;
}

/** Options for {@link dmaBootRequests}. */
export interface DmaBootOptions {
  /** Guest RAM in bytes (a multiple of 2 MiB). */
  readonly ramSize: number;
  /** SWIOTLB pool as a fraction of RAM (no cap). */
  readonly swiotlbFraction: number;
  /** Runtime dma_alloc/free conversions. */
  readonly runtime: number;
  /** What each dma_alloc converts: 4 KiB, or 2 MiB for a guest that converts at 2 MiB. */
  readonly dmaGranule: number;
  /** Seed of the random placement. Default 1. */
  readonly seed?: number;
}

/** The boot pool (2 MiB requests) then the runtime churn, dma_alloc buffers outside the pool. */
export function dmaBootRequests(options: DmaBootOptions): ScenarioRequest[] {
  const phases = cvmBootScenario({
    ramSize: options.ramSize, swiotlbFraction: options.swiotlbFraction, swiotlbMax: options.ramSize,
    bootDmaPages: 0, churn: options.runtime, liveBuffers: Math.max(1, Math.min(2000, Math.floor(options.runtime / 4))),
    dmaGranule: options.dmaGranule, avoidPool: true, seed: options.seed ?? 1,
  });
  return phases.filter((p) => p.name === 'swiotlb' || p.name === 'runtime').flatMap((p) => p.requests);
}

/** Options for {@link dmaFuzzRequests}. */
export interface DmaFuzzOptions {
  /** Guest RAM in bytes. */
  readonly ramSize: number;
  /** Requests. */
  readonly count: number;
  /** Alignment and size unit of every request: 4 KiB or 2 MiB. */
  readonly unit: number;
  /** Seed of the stream. Default 7. */
  readonly seed?: number;
}

/**
 * A random stream: each request a random direction over 1 to 64 units
 * (a few much larger), anywhere in RAM. Mixed ranges and partial
 * conversions of earlier ones are the rule, not the exception.
 */
export function dmaFuzzRequests(options: DmaFuzzOptions): ScenarioRequest[] {
  const rng = new Rng(options.seed ?? 7);
  const units = options.ramSize / options.unit;
  const out: ScenarioRequest[] = [];
  for (let i = 0; i < options.count; i++) {
    const span = rng.below(16) === 0 ? 1 + rng.below(Math.min(units, 2048)) : 1 + rng.below(Math.min(units, 64));
    const first = rng.below(units - span + 1);
    out.push({ offset: first * options.unit, size: span * options.unit, to: rng.below(2) === 0 ? 'shared' : 'private' });
  }
  return out;
}

/** A one-line name for a boot scenario. */
export function describeBoot(options: DmaBootOptions): string {
  return `${formatBytes(options.ramSize)} guest, ${String(Math.round(options.swiotlbFraction * 100))}% SWIOTLB pool, runtime conversions at ${formatBytes(options.dmaGranule)}`;
}
