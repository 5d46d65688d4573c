/**
 * The tracker demo's report for a terminal.
 */
import Table from 'cli-table3';
import { formatBytes } from '../core/units.js';
import type { TrackerDemoReport } from '../workload/tracker-demo.js';

export function formatTrackerDemo(report: TrackerDemoReport, color: boolean): string {
  const style = color ? {} : { head: [], border: [] };
  const table = new Table({
    head: ['phase', 'requests', 'changed', 'pages', 'notifications', 'QEMU would send', 'shared', 'tracker', 'time'],
    colAligns: ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
    style,
  });
  for (const p of report.phases) {
    table.push([p.name, p.requests, p.effective, p.pagesChanged, p.notifications, p.qemuNotifications,
      formatBytes(p.sharedBytes), formatBytes(p.trackerBytes), `${p.milliseconds.toFixed(1)} ms`]);
  }
  const last = report.phases.at(-1);
  const lines = [
    `guest RAM ${formatBytes(report.ramSize)}, tracked in ${formatBytes(report.pageSize)} pages; one DMA listener over all of it`,
    table.toString(),
  ];
  for (const p of report.phases) lines.push(`  ${p.name}: ${p.description}`);
  if (last) {
    lines.push(`tracker memory ${formatBytes(last.trackerBytes)}; QEMU's flat bitmap for this block: ${formatBytes(report.flatBitmapBytes)}`
      + ` (${(report.flatBitmapBytes / last.trackerBytes).toFixed(1)}x more)`);
  }
  if (report.traceSample.length > 0) lines.push('trace (QEMU format):', ...report.traceSample.map((l) => `  ${l}`));
  return lines.join('\n');
}
