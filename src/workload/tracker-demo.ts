/**
 * Runs a request stream against a RAM block's page-state tracker with one
 * listener, and reports what happened per phase: pages changed, listener
 * notifications (and how many QEMU's per-page algorithm would have sent),
 * shared bytes, tracker memory.
 */
import { MemoryRegion } from '../core/section.js';
import { RamBlockAttributes } from '../core/ram-block-attributes.js';
import { RamDiscardManager } from '../core/ram-discard-manager.js';
import { trace } from '../core/trace.js';
import { traceRamBlockAttributesStateChange } from '../core/trace-events.js';
import { CountingListener } from './counting-listener.js';
import type { Phase } from './cvm-boot.js';

/** What one phase of a scenario did to the tracker. */
export interface PhaseReport {
  /** The phase's name. */
  readonly name: string;
  /** The phase's description. */
  readonly description: string;
  /** Requests made. */
  readonly requests: number;
  /** Requests that changed at least one page. */
  readonly effective: number;
  /** Pages that changed state. */
  readonly pagesChanged: number;
  /** Notifications this tracker sent the listener. */
  readonly notifications: number;
  /** Notifications QEMU's RamBlockAttributes would have sent (one per page of a mixed range). */
  readonly qemuNotifications: number;
  /** Shared bytes at the end of the phase. */
  readonly sharedBytes: number;
  /** Bytes held by the tracker at the end of the phase. */
  readonly trackerBytes: number;
  /** Time spent in the phase's state changes. */
  readonly milliseconds: number;
}

/** The result of {@link runTrackerDemo}. */
export interface TrackerDemoReport {
  /** Guest RAM size in bytes. */
  readonly ramSize: number;
  /** Tracking granularity in bytes. */
  readonly pageSize: number;
  /** One report per phase, in order. */
  readonly phases: readonly PhaseReport[];
  /** QEMU's flat bitmap for the same block. */
  readonly flatBitmapBytes: number;
  /** The first trace lines of each phase, in QEMU's format. */
  readonly traceSample: readonly string[];
}

/**
 * Runs `phases` against a fresh RAM block of `ramSize` bytes with one
 * counting listener, sampling `traceLines` trace lines per phase.
 */
export function runTrackerDemo(ramSize: number, phases: readonly Phase[], traceLines = 3): TrackerDemoReport {
  const region = new MemoryRegion('pc.ram', ramSize);
  const manager = new RamDiscardManager(region);
  const attrs = new RamBlockAttributes(manager);
  const listener = new CountingListener('dma-counter');
  const registration = manager.registerListener(listener, region.section());

  // Sample the first trace lines of each phase, leaving the point as it was.
  const point = traceRamBlockAttributesStateChange;
  const wasEnabled = point.enabled;
  const traceSample: string[] = [];
  let wanted = 0;
  point.enabled = true;
  const sink = trace.subscribe((record) => {
    if (wanted > 0 && record.name === point.name) {
      traceSample.push(trace.formatLine(record));
      wanted--;
    }
  });
  try {
    const reports: PhaseReport[] = [];
    for (const phase of phases) {
      wanted = traceLines;
      const before = listener.notifications;
      let effective = 0;
      let pages = 0;
      let qemu = 0;
      const t0 = performance.now();
      for (const r of phase.requests) {
        const result = attrs.stateChange(r.offset, r.size, r.to);
        if (result.changedBytes === 0) continue;
        effective++;
        pages += result.changedBytes / attrs.pageSize;
        qemu += result.from === 'mixture' ? result.changedBytes / attrs.pageSize : 1;
      }
      reports.push({
        name: phase.name,
        description: phase.description,
        requests: phase.requests.length,
        effective,
        pagesChanged: pages,
        notifications: listener.notifications - before,
        qemuNotifications: qemu,
        sharedBytes: attrs.sharedBytes,
        trackerBytes: attrs.stats.byteSize,
        milliseconds: performance.now() - t0,
      });
    }
    return { ramSize, pageSize: attrs.pageSize, phases: reports, flatBitmapBytes: Math.ceil(ramSize / attrs.pageSize / 8), traceSample };
  } finally {
    sink.dispose();
    point.enabled = wasEnabled;
    registration.dispose();
  }
}
