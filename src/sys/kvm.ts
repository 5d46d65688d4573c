/**
 * KVM's file descriptors as owned objects, one method per ioctl, named after
 * it (KVM_SET_USER_MEMORY_REGION2 -> setUserMemoryRegion2). A child fd only
 * comes from its parent: Kvm (/dev/kvm) -> KvmVm -> KvmVcpu, KvmVm -> GuestMemfd.
 *
 * These wrappers check nothing beyond what the FFI needs; the kernel's answer
 * comes back as a SystemCallError with the ioctl's name and errno. Validation
 * that mirrors the kernel's rules lives one layer up (kvm/, backing/).
 */
import koffi from 'koffi';
import { CapabilityError, InvalidArgumentError, SystemCallError } from '../core/errors.js';
import { hex } from '../core/units.js';
import { OwnedFd } from './owned-fd.js';
import { Mapping } from './mapping.js';
import {
  MAP_SHARED,
  O_CLOEXEC,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
  ioctlInt,
  ioctlIntErrno,
  ioctlPtr,
  open,
  type CallContext,
} from './libc.js';
import * as uapi from './kvm-uapi.js';

/** Register names of struct kvm_regs. */
export type RegName = 'rax' | 'rbx' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'rsp' | 'rbp'
  | 'r8' | 'r9' | 'r10' | 'r11' | 'r12' | 'r13' | 'r14' | 'r15' | 'rip' | 'rflags';
/** struct kvm_regs, every register as a u64. */
export type Regs = Record<RegName, bigint>;

/** struct kvm_segment. */
export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

/** struct kvm_dtable (GDT, IDT). */
export interface DescriptorTable {
  base: bigint;
  limit: number;
}

/** struct kvm_sregs. */
export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; ldt: Segment;
  gdt: DescriptorTable; idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apic_base: bigint;
  interrupt_bitmap: bigint[];
}

/** The arguments of KVM_SET_USER_MEMORY_REGION2. */
export interface UserMemoryRegion2 {
  readonly slot: number;
  readonly flags: number;
  readonly guestPhysAddr: bigint | number;
  /** 0 deletes the slot. */
  readonly memorySize: number;
  readonly userspaceAddr: bigint | number;
  readonly guestMemfdOffset?: number;
  /** The guest_memfd's descriptor (with KVM_MEM_GUEST_MEMFD). */
  readonly guestMemfd?: number;
}

const REG_NAMES: readonly RegName[] = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'];

function u64(v: unknown): bigint {
  return typeof v === 'bigint' ? v : BigInt(v as number);
}

const U64_END = 1n << 64n;

/** Checks a u64 argument before it goes into a kernel struct. */
function arg(value: number | bigint, what: string): bigint {
  if (typeof value === 'bigint' ? value >= 0n && value < U64_END : Number.isSafeInteger(value) && value >= 0) return BigInt(value);
  throw new InvalidArgumentError(`${what} must be an integer in [0, 2^64), got ${String(value)}`);
}

/** Only a parent creates its children (the token is not exported). */
const CHILD = Symbol('kvm child');

/** /dev/kvm. */
export class Kvm {
  readonly fd: OwnedFd;

  private constructor(fd: OwnedFd) {
    this.fd = fd;
  }

  /**
   * Opens /dev/kvm (or `path`).
   *
   * @throws CapabilityError when it is missing or not accessible.
   */
  static open(path = '/dev/kvm'): Kvm {
    try {
      return new Kvm(new OwnedFd(open(path, O_RDWR | O_CLOEXEC), path));
    } catch (error) {
      if (error instanceof SystemCallError && (error.errnoName === 'ENOENT' || error.errnoName === 'ENXIO' || error.errnoName === 'ENODEV')) {
        throw new CapabilityError(path, `${error.errnoName}: this host has no KVM`);
      }
      if (error instanceof SystemCallError && (error.errnoName === 'EACCES' || error.errnoName === 'EPERM')) {
        throw new CapabilityError(path, `${error.errnoName}: no permission (run as root or join the kvm group)`);
      }
      throw error;
    }
  }

