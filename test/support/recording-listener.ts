/**
 * A RamDiscardListener for tests: records every notification, and can be told
 * to refuse a populate or to throw on a discard.
 */
import type { MemoryRegionSection } from '../../src/core/section.js';
import type { RamDiscardListener } from '../../src/core/ram-discard-manager.js';

export interface Notification {
  readonly kind: 'populate' | 'discard';
  readonly offset: number;
  readonly size: number;
  /** Address-space offset of the notified section. */
  readonly address: number;
}

export class RecordingListener implements RamDiscardListener {
  readonly name: string;
  readonly log: Notification[] = [];
  /** Return true to refuse (veto) this populate. */
  refusePopulate: (section: MemoryRegionSection) => boolean = () => false;
  /** Return true to throw on this discard (after recording it). */
  failDiscard: (section: MemoryRegionSection) => boolean = () => false;
  /** Called inside each notification, e.g. to attempt a re-entrant call. */
  during: ((kind: 'populate' | 'discard', section: MemoryRegionSection) => void) | undefined;

  constructor(name: string) {
    this.name = name;
  }

  notifyPopulate(section: MemoryRegionSection): void {
    this.during?.('populate', section);
    if (this.refusePopulate(section)) throw new Error(`${this.name} refuses 0x${section.offsetWithinRegion.toString(16)}`);
    this.log.push(record('populate', section));
  }

  notifyDiscard(section: MemoryRegionSection): void {
    this.during?.('discard', section);
    this.log.push(record('discard', section));
    if (this.failDiscard(section)) throw new Error(`${this.name} cannot unmap 0x${section.offsetWithinRegion.toString(16)}`);
  }

  /** The log as `populate 0x1000+0x2000` strings, then cleared. */
  take(): string[] {
    const out = this.log.map((n) => `${n.kind} 0x${n.offset.toString(16)}+0x${n.size.toString(16)}`);
    this.log.length = 0;
    return out;
  }
}

function record(kind: 'populate' | 'discard', s: MemoryRegionSection): Notification {
  return { kind, offset: s.offsetWithinRegion, size: s.size, address: s.offsetWithinAddressSpace };
}
