/** A RAM block for tests: region, its manager, and its page-state source. */
import { RamBlockAttributes } from '../../src/core/ram-block-attributes.js';
import { RamDiscardManager } from '../../src/core/ram-discard-manager.js';
import { MemoryRegion } from '../../src/core/section.js';

export interface TestBlock {
  readonly region: MemoryRegion;
  readonly manager: RamDiscardManager;
  readonly attrs: RamBlockAttributes;
}

/** A block named pc.ram of `size` bytes, all private, tracked at `pageSize` (4 KiB by default). */
export function ramBlock(size: number, pageSize?: number): TestBlock {
  const region = new MemoryRegion('pc.ram', size);
  const manager = new RamDiscardManager(region);
  const attrs = new RamBlockAttributes(manager, pageSize === undefined ? {} : { pageSize });
  return { region, manager, attrs };
}
