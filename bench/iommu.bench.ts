/**
 * DMA mappings of an assigned device through a guest's life, per strategy
 * and mapping API: 16 and 64 GiB guests with a 6% and an 8% SWIOTLB pool
 * shared at boot in 2 MiB requests, then 10,000 runtime dma_alloc/free
 * conversions (4 KiB, or 2 MiB for a guest that converts at 2 MiB), and a
 * random fuzz stream; the checker watches every step. Writes the whole
 * matrix into docs/iommu.md (with --docs) and the goals into the results.
 */
import { GiB, KiB, MiB } from '../src/core/units.js';
import { violationCount } from '../src/iommu/dma-checker.js';
import { DMA_STRATEGIES } from '../src/iommu/dma-mapping-listener.js';
import { DEFAULT_DMA_ENTRY_LIMIT } from '../src/iommu/vfio-type1-model.js';
import type { ScenarioRequest } from '../src/workload/cvm-boot.js';
import { dmaBootRequests, dmaFuzzRequests, runDmaScenario, type DmaModel, type DmaScenarioResult } from '../src/workload/dma-scenario.js';
import { result, type BenchResult } from './lib/result.js';

interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly ramSize: number;
  readonly granularity: '4k' | '2m';
  readonly requests: readonly ScenarioRequest[];
}

interface Row {
  readonly scenario: Scenario;
  readonly result: DmaScenarioResult;
}

const RUNTIME = 10_000;

function scenarios(): Scenario[] {
  const out: Scenario[] = [];
  for (const granularity of ['4k', '2m'] as const) {
    for (const gib of [16, 64]) {
      for (const pct of [6, 8]) {
        const dmaGranule = granularity === '4k' ? 4 * KiB : 2 * MiB;
        out.push({
          id: `boot.${String(gib)}g.${String(pct)}pct.${granularity}`,
          title: `${String(gib)} GiB, ${String(pct)}% pool, runtime at ${granularity === '4k' ? '4 KiB' : '2 MiB'}`,
          ramSize: gib * GiB, granularity,
          requests: dmaBootRequests({ ramSize: gib * GiB, swiotlbFraction: pct / 100, runtime: RUNTIME, dmaGranule, seed: gib + pct }),
        });
      }
    }
    const unit = granularity === '4k' ? 4 * KiB : 2 * MiB;
    out.push({
      id: `fuzz.${granularity}`, title: `fuzz, 4 GiB, ${granularity === '4k' ? '4 KiB' : '2 MiB'} units`,
      ramSize: 4 * GiB, granularity, requests: dmaFuzzRequests({ ramSize: 4 * GiB, count: 3000, unit, seed: 11 }),
    });
  }
  return out;
}

/** Runs the matrix; returns the goal figures and the rows for docs/iommu.md. */
export async function runIommuBench(options: { readonly only?: RegExp; readonly log: (line: string) => void }): Promise<{ results: BenchResult[]; rows: Row[] }> {
  const rows: Row[] = [];
  for (const scenario of scenarios()) {
    if (options.only && !options.only.test(`iommu.${scenario.id}`) && !options.only.test('iommu')) continue;
    for (const model of ['vfio-type1', 'iommufd'] as const satisfies readonly DmaModel[]) {
      for (const strategy of DMA_STRATEGIES) {
        const r = await runDmaScenario({
          ramSize: scenario.ramSize, requests: scenario.requests, granularity: scenario.granularity, model, strategy,
          runsEachStep: strategy === 'coalesced',
        });
        options.log(`iommu.${scenario.id} ${model} ${strategy}: ${String(r.mappings)} mappings (peak ${String(r.peakMappings)}), `
          + `${String(r.vetoed)} vetoed, ${r.check.transientGaps} gaps, ${Math.round(r.elapsedMs)} ms`);
        rows.push({ scenario, result: r });
      }
    }
  }
  return { results: goals(rows), rows };
}