  /** KVM_GET_API_VERSION (12 on every kernel since 2.6.22). */
  getApiVersion(): number {
    return ioctlInt(this.fd.fd, uapi.KVM_GET_API_VERSION, 0, this.context());
  }

  /** KVM_CHECK_EXTENSION on the system fd: 0 when absent, else the capability's value. */
  checkExtension(cap: number): number {
    return ioctlInt(this.fd.fd, uapi.KVM_CHECK_EXTENSION, cap, this.context());
  }

  /** KVM_GET_VCPU_MMAP_SIZE: bytes to map of a vCPU fd (struct kvm_run and what follows). */
  getVcpuMmapSize(): number {
    return ioctlInt(this.fd.fd, uapi.KVM_GET_VCPU_MMAP_SIZE, 0, this.context());
  }

  /**
   * KVM_GET_SUPPORTED_CPUID: a struct kvm_cpuid2 with its entries, ready for
   * KVM_SET_CPUID2.
   */
  getSupportedCpuid(maxEntries = 256): Uint8Array {
    const header = koffi.sizeof(uapi.kvm_cpuid2);
    const buf = new Uint8Array(header + maxEntries * koffi.sizeof(uapi.kvm_cpuid_entry2));
    new DataView(buf.buffer).setUint32(0, maxEntries, true);
    ioctlPtr(this.fd.fd, uapi.KVM_GET_SUPPORTED_CPUID, buf, this.context());
    const nent = new DataView(buf.buffer).getUint32(0, true);
    return buf.slice(0, header + nent * koffi.sizeof(uapi.kvm_cpuid_entry2));
  }

  /** KVM_CREATE_VM of `type` (KVM_X86_DEFAULT_VM by default). */
  createVm(type: number = uapi.KVM_X86_DEFAULT_VM): KvmVm {
    const fd = ioctlInt(this.fd.fd, uapi.KVM_CREATE_VM, type, {
      ...this.context(),
      hint: type === uapi.KVM_X86_DEFAULT_VM ? undefined : `VM type ${type} (${uapi.VM_TYPE_NAMES[type] ?? 'unknown'}) may not be supported here; see KVM_CAP_VM_TYPES`,
    } as CallContext);
    return new KvmVm(CHILD, this, new OwnedFd(fd, `KVM VM (type ${type})`), type);
  }

  close(): void {
    this.fd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private context(): CallContext {
    return { target: this.fd.toString() };
  }
}

/** A VM fd. */
export class KvmVm {
  readonly kvm: Kvm;
  readonly fd: OwnedFd;
  /** The VM type it was created with. */
  readonly type: number;

  /** @internal created by {@link Kvm.createVm}. */
  constructor(token: typeof CHILD, kvm: Kvm, fd: OwnedFd, type: number) {
    if (token !== CHILD) throw new TypeError('use Kvm.createVm()');
    this.kvm = kvm;
    this.fd = fd;
    this.type = type;
  }

  /** KVM_CHECK_EXTENSION on the VM fd (exact for this VM's type). */
  checkExtension(cap: number): number {
    return ioctlInt(this.fd.fd, uapi.KVM_CHECK_EXTENSION, cap, this.context());
  }

  /** KVM_ENABLE_CAP with up to four arguments. */
  enableCap(cap: number, args: readonly (number | bigint)[] = []): void {
    arg(cap, 'KVM_ENABLE_CAP cap');
    if (args.length > 4) throw new InvalidArgumentError(`KVM_ENABLE_CAP takes at most 4 arguments, got ${args.length}`);
    args.forEach((a, i) => arg(a, `KVM_ENABLE_CAP args[${i}]`));
    const buf = new Uint8Array(koffi.sizeof(uapi.kvm_enable_cap));
    koffi.encode(buf, uapi.kvm_enable_cap, { cap, flags: 0, args: [0, 1, 2, 3].map((i) => args[i] ?? 0), pad: new Array<number>(64).fill(0) });
    ioctlPtr(this.fd.fd, uapi.KVM_ENABLE_CAP, buf, this.context());
  }

