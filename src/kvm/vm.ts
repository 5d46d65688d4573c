/**
 * A VM: its memslots (validated against the kernel's rules before the
 * ioctl, within the limit KVM reports), guest_memfd stores and vCPUs.
 */
import { CapabilityError, RegistrationError } from '../core/errors.js';
import { hex } from '../core/units.js';
import { GuestMemfdStore, type GuestMemfdStoreOptions } from '../backing/guest-memfd-store.js';
import { Kvm, type GuestMemfd, type KvmVm } from '../sys/kvm.js';
import { KVM_CAP_NR_MEMSLOTS, KVM_CAP_VM_TYPES, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_X86_DEFAULT_VM, KVM_X86_SW_PROTECTED_VM } from '../sys/kvm-uapi.js';
import { checkMemslotRequest, type Memslot, type MemslotChange, type MemslotRequest } from './memslot-rules.js';
import { Vcpu, type VcpuOptions } from './vcpu.js';

/** Options for {@link Vm.create}. */
export interface VmOptions {
  /** KVM_CREATE_VM type; default: SW_PROTECTED when KVM offers it (private memory attributes), else the default VM. */
  readonly type?: number;
  /** An open /dev/kvm to use (the VM then does not close it). */
  readonly kvm?: Kvm;
}

/** A memslot to set. */
export interface MemslotSpec {
  /** Slot id, below KVM_CAP_NR_MEMSLOTS. */
  readonly slot: number;
  /** Guest physical address of the slot (4 KiB aligned). */
  readonly gpa: bigint | number;
  /** Bytes; a multiple of 4 KiB. */
  readonly size: number;
  /** Host address of the memory behind the slot (0 for a guest_memfd-only slot). */
  readonly userspaceAddr?: bigint;
  /** For a guest_memfd slot: the file, and where in it the slot starts. */
  readonly guestMemfd?: GuestMemfd;
  /** Where in the guest_memfd the slot starts (4 KiB aligned). Default 0. */
  readonly guestMemfdOffset?: number;
  /** KVM_MEM_READONLY: guest writes exit as MMIO. */
  readonly readonly?: boolean;
  /** KVM_MEM_LOG_DIRTY_PAGES: track dirty pages. */
  readonly logDirtyPages?: boolean;
}

/** A VM and the memslots, guest_memfd stores and vCPUs made on it. */
export class Vm {
  /** The /dev/kvm the VM was created on. */
  readonly kvm: Kvm;
  /** The VM fd. */
  readonly fd: KvmVm;
  /** Memslots KVM allows this VM (KVM_CAP_NR_MEMSLOTS). */
  readonly maxMemslots: number;
  private readonly slots = new Map<number, Memslot>();
  private readonly vcpus = new Set<Vcpu>();
  private readonly ownsKvm: boolean;

  private constructor(kvm: Kvm, fd: KvmVm, ownsKvm: boolean) {
    this.kvm = kvm;
    this.fd = fd;
    this.ownsKvm = ownsKvm;
    this.maxMemslots = fd.checkExtension(KVM_CAP_NR_MEMSLOTS);
  }

  /**
   * Creates a VM.
   *
   * @throws CapabilityError without /dev/kvm or for a VM type KVM does not offer.
   */
  static create(options: VmOptions = {}): Vm {
    const kvm = options.kvm ?? Kvm.open();
    try {
      const types = kvm.checkExtension(KVM_CAP_VM_TYPES) || 1 << KVM_X86_DEFAULT_VM;
      const type = options.type ?? ((types >>> KVM_X86_SW_PROTECTED_VM) & 1 ? KVM_X86_SW_PROTECTED_VM : KVM_X86_DEFAULT_VM);
      if (((types >>> type) & 1) === 0) throw new CapabilityError(`VM type ${type}`, `KVM_CAP_VM_TYPES is ${hex(types)}`);
      return new Vm(kvm, kvm.createVm(type), options.kvm === undefined);
    } catch (error) {
      if (options.kvm === undefined) kvm.close();
      throw error;
    }
  }

