/**
 * Putting a confidential guest's memory together: per RAM block a shared
 * store and a private store, the blocks' trackers, the private-memory
 * mechanism and the orchestrator; on a real VM, or simulated.
 *
 *   real (memslots):  shared = memfd (4 KiB, THP or hugetlb), mapped;
 *                     private = guest_memfd with MMAP, without INIT_SHARED;
 *                     KVM's view = memslots re-laid per conversion
 *   real (attributes): private = guest_memfd; one memslot binding both;
 *                     KVM's view = KVM_SET_MEMORY_ATTRIBUTES
 *   simulated:        both sides SimulatedStores; KVM's view simulated
 *
 * and, for a running guest, the vCPU runner wired to the orchestrator
 * (pausing vCPUs for re-layouts, stopping them when the VM stops).
 */
import { CapabilityError, InvalidArgumentError } from '../core/errors.js';
import { hex, toSafeByteCount, type ByteCount } from '../core/units.js';
import type { BackingStore } from '../backing/backing-store.js';
import { GuestMemfdStore } from '../backing/guest-memfd-store.js';
import { MemfdStore, type MemfdPages } from '../backing/memfd-store.js';
import { SimulatedStore } from '../backing/simulated-store.js';
import type { Vcpu } from '../kvm/vcpu.js';
import { VmRunner, type VcpuOutcome } from '../kvm/vm-runner.js';
import type { Vm } from '../kvm/vm.js';
import { KVM_CAP_MEMORY_ATTRIBUTES, KVM_X86_DEFAULT_VM } from '../sys/kvm-uapi.js';
import { GuestRequests, type GuestRequestsOptions } from './guest-requests.js';
import { GuestMemory, RamBlock, type MmioHole } from './guest-memory.js';
import { MemslotPrivateMemory, type MemslotTable } from './memslot-private-memory.js';
import { ConversionOrchestrator, type OrchestratorOptions } from './orchestrator.js';
import { AttributesPrivateMemory, SimulatedPrivateMemory, type PrivateMemory } from './private-memory.js';

/** A RAM block to create. */
export interface RamSpec {
  /** Name in errors, traces and reports. */
  readonly name: string;
  /** Guest physical address of the first byte (4 KiB aligned). */
  readonly gpa: ByteCount;
  /** Bytes (a multiple of 4 KiB, and of the shared page size). */
  readonly size: ByteCount;
  /** Paging of the shared side (real memory only). Default `4k`. */
  readonly sharedPages?: MemfdPages;
  /** Page size of the shared side (simulated memory only): 4 KiB, 2 MiB or 1 GiB. Default 4 KiB. */
  readonly sharedPageSize?: number;
  /** With huge shared pages (simulated memory only): like hugetlb (`huge`, the default) or like shmem THP. */
  readonly sharedPolicy?: 'huge' | 'transparent-huge';
}

/** Options shared by both kinds of guest memory. */
export interface CvmOptions extends Omit<OrchestratorOptions, 'memory' | 'privateMemory'> {
  /** The RAM blocks. */
  readonly ram: readonly RamSpec[];
  /** MMIO holes (a range to shared over one is accepted and does nothing). */
  readonly holes?: readonly MmioHole[];
}

/** Options for a real VM's memory. */
export interface RealCvmOptions extends CvmOptions {
  /** `memslots` or `attributes`; default: attributes when the VM supports them, else memslots. */
  readonly mechanism?: 'memslots' | 'attributes';
  /** At most this many memslots in the VM (memslot mechanism). Default: KVM's limit. */
  readonly slotLimit?: number;
  /** Lowest memslot id the guest memory may use. Default 1 (0 is low RAM). */
  readonly firstSlot?: number;
  /** The memslot table to use; default the VM (a test wraps it to inject failures). */
  readonly memslots?: MemslotTable;
  /** Largest memslot (memslot mechanism); see MemslotPrivateMemoryOptions. */
  readonly maxSlotBytes?: number;
}

/** A guest's memory and its orchestrator. */
export class CvmMemory {
  /** The blocks and holes. */
  readonly memory: GuestMemory;
  /** The private-memory mechanism. */
  readonly privateMemory: PrivateMemory;
  /** Carries out the conversions. */
  readonly orchestrator: ConversionOrchestrator;
  private readonly stores: readonly BackingStore[];
  private readonly onClose: () => void;

  /** @internal use {@link createCvmMemory} or {@link createSimulatedCvmMemory}. */
  constructor(memory: GuestMemory, privateMemory: PrivateMemory, orchestrator: ConversionOrchestrator, stores: readonly BackingStore[], onClose: () => void) {
    this.memory = memory;
    this.privateMemory = privateMemory;
    this.orchestrator = orchestrator;
    this.stores = stores;
    this.onClose = onClose;
  }

  /** The block named `name`. */
  block(name: string): RamBlock {
    const block = this.memory.blocks.find((b) => b.name === name);
    if (!block) throw new InvalidArgumentError(`no RAM block '${name}'`);
    return block;
  }

  /**
   * Runs `vcpus` with their guest requests going to the orchestrator: the
   * runner pauses them for memslot re-layouts, and stops them when the VM
   * stops. Resolves when every vCPU's loop has ended.
   */
  run(vcpus: readonly Vcpu[], options: GuestRequestsOptions = {}): { readonly runner: VmRunner; readonly requests: GuestRequests; readonly done: Promise<VcpuOutcome[]> } {
    const requests = new GuestRequests(this.orchestrator, options);
    const runner = new VmRunner(vcpus, requests.handle);
    this.orchestrator.attachPauser(runner);
    const stopped = this.orchestrator.onStop((event) => { runner.stop(event.error.message); });
    const done = runner.run().finally(() => {
      stopped.dispose();
      this.orchestrator.detachPauser(runner);
    });
    return { runner, requests, done };
  }