  /** KVM_SET_TSS_ADDR (needed on Intel before a real-mode guest's first run). */
  setTssAddr(address: number): void {
    ioctlInt(this.fd.fd, uapi.KVM_SET_TSS_ADDR, address, this.context());
  }

  /** KVM_CREATE_VCPU, with the vCPU's kvm_run mapping. */
  createVcpu(id: number): KvmVcpu {
    const fd = new OwnedFd(ioctlInt(this.fd.fd, uapi.KVM_CREATE_VCPU, id, this.context()), `vCPU ${id}`);
    try {
      const size = this.kvm.getVcpuMmapSize();
      const run = Mapping.map(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0, `kvm_run of vCPU ${id}`);
      return new KvmVcpu(CHILD, this, id, fd, run);
    } catch (error) {
      fd.close();
      throw error;
    }
  }

  /** KVM_CREATE_GUEST_MEMFD of `size` bytes with `flags` (GUEST_MEMFD_FLAG_*). */
  createGuestMemfd(size: number, flags: number, name = 'guest_memfd'): GuestMemfd {
    arg(size, 'KVM_CREATE_GUEST_MEMFD size');
    arg(flags, 'KVM_CREATE_GUEST_MEMFD flags');
    const buf = new Uint8Array(koffi.sizeof(uapi.kvm_create_guest_memfd));
    koffi.encode(buf, uapi.kvm_create_guest_memfd, { size, flags, reserved: new Array<number>(6).fill(0) });
    const fd = ioctlPtr(this.fd.fd, uapi.KVM_CREATE_GUEST_MEMFD, buf, { ...this.context(), range: { offset: 0, size } });
    return new GuestMemfd(CHILD, this, new OwnedFd(fd, `guest_memfd '${name}'`), size, flags);
  }

  /** KVM_SET_USER_MEMORY_REGION2 (memorySize 0 deletes the slot). */
  setUserMemoryRegion2(region: UserMemoryRegion2): void {
    const what = 'KVM_SET_USER_MEMORY_REGION2';
    arg(region.slot, `${what} slot`);
    arg(region.flags, `${what} flags`);
    arg(region.guestPhysAddr, `${what} guest_phys_addr`);
    arg(region.memorySize, `${what} memory_size`);
    arg(region.userspaceAddr, `${what} userspace_addr`);
    arg(region.guestMemfdOffset ?? 0, `${what} guest_memfd_offset`);
    if (region.slot >= 2 ** 32 || region.flags >= 2 ** 32) throw new InvalidArgumentError(`${what}: slot and flags are 32-bit`);
    const buf = new Uint8Array(koffi.sizeof(uapi.kvm_userspace_memory_region2));
    koffi.encode(buf, uapi.kvm_userspace_memory_region2, {
      slot: region.slot,
      flags: region.flags,
      guest_phys_addr: u64(region.guestPhysAddr),
      memory_size: region.memorySize,
      userspace_addr: u64(region.userspaceAddr),
      guest_memfd_offset: region.guestMemfdOffset ?? 0,
      guest_memfd: region.guestMemfd ?? 0,
      pad1: 0,
      pad2: new Array<number>(14).fill(0),
    });
    ioctlPtr(this.fd.fd, uapi.KVM_SET_USER_MEMORY_REGION2, buf, {
      target: `${this.fd.toString()} slot ${region.slot}`,
      range: { offset: u64(region.guestPhysAddr), size: region.memorySize },
    });
  }

  /** KVM_SET_MEMORY_ATTRIBUTES over [address, address + size). */
  setMemoryAttributes(address: bigint | number, size: number, attributes: number): void {
    arg(address, 'KVM_SET_MEMORY_ATTRIBUTES address');
    arg(size, 'KVM_SET_MEMORY_ATTRIBUTES size');
    arg(attributes, 'KVM_SET_MEMORY_ATTRIBUTES attributes');
    const buf = new Uint8Array(koffi.sizeof(uapi.kvm_memory_attributes));
    koffi.encode(buf, uapi.kvm_memory_attributes, { address: u64(address), size, attributes, flags: 0 });
    ioctlPtr(this.fd.fd, uapi.KVM_SET_MEMORY_ATTRIBUTES, buf, { ...this.context(), range: { offset: u64(address), size } });
  }

