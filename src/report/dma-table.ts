/**
 * The DMA scenario's report for a terminal: one row per mapping API and
 * strategy.
 */
import Table from 'cli-table3';
import { formatBytes } from '../core/units.js';
import { violationCount } from '../iommu/dma-checker.js';
import type { DmaScenarioResult } from '../workload/dma-scenario.js';

export function formatDmaScenario(title: string, results: readonly DmaScenarioResult[], color: boolean): string {
  const style = color ? {} : { head: [], border: [] };
  const table = new Table({
    head: ['API', 'strategy', 'mappings', 'peak', 'shared runs', 'map/unmap/cut', 'pinned', 'vetoed', 'mid-conversion failures', 'checker'],
    colAligns: ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
    style,
  });
  for (const r of results) {
    const c = r.check;
    const violations = violationCount(c);
    table.push([r.model, r.strategy, r.mappings, r.peakMappings, r.sharedRuns, `${String(r.mapCalls)}/${String(r.unmapCalls)}/${String(r.cutCalls)}`,
      formatBytes(r.pinnedBytes), r.vetoed, r.midConversionFailures + r.remaps,
      violations === 0 ? `clean (${String(c.conversions)} conversions)` : `${String(violations)} violations: ${c.violations[0] ?? ''}`]);
  }
  return [title, table.toString(),
    'vetoed: conversions the device refused (nothing changed; the guest is told); the limit is type1\'s dma_entry_limit.'].join('\n');
}
