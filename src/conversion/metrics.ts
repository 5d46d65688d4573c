/**
 * What the conversion path counts: conversions by direction and size, pages
 * converted, refusals by reason, a latency histogram per step, commit
 * failures, and what the backings hold (filled in by an audit).
 */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import type { ConversionFailure } from '../core/errors.js';
import type { PageState } from '../core/ram-block-attributes.js';
import { GiB, MiB } from '../core/units.js';

/** The steps of a conversion, timed separately. */
export const CONVERSION_STEPS = [
  'validate', 'lock-wait', 'pause', 'listeners-discard', 'private-memory', 'preallocate', 'tracker', 'commit', 'verify', 'total',
] as const;
/** One of {@link CONVERSION_STEPS}. */
export type ConversionStep = (typeof CONVERSION_STEPS)[number];

/**
 * A conversion's clock: each lap charges the time since the previous one to
 * a step (one clock read per step).
 */
export class Laps {
  private readonly start: number;
  private last: number;
  private readonly times: Partial<Record<ConversionStep, number>> = {};

  constructor() {
    this.start = this.last = Number(process.hrtime.bigint());
  }

  /** Charges the time since the last lap (or the start) to `step`. */
  lap(step: ConversionStep): void {
    const t = Number(process.hrtime.bigint());
    this.times[step] = (this.times[step] ?? 0) + t - this.last;
    this.last = t;
  }

  /** Stops the clock: the steps' times and the total. */
  end(): Partial<Record<ConversionStep, number>> {
    this.times.total = Number(process.hrtime.bigint()) - this.start;
    return this.times;
  }
}

/** Request sizes, as reports group them. */
export const SIZE_CLASSES = ['4k', 'up-to-2m', 'up-to-1g', 'larger'] as const;
/** One of {@link SIZE_CLASSES}. */
export type SizeClass = (typeof SIZE_CLASSES)[number];

/** The size class of a request of `size` bytes. */
export function sizeClassOf(size: number): SizeClass {
  return size <= 4096 ? '4k' : size <= 2 * MiB ? 'up-to-2m' : size <= GiB ? 'up-to-1g' : 'larger';
}

/** A latency distribution in nanoseconds. */
export interface LatencySummary {
  /** Samples. */
  readonly count: number;
  /** Smallest. */
  readonly min: number;
  /** Median. */
  readonly p50: number;
  /** 90th percentile. */
  readonly p90: number;
  /** 99th percentile. */
  readonly p99: number;
  /** Largest. */
  readonly max: number;
  /** Mean. */
  readonly mean: number;
}

/** What a store holds. */
export interface StoreHolding {
  /** The store's name. */
  readonly store: string;
  /** The store's mechanism. */
  readonly kind: string;
  /** Bytes the ledger counts as (possibly) backed. */
  readonly ledgerBytes: number;
  /** Bytes the kernel reports resident (mincore), where it can tell. */
  readonly residentBytes: number | undefined;
  /** Bytes held by huge pages that are partly unrequested (hugetlb). */
  readonly strandedBytes: number;
}

/** Everything at one moment. */
export interface ConversionMetricsSnapshot {
  /** Conversions carried out, by target state and size class. */
  readonly conversions: Readonly<Record<PageState, Readonly<Record<SizeClass, number>>>>;
  /** 4 KiB pages that changed state. */
  readonly pagesConverted: Readonly<Record<PageState, number>>;
  /** Requests that were valid but changed nothing (already in the target state). */
  readonly noChange: number;
  /** Refused or failed requests, by reason. */
  readonly rejected: Readonly<Partial<Record<ConversionFailure, number>>>;
  /** Latency per step, in nanoseconds. */
  readonly steps: Readonly<Record<ConversionStep, LatencySummary>>;
  /** Kernel calls made to change KVM's view (memslot ioctls or attribute ioctls). */
  readonly privateMemoryCalls: number;
  /** Memslots the private-memory mechanism holds. */
  readonly memslotsInUse: number;
  /** Discards of the side pages left that failed after retries (memory held twice until retried). */
  readonly commitFailures: number;
  /** Discards waiting for a retry. */
  readonly pendingDiscards: number;
  /** Pages resident on both sides right after a commit (0 unless a discard failed or huge pages strand). */
  readonly doubleAllocatedAfterCommit: number;
  /** Bytes resident on both sides at the last audit, and the most seen by any audit. */
  readonly doubleAllocated: { readonly current: number; readonly peak: number };
  /** What each store holds. */
  readonly stores: readonly StoreHolding[];
}

function zeroBySize(): Record<SizeClass, number> {
  return { '4k': 0, 'up-to-2m': 0, 'up-to-1g': 0, larger: 0 };
}

/** The counters behind {@link ConversionMetricsSnapshot}. */
export class ConversionMetrics {
  /** Conversions carried out, by target state and size class. */
  readonly conversions: Record<PageState, Record<SizeClass, number>> = { private: zeroBySize(), shared: zeroBySize() };
  /** 4 KiB pages that changed state, by target state. */
  readonly pagesConverted: Record<PageState, number> = { private: 0, shared: 0 };
  /** Valid requests that changed nothing. */
  noChange = 0;
  /** Refused or failed requests, by reason. */
  readonly rejected: Partial<Record<ConversionFailure, number>> = {};
  /** Latency histograms per step, in nanoseconds. */
  readonly steps: Record<ConversionStep, RecordableHistogram>;
  /** Kernel calls made to change KVM's view. */
  privateMemoryCalls = 0;
  /** Discards that failed at commit after their retries. */
  commitFailures = 0;
  /** Bytes found resident on both sides right after a commit, summed. */
  doubleAllocatedAfterCommit = 0;
  /** Bytes resident on both sides at the last audit, and the most any audit saw. */
  doubleAllocated = { current: 0, peak: 0 };

  constructor() {
    const steps: Partial<Record<ConversionStep, RecordableHistogram>> = {};
    for (const step of CONVERSION_STEPS) steps[step] = createHistogram();
    this.steps = steps as Record<ConversionStep, RecordableHistogram>;
  }

  /** Records every step a conversion timed. */
  timeAll(timings: Partial<Record<ConversionStep, number>>): void {
    for (const step of CONVERSION_STEPS) {
      const ns = timings[step];
      if (ns !== undefined) this.steps[step].record(Math.max(1, Math.round(ns)));
    }
  }

  /** Counts a refusal. */
  reject(reason: ConversionFailure): void {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
  }

  /** Counts a conversion that went through. */
  done(to: PageState, size: number, changedBytes: number): void {
    this.conversions[to][sizeClassOf(size)]++;
    this.pagesConverted[to] += changedBytes / 4096;
    if (changedBytes === 0) this.noChange++;
  }

  /** The latency summary of a step. */
  summary(step: ConversionStep): LatencySummary {
    const h = this.steps[step];
    if (h.count === 0) return { count: 0, min: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
    return { count: h.count, min: h.min, p50: h.percentile(50), p90: h.percentile(90), p99: h.percentile(99), max: h.max, mean: h.mean };
  }
}