  close(): void {
    this.fd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private context(): CallContext {
    return { target: this.fd.toString() };
  }
}

/** A guest_memfd: the VM's private memory file. */
export class GuestMemfd {
  readonly vm: KvmVm;
  readonly fd: OwnedFd;
  readonly size: number;
  /** GUEST_MEMFD_FLAG_* it was created with. */
  readonly flags: number;

  /** @internal created by {@link KvmVm.createGuestMemfd}. */
  constructor(token: typeof CHILD, vm: KvmVm, fd: OwnedFd, size: number, flags: number) {
    if (token !== CHILD) throw new TypeError('use KvmVm.createGuestMemfd()');
    this.vm = vm;
    this.fd = fd;
    this.size = size;
    this.flags = flags;
  }

  close(): void {
    this.fd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  toString(): string {
    return `${this.fd.toString()} size ${hex(this.size)}`;
  }
}

/** A vCPU fd and its kvm_run mapping. */
export class KvmVcpu {
  readonly vm: KvmVm;
  readonly id: number;
  readonly fd: OwnedFd;
  /** struct kvm_run, shared with the kernel. */
  readonly run: Mapping;

  /** @internal created by {@link KvmVm.createVcpu}. */
  constructor(token: typeof CHILD, vm: KvmVm, id: number, fd: OwnedFd, run: Mapping) {
    if (token !== CHILD) throw new TypeError('use KvmVm.createVcpu()');
    this.vm = vm;
    this.id = id;
    this.fd = fd;
    this.run = run;
  }

  /**
   * KVM_RUN. Returns errno instead of throwing, because EINTR (a kick or a
   * signal) and EFAULT (KVM_EXIT_MEMORY_FAULT) are ordinary outcomes.
   */
  kvmRun(): { readonly result: number; readonly errno: number } {
    return kvmRun(this.fd.fd);
  }

  /** KVM_GET_REGS. */
  getRegs(): Regs {
    return getRegs(this.fd.fd, this.context());
  }

  /** KVM_SET_REGS. */
  setRegs(regs: Regs): void {
    setRegs(this.fd.fd, regs, this.context());
  }

  /** KVM_GET_SREGS. */
  getSregs(): Sregs {
    return getSregs(this.fd.fd, this.context());
  }

  /** KVM_SET_SREGS. */
  setSregs(sregs: Sregs): void {
    setSregs(this.fd.fd, sregs, this.context());
  }

  /** KVM_SET_CPUID2 with a struct kvm_cpuid2 (as from Kvm.getSupportedCpuid). */
  setCpuid2(cpuid: Uint8Array): void {
    setCpuid2(this.fd.fd, cpuid, this.context());
  }

  /** KVM_PRE_FAULT_MEMORY over [gpa, gpa + size); returns the bytes left (the kernel may stop early). */
  preFaultMemory(gpa: bigint | number, size: number): number {
    arg(gpa, 'KVM_PRE_FAULT_MEMORY gpa');
    arg(size, 'KVM_PRE_FAULT_MEMORY size');
    const buf = new Uint8Array(koffi.sizeof(uapi.kvm_pre_fault_memory));
    koffi.encode(buf, uapi.kvm_pre_fault_memory, { gpa: u64(gpa), size, flags: 0, padding: new Array<number>(5).fill(0) });
    ioctlPtr(this.fd.fd, uapi.KVM_PRE_FAULT_MEMORY, buf, { ...this.context(), range: { offset: u64(gpa), size } });
    return Number((koffi.decode(buf, uapi.kvm_pre_fault_memory) as Record<string, number>)['size']);
  }