  /**
   * Drops the memslots (if any) and closes every store, all of them even
   * when one step fails; then throws the first failure.
   */
  close(): void {
    if (this.orchestrator.busy) {
      throw new InvalidArgumentError('guest memory cannot be closed while conversions are in flight: await them (or stop the VM) first');
    }
    let failure: Error | undefined;
    try {
      this.onClose();
    } catch (error) {
      failure = error instanceof Error ? error : new Error(String(error));
    }
    for (const store of this.stores) store.close();
    if (failure) throw failure;
  }

  /** The same as {@link close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Creates a guest's memory on `vm`.
 *
 * @throws CapabilityError when the mechanism asked for is not available;
 *         InvalidArgumentError for bad specs; SystemCallError (nothing is
 *         left allocated).
 */
export function createCvmMemory(vm: Vm, options: RealCvmOptions): CvmMemory {
  const attributesOffered = vm.type !== KVM_X86_DEFAULT_VM && (vm.fd.checkExtension(KVM_CAP_MEMORY_ATTRIBUTES) & 8) !== 0;
  const mechanism = options.mechanism ?? (attributesOffered ? 'attributes' : 'memslots');
  if (mechanism === 'attributes' && !attributesOffered) {
    throw new CapabilityError('KVM_SET_MEMORY_ATTRIBUTES', `VM type ${vm.type} has no private memory attribute`);
  }
  const stores: BackingStore[] = [];
  const blocks: RamBlock[] = [];
  const slots: number[] = [];
  try {
    for (const spec of options.ram) {
      const size = toSafeByteCount(spec.size, `RAM block '${spec.name}': size`);
      const shared = MemfdStore.create({ name: `${spec.name}:shared`, size, pages: spec.sharedPages ?? '4k' });
      stores.push(shared);
      const priv = vm.createGuestMemfdStore({ name: `${spec.name}:private`, size, mmap: mechanism === 'memslots' });
      stores.push(priv);
      blocks.push(new RamBlock({ name: spec.name, gpa: spec.gpa, size, shared, private: priv }));
    }
    const memory = new GuestMemory(blocks, options.holes ?? []);
    let privateMemory: PrivateMemory;
    if (mechanism === 'memslots') {
      privateMemory = new MemslotPrivateMemory(options.memslots ?? vm, {
        ...(options.slotLimit === undefined ? {} : { slotLimit: options.slotLimit }),
        ...(options.firstSlot === undefined ? {} : { firstSlot: options.firstSlot }),
        ...(options.maxSlotBytes === undefined ? {} : { maxSlotBytes: options.maxSlotBytes }),
      });
    } else {
      let id = options.firstSlot ?? 1;
      for (const block of blocks) {
        while (vm.memslots.has(id)) id++;
        if (!(block.private instanceof GuestMemfdStore)) throw new InvalidArgumentError(`RAM block '${block.name}': the private store is not a guest_memfd`);
        vm.setMemslot({ slot: id, gpa: block.gpa, size: block.size, userspaceAddr: block.shared.map().start, guestMemfd: block.private.guestMemfd, guestMemfdOffset: 0 });
        slots.push(id);
      }
      privateMemory = new AttributesPrivateMemory(vm.fd);
    }
    const orchestrator = new ConversionOrchestrator({ ...options, memory, privateMemory });
    return new CvmMemory(memory, privateMemory, orchestrator, stores, () => {
      for (const block of blocks) privateMemory.removeBlock(block);
      for (const slot of slots) vm.deleteMemslot(slot);
    });
  } catch (error) {
    for (const slot of slots) vm.deleteMemslot(slot);
    for (const store of stores) store.close();
    throw error;
  }
}

/** Options for simulated guest memory. */
export interface SimulatedCvmOptions extends CvmOptions {
  /** The simulated mechanism to use (a test keeps it to inject failures). Default a new one. */
  readonly privateMemory?: SimulatedPrivateMemory;
}

/** Creates a guest's memory with simulated stores and a simulated KVM view. */
export function createSimulatedCvmMemory(options: SimulatedCvmOptions): CvmMemory {
  const stores: SimulatedStore[] = [];
  const blocks: RamBlock[] = [];
  for (const spec of options.ram) {
    const size = toSafeByteCount(spec.size, `RAM block '${spec.name}': size`);
    const pageSize = spec.sharedPageSize ?? 4096;
    if (size % pageSize !== 0) throw new InvalidArgumentError(`RAM block '${spec.name}': size ${hex(size)} is not a multiple of its shared page size ${hex(pageSize)}`);
    const shared = new SimulatedStore({ name: `${spec.name}:shared`, size, pageSize, ...(spec.sharedPolicy ? { policy: spec.sharedPolicy } : {}) });
    const priv = new SimulatedStore({ name: `${spec.name}:private`, size });
    stores.push(shared, priv);
    blocks.push(new RamBlock({ name: spec.name, gpa: spec.gpa, size, shared, private: priv }));
  }
  const privateMemory = options.privateMemory ?? new SimulatedPrivateMemory();
  const memory = new GuestMemory(blocks, options.holes ?? []);
  const orchestrator = new ConversionOrchestrator({ ...options, memory, privateMemory });
  return new CvmMemory(memory, privateMemory, orchestrator, stores, () => {
    for (const block of blocks) privateMemory.removeBlock(block);
  });
}
