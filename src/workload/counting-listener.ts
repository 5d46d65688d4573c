/**
 * A RamDiscardListener that only counts: what a DMA mapper would be asked to
 * map and unmap, without mapping anything.
 */
import type { RamDiscardListener } from '../core/ram-discard-manager.js';
import type { MemoryRegionSection } from '../core/section.js';

/** Counts notifications and the bytes populated minus the bytes discarded. */
export class CountingListener implements RamDiscardListener {
  readonly name: string;
  /** Populate and discard notifications received. */
  notifications = 0;
  /** Bytes populated minus bytes discarded. */
  mappedBytes = 0;

  constructor(name = 'counter') {
    this.name = name;
  }

  notifyPopulate(section: MemoryRegionSection): void {
    this.notifications++;
    this.mappedBytes += section.size;
  }

  notifyDiscard(section: MemoryRegionSection): void {
    this.notifications++;
    this.mappedBytes -= section.size;
  }
}