  close(): void {
    this.run.close();
    this.fd.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private context(): CallContext {
    return { target: this.fd.toString() };
  }
}

// --- vCPU ioctls by descriptor ----------------------------------------------------
// A vCPU's thread (kvm/vcpu-worker.ts) issues these with the descriptor its
// owner, a KvmVcpu on the main thread, holds.

/** KVM_RUN on a vCPU descriptor; returns errno rather than throwing. */
export function kvmRun(fd: number): { readonly result: number; readonly errno: number } {
  return ioctlIntErrno(fd, uapi.KVM_RUN, 0);
}

/** KVM_GET_REGS on a vCPU descriptor. */
export function getRegs(fd: number, context: CallContext = {}): Regs {
  const buf = new Uint8Array(koffi.sizeof(uapi.kvm_regs));
  ioctlPtr(fd, uapi.KVM_GET_REGS, buf, context);
  const decoded = koffi.decode(buf, uapi.kvm_regs) as Record<string, unknown>;
  const regs = {} as Regs;
  for (const name of REG_NAMES) regs[name] = u64(decoded[name]);
  return regs;
}

/** KVM_SET_REGS on a vCPU descriptor. */
export function setRegs(fd: number, regs: Regs, context: CallContext = {}): void {
  const buf = new Uint8Array(koffi.sizeof(uapi.kvm_regs));
  koffi.encode(buf, uapi.kvm_regs, regs);
  ioctlPtr(fd, uapi.KVM_SET_REGS, buf, context);
}

/** KVM_GET_SREGS on a vCPU descriptor. */
export function getSregs(fd: number, context: CallContext = {}): Sregs {
  const buf = new Uint8Array(koffi.sizeof(uapi.kvm_sregs));
  ioctlPtr(fd, uapi.KVM_GET_SREGS, buf, context);
  const d = koffi.decode(buf, uapi.kvm_sregs) as Record<string, unknown>;
  const seg = (v: unknown): Segment => {
    const s = v as Record<string, number | bigint>;
    return {
      base: u64(s['base']), limit: Number(s['limit']), selector: Number(s['selector']), type: Number(s['type']),
      present: Number(s['present']), dpl: Number(s['dpl']), db: Number(s['db']), s: Number(s['s']), l: Number(s['l']),
      g: Number(s['g']), avl: Number(s['avl']), unusable: Number(s['unusable']),
    };
  };
  const table = (v: unknown): DescriptorTable => {
    const t = v as Record<string, number | bigint>;
    return { base: u64(t['base']), limit: Number(t['limit']) };
  };
  return {
    cs: seg(d['cs']), ds: seg(d['ds']), es: seg(d['es']), fs: seg(d['fs']), gs: seg(d['gs']), ss: seg(d['ss']),
    tr: seg(d['tr']), ldt: seg(d['ldt']), gdt: table(d['gdt']), idt: table(d['idt']),
    cr0: u64(d['cr0']), cr2: u64(d['cr2']), cr3: u64(d['cr3']), cr4: u64(d['cr4']), cr8: u64(d['cr8']),
    efer: u64(d['efer']), apic_base: u64(d['apic_base']),
    interrupt_bitmap: (d['interrupt_bitmap'] as unknown[]).map(u64),
  };
}

/** KVM_SET_SREGS on a vCPU descriptor. */
export function setSregs(fd: number, sregs: Sregs, context: CallContext = {}): void {
  const buf = new Uint8Array(koffi.sizeof(uapi.kvm_sregs));
  const seg = (s: Segment): Record<string, unknown> => ({ ...s, padding: 0 });
  const table = (t: DescriptorTable): Record<string, unknown> => ({ ...t, padding: [0, 0, 0] });
  koffi.encode(buf, uapi.kvm_sregs, {
    ...sregs,
    cs: seg(sregs.cs), ds: seg(sregs.ds), es: seg(sregs.es), fs: seg(sregs.fs), gs: seg(sregs.gs), ss: seg(sregs.ss),
    tr: seg(sregs.tr), ldt: seg(sregs.ldt), gdt: table(sregs.gdt), idt: table(sregs.idt),
  });
  ioctlPtr(fd, uapi.KVM_SET_SREGS, buf, context);
}

/** KVM_SET_CPUID2 on a vCPU descriptor. */
export function setCpuid2(fd: number, cpuid: Uint8Array, context: CallContext = {}): void {
  ioctlPtr(fd, uapi.KVM_SET_CPUID2, cpuid.slice(), context);
}