function goals(rows: readonly Row[]): BenchResult[] {
  const results: BenchResult[] = [];
  if (rows.length === 0) return results;
  const all = rows.map((r) => r.result);
  results.push(result({
    id: 'iommu.checker.violations', metric: 'stale, missing, double, misdirected or stray mappings, transient gaps and mapper mismatches, every strategy, API and scenario',
    value: all.reduce((n, r) => n + violationCount(r.check), 0), unit: 'pages', target: { on: 'value', max: 0 },
    note: `${String(all.reduce((n, r) => n + r.check.conversions, 0))} conversions checked`,
  }));
  results.push(result({
    id: 'iommu.type1.mid-conversion-failures', metric: 'type1 failures in the middle of a conversion (every strategy and scenario); refusals are vetoes',
    value: all.filter((r) => r.model === 'vfio-type1').reduce((n, r) => n + r.midConversionFailures + r.remaps, 0), unit: 'failures',
    target: { on: 'value', max: 0 },
    note: `${String(all.filter((r) => r.model === 'vfio-type1').reduce((n, r) => n + r.vetoed, 0))} conversions vetoed instead`,
  }));
  for (const row of rows.filter((r) => r.result.model === 'iommufd' && r.result.strategy === 'coalesced')) {
    results.push(result({
      id: `iommu.${row.scenario.id}.coalesced.excess`, metric: `${row.scenario.title}: coalesced on iommufd, most mappings above the maximal shared runs at any step`,
      value: row.result.maxExcess ?? 0, unit: 'mappings', target: { on: 'value', max: 0 },
      note: `${String(row.result.mappings)} mappings for ${String(row.result.sharedRuns)} runs at the end; mappings never merge`,
    }));
  }
  for (const row of rows.filter((r) => r.scenario.granularity === '2m' && r.scenario.id.startsWith('boot') && r.result.model === 'vfio-type1' && r.result.strategy === 'aligned')) {
    const need = rows.find((r) => r.scenario === row.scenario && r.result.model === 'iommufd' && r.result.strategy === 'per-granule')?.result.peakMappings ?? 0;
    results.push(result({
      id: `iommu.${row.scenario.id}.aligned.type1`, metric: `${row.scenario.title}: aligned on type1, peak mappings (per-granule would need ${String(need)})`,
      value: row.result.peakMappings, unit: 'mappings', baseline: { name: 'per-granule', value: need },
      target: { on: 'value', max: DEFAULT_DMA_ENTRY_LIMIT },
      note: `${String(row.result.vetoed)} vetoed; per-granule needs ${(need / DEFAULT_DMA_ENTRY_LIMIT).toFixed(1)}x the default limit`,
    }));
  }
  return results;
}

/** The matrix as Markdown, for docs/iommu.md. */
export function iommuMarkdown(rows: readonly Row[]): string {
  const lines: string[] = [];
  let current: Scenario | undefined;
  for (const { scenario, result: r } of rows) {
    if (scenario !== current) {
      current = scenario;
      lines.push('', `#### ${scenario.title} (${String(scenario.requests.length)} conversions)`, '',
        '| API | strategy | mappings (end / peak) | shared runs (end) | most above runs | map / unmap / cut calls | pinned (end / peak) | vetoed (limit / cut) | mid-conversion failures | checker |',
        '|---|---|---|---|---|---|---|---|---|---|');
    }
    const gib = (b: number): string => `${(b / GiB).toFixed(2)} GiB`;
    const violations = violationCount(r.check);
    lines.push(`| ${r.model} | ${r.strategy} | ${String(r.mappings)} / ${String(r.peakMappings)} | ${String(r.sharedRuns)} | ${r.maxExcess === undefined ? '' : String(r.maxExcess)} | `
      + `${String(r.mapCalls)} / ${String(r.unmapCalls)} / ${String(r.cutCalls)} | ${gib(r.pinnedBytes)} / ${gib(r.peakPinnedBytes)} | `
      + `${String(r.vetoed)} (${String(r.limitVetoes)} / ${String(r.cutVetoes)}) | ${String(r.midConversionFailures + r.remaps)} | ${violations === 0 ? 'clean' : `**${String(violations)} violations**`} |`);
  }
  return lines.join('\n');
}