  /** The VM type. */
  get type(): number {
    return this.fd.type;
  }

  /** The memslots, by slot id. */
  get memslots(): ReadonlyMap<number, Memslot> {
    return this.slots;
  }

  /**
   * Sets (creates, moves, or changes the flags of) a memslot, after checking
   * the kernel's rules; returns what changed.
   *
   * @throws MemslotError for a request the kernel would refuse (nothing is
   *         changed); SystemCallError if the kernel refuses it anyway.
   */
  setMemslot(spec: MemslotSpec): MemslotChange {
    const request = this.request(spec);
    const change = checkMemslotRequest(this.slots, request, this.fd, this.maxMemslots);
    if (change === 'none') return change;
    this.fd.setUserMemoryRegion2({
      slot: request.slot,
      flags: request.flags,
      guestPhysAddr: request.gpa,
      memorySize: request.size,
      userspaceAddr: request.userspaceAddr,
      guestMemfdOffset: request.guestMemfdOffset,
      ...(spec.guestMemfd ? { guestMemfd: spec.guestMemfd.fd.fd } : {}),
    });
    this.slots.set(request.slot, request);
    return change;
  }

  /** Deletes a memslot (KVM_SET_USER_MEMORY_REGION2 with size 0). */
  deleteMemslot(slot: number): void {
    const old = this.slots.get(slot);
    checkMemslotRequest(this.slots, {
      slot, flags: old?.flags ?? 0, gpa: old?.gpa ?? 0n, size: 0, userspaceAddr: old?.userspaceAddr ?? 0n,
      guestMemfd: old?.guestMemfd, guestMemfdOffset: old?.guestMemfdOffset ?? 0,
    }, this.fd, this.maxMemslots);
    this.fd.setUserMemoryRegion2({ slot, flags: old?.flags ?? 0, guestPhysAddr: old?.gpa ?? 0n, memorySize: 0, userspaceAddr: old?.userspaceAddr ?? 0n });
    this.slots.delete(slot);
  }

  /** A guest_memfd store on this VM. */
  createGuestMemfdStore(options: GuestMemfdStoreOptions): GuestMemfdStore {
    return GuestMemfdStore.create(this.fd, options);
  }

  /** Creates vCPU `id` and starts its thread. */
  async createVcpu(id: number, options: VcpuOptions = {}): Promise<Vcpu> {
    if ([...this.vcpus].some((v) => v.id === id)) throw new RegistrationError(`vCPU ${id} already exists`);
    const kvmVcpu = this.fd.createVcpu(id);
    try {
      const vcpu = await Vcpu.start(kvmVcpu, this.kvm.getSupportedCpuid(), options);
      this.vcpus.add(vcpu);
      return vcpu;
    } catch (error) {
      kvmVcpu.close();
      throw error;
    }
  }

  /** Stops every vCPU and closes the VM (and /dev/kvm if the VM opened it). */
  async close(): Promise<void> {
    for (const vcpu of this.vcpus) await vcpu.close();
    this.vcpus.clear();
    this.fd.close();
    if (this.ownsKvm) this.kvm.close();
  }

  private request(spec: MemslotSpec): MemslotRequest {
    const flags = (spec.guestMemfd ? KVM_MEM_GUEST_MEMFD : 0) | (spec.readonly ? KVM_MEM_READONLY : 0) | (spec.logDirtyPages ? KVM_MEM_LOG_DIRTY_PAGES : 0);
    return {
      slot: spec.slot,
      flags,
      gpa: BigInt(spec.gpa),
      size: spec.size,
      userspaceAddr: spec.userspaceAddr ?? 0n,
      guestMemfd: spec.guestMemfd,
      guestMemfdOffset: spec.guestMemfdOffset ?? 0,
    };
  }
}
