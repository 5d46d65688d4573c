/**
 * An assigned device on a confidential guest: one DMA mapping listener per
 * RAM block, all in the device's container (one {@link DmaMapper}), with
 * IOVA = GPA, registered through the orchestrator (under each block's lock)
 * and optionally watched by a {@link DmaChecker}.
 */
import { createSection } from '../core/section.js';
import type { CvmMemory } from '../conversion/cvm.js';
import type { RamBlock } from '../conversion/guest-memory.js';
import { DmaChecker } from '../iommu/dma-checker.js';
import type { DmaMapper } from '../iommu/dma-mapper.js';
import { DmaMappingListener, type DmaStrategy } from '../iommu/dma-mapping-listener.js';

/** Options for {@link attachDmaDevice}. */
export interface DmaDeviceOptions {
  /** The device's container or IOAS. */
  readonly mapper: DmaMapper;
  /** How shared memory becomes mappings. */
  readonly strategy: DmaStrategy;
  /** Mapping granule (see DmaMappingListenerOptions). */
  readonly granule?: number;
  /** Watch the mapper with a checker, created before anything is mapped. Default false. */
  readonly check?: boolean;
}

/** A device attached to a guest's memory. */
export interface DmaDevice {
  /** The container or IOAS. */
  readonly mapper: DmaMapper;
  /** One listener per RAM block, in block order. */
  readonly listeners: readonly DmaMappingListener[];
  /** The checker, when asked for. */
  readonly checker: DmaChecker | undefined;
  /** Unregisters every listener (which unmaps everything) and stops the checker. */
  detach(): Promise<void>;
}

/**
 * Host address of a block's shared backing: its mapping when the store can
 * be mapped; otherwise (large simulated stores) a stand-in address that is
 * the same for the listener and the checker.
 */
export function sharedHostAddress(block: RamBlock): number {
  if (block.shared.mappable) return Number(block.shared.map().start);
  return 0x4000_0000_0000 + block.gpa;
}

/**
 * Attaches a device: registers a listener for every block (each maps the
 * block's shared memory at once). A registration that is refused (the
 * limit) undoes the ones before it and throws the ListenerVetoError.
 */
export async function attachDmaDevice(cvm: CvmMemory, options: DmaDeviceOptions): Promise<DmaDevice> {
  const blocks = cvm.memory.blocks;
  const targets = blocks.map((block) => ({
    block,
    hostAddress: sharedHostAddress(block),
    section: createSection(block.region, 0, block.size, block.gpa),
  }));
  const checker = options.check
    ? new DmaChecker(options.mapper, targets.map((t) => ({ manager: t.block.manager, section: t.section, hostAddress: t.hostAddress })))
    : undefined;
  const attached: { readonly block: RamBlock; readonly listener: DmaMappingListener }[] = [];
  const unregisterAll = async (): Promise<void> => {
    for (const { block, listener } of attached) await cvm.orchestrator.unregisterListener(block, listener);
  };
  try {
    for (const t of targets) {
      const listener = new DmaMappingListener({
        name: `dma:${options.mapper.name}:${t.block.name}`, mapper: options.mapper, strategy: options.strategy,
        hostAddress: t.hostAddress, ...(options.granule ? { granule: options.granule } : {}),
      });
      await cvm.orchestrator.registerListener(t.block, listener, t.section);
      attached.push({ block: t.block, listener });
    }
  } catch (error) {
    await unregisterAll();
    checker?.dispose();
    throw error;
  }
  let detached = false;
  return {
    mapper: options.mapper,
    listeners: attached.map((a) => a.listener),
    checker,
    detach: async () => {
      if (detached) return;
      detached = true;
      checker?.dispose();
      await unregisterAll();
    },
  };
}
