/**
 * The KVM userspace API, as guestmem uses it: struct layouts (koffi), ioctl
 * numbers (built with the kernel's _IOC encoding from those layouts'
 * sizes), capability numbers, exit reasons and flags. Kernel spellings are
 * kept. Sources: include/uapi/linux/kvm.h, arch/x86/include/uapi/asm/kvm.h,
 * arch/x86/include/uapi/asm/kvm_para.h (reference/kvm-guest-memfd.md §1).
 *
 * Every layout and number here is checked by sys/kvm-uapi.test.ts, which
 * needs no /dev/kvm: against the reference's table, and against gcc's
 * offsetof/sizeof/_IOW on the same declarations.
 */
import koffi, { type TypeObject } from 'koffi';
import type { IoctlRequest } from './libc.js';

// --- structs ------------------------------------------------------------------

export const kvm_userspace_memory_region2 = koffi.struct('kvm_userspace_memory_region2', {
  slot: 'uint32_t',
  flags: 'uint32_t',
  guest_phys_addr: 'uint64_t',
  memory_size: 'uint64_t',
  userspace_addr: 'uint64_t',
  guest_memfd_offset: 'uint64_t',
  guest_memfd: 'uint32_t',
  pad1: 'uint32_t',
  pad2: koffi.array('uint64_t', 14),
});

export const kvm_create_guest_memfd = koffi.struct('kvm_create_guest_memfd', {
  size: 'uint64_t',
  flags: 'uint64_t',
  reserved: koffi.array('uint64_t', 6),
});

export const kvm_memory_attributes = koffi.struct('kvm_memory_attributes', {
  address: 'uint64_t',
  size: 'uint64_t',
  attributes: 'uint64_t',
  flags: 'uint64_t',
});

export const kvm_enable_cap = koffi.struct('kvm_enable_cap', {
  cap: 'uint32_t',
  flags: 'uint32_t',
  args: koffi.array('uint64_t', 4),
  pad: koffi.array('uint8_t', 64),
});

export const kvm_pre_fault_memory = koffi.struct('kvm_pre_fault_memory', {
  gpa: 'uint64_t',
  size: 'uint64_t',
  flags: 'uint64_t',
  padding: koffi.array('uint64_t', 5),
});

export const kvm_regs = koffi.struct('kvm_regs', {
  rax: 'uint64_t', rbx: 'uint64_t', rcx: 'uint64_t', rdx: 'uint64_t',
  rsi: 'uint64_t', rdi: 'uint64_t', rsp: 'uint64_t', rbp: 'uint64_t',
  r8: 'uint64_t', r9: 'uint64_t', r10: 'uint64_t', r11: 'uint64_t',
  r12: 'uint64_t', r13: 'uint64_t', r14: 'uint64_t', r15: 'uint64_t',
  rip: 'uint64_t', rflags: 'uint64_t',
});

export const kvm_segment = koffi.struct('kvm_segment', {
  base: 'uint64_t',
  limit: 'uint32_t',
  selector: 'uint16_t',
  type: 'uint8_t',
  present: 'uint8_t',
  dpl: 'uint8_t',
  db: 'uint8_t',
  s: 'uint8_t',
  l: 'uint8_t',
  g: 'uint8_t',
  avl: 'uint8_t',
  unusable: 'uint8_t',
  padding: 'uint8_t',
});

export const kvm_dtable = koffi.struct('kvm_dtable', {
  base: 'uint64_t',
  limit: 'uint16_t',
  padding: koffi.array('uint16_t', 3),
});

export const kvm_sregs = koffi.struct('kvm_sregs', {
  cs: kvm_segment, ds: kvm_segment, es: kvm_segment, fs: kvm_segment, gs: kvm_segment, ss: kvm_segment,
  tr: kvm_segment, ldt: kvm_segment,
  gdt: kvm_dtable, idt: kvm_dtable,
  cr0: 'uint64_t', cr2: 'uint64_t', cr3: 'uint64_t', cr4: 'uint64_t', cr8: 'uint64_t',
  efer: 'uint64_t', apic_base: 'uint64_t',
  interrupt_bitmap: koffi.array('uint64_t', 4),
});

export const kvm_cpuid_entry2 = koffi.struct('kvm_cpuid_entry2', {
  function: 'uint32_t',
  index: 'uint32_t',
  flags: 'uint32_t',
  eax: 'uint32_t',
  ebx: 'uint32_t',
  ecx: 'uint32_t',
  edx: 'uint32_t',
  padding: koffi.array('uint32_t', 3),
});

/** struct kvm_cpuid2's header; `nent` entries of kvm_cpuid_entry2 follow it. */
export const kvm_cpuid2 = koffi.struct('kvm_cpuid2', {
  nent: 'uint32_t',
  padding: 'uint32_t',
});

// The exit structs of struct kvm_run's union (the ones guestmem decodes).
const kvm_run_io = koffi.struct('kvm_run_io', {
  direction: 'uint8_t', size: 'uint8_t', port: 'uint16_t', count: 'uint32_t', data_offset: 'uint64_t',
});
const kvm_run_mmio = koffi.struct('kvm_run_mmio', {
  phys_addr: 'uint64_t', data: koffi.array('uint8_t', 8), len: 'uint32_t', is_write: 'uint8_t',
});
const kvm_run_hypercall = koffi.struct('kvm_run_hypercall', {
  nr: 'uint64_t', args: koffi.array('uint64_t', 6), ret: 'uint64_t',
  // union { __u32 longmode; __u64 flags; }: flags bit 0 is KVM_EXIT_HYPERCALL_LONG_MODE.
  flags: 'uint64_t',
});
const kvm_run_memory_fault = koffi.struct('kvm_run_memory_fault', {
  flags: 'uint64_t', gpa: 'uint64_t', size: 'uint64_t',
});
const kvm_run_internal = koffi.struct('kvm_run_internal', {
  suberror: 'uint32_t', ndata: 'uint32_t', data: koffi.array('uint64_t', 16),
});
const kvm_run_fail_entry = koffi.struct('kvm_run_fail_entry', {
  hardware_entry_failure_reason: 'uint64_t', cpu: 'uint32_t',
});
const kvm_run_exit = koffi.union('kvm_run_exit', {
  io: kvm_run_io,
  mmio: kvm_run_mmio,
  hypercall: kvm_run_hypercall,
  memory_fault: kvm_run_memory_fault,
  internal: kvm_run_internal,
  fail_entry: kvm_run_fail_entry,
  padding: koffi.array('uint8_t', 256),
});

/** The start of struct kvm_run (the vCPU's shared page), up to the exit union. */
export const kvm_run = koffi.struct('kvm_run', {
  request_interrupt_window: 'uint8_t',
  immediate_exit: 'uint8_t',
  padding1: koffi.array('uint8_t', 6),
  exit_reason: 'uint32_t',
  ready_for_interrupt_injection: 'uint8_t',
  if_flag: 'uint8_t',
  flags: 'uint16_t',
  cr8: 'uint64_t',
  apic_base: 'uint64_t',
  exit: kvm_run_exit,
});

/** Byte offsets into struct kvm_run, derived from the layout above, for DataView access in the run loop. */
export const KVM_RUN_OFFSETS = (() => {
  const at = (outer: TypeObject, field: string): number => koffi.offsetof(outer, field);
  const exit = at(kvm_run, 'exit');
  return {
    immediate_exit: at(kvm_run, 'immediate_exit'),
    exit_reason: at(kvm_run, 'exit_reason'),
    exit,
    io_direction: exit + at(kvm_run_io, 'direction'),
    io_size: exit + at(kvm_run_io, 'size'),
    io_port: exit + at(kvm_run_io, 'port'),
    io_count: exit + at(kvm_run_io, 'count'),
    io_data_offset: exit + at(kvm_run_io, 'data_offset'),
    mmio_phys_addr: exit + at(kvm_run_mmio, 'phys_addr'),
    mmio_data: exit + at(kvm_run_mmio, 'data'),
    mmio_len: exit + at(kvm_run_mmio, 'len'),
    mmio_is_write: exit + at(kvm_run_mmio, 'is_write'),
    hypercall_nr: exit + at(kvm_run_hypercall, 'nr'),
    hypercall_args: exit + at(kvm_run_hypercall, 'args'),
    hypercall_ret: exit + at(kvm_run_hypercall, 'ret'),
    hypercall_flags: exit + at(kvm_run_hypercall, 'flags'),
    memory_fault_flags: exit + at(kvm_run_memory_fault, 'flags'),
    memory_fault_gpa: exit + at(kvm_run_memory_fault, 'gpa'),
    memory_fault_size: exit + at(kvm_run_memory_fault, 'size'),
    internal_suberror: exit + at(kvm_run_internal, 'suberror'),
    internal_ndata: exit + at(kvm_run_internal, 'ndata'),
    internal_data: exit + at(kvm_run_internal, 'data'),
    fail_entry_reason: exit + at(kvm_run_fail_entry, 'hardware_entry_failure_reason'),
    fail_entry_cpu: exit + at(kvm_run_fail_entry, 'cpu'),
    exit_size: koffi.sizeof(kvm_run_exit),
  } as const;
})();

// --- ioctl numbers --------------------------------------------------------------

const KVMIO = 0xae;
const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;

/** The kernel's _IOC(dir, type, nr, size). */
export function ioc(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
function io(name: string, nr: number): IoctlRequest {
  return { name, number: ioc(IOC_NONE, KVMIO, nr, 0) };
}
function ior(name: string, nr: number, type: TypeObject): IoctlRequest {
  return { name, number: ioc(IOC_READ, KVMIO, nr, koffi.sizeof(type)) };
}
function iow(name: string, nr: number, type: TypeObject): IoctlRequest {
  return { name, number: ioc(IOC_WRITE, KVMIO, nr, koffi.sizeof(type)) };
}
function iowr(name: string, nr: number, type: TypeObject): IoctlRequest {
  return { name, number: ioc(IOC_READ | IOC_WRITE, KVMIO, nr, koffi.sizeof(type)) };
}

// system ioctls
export const KVM_GET_API_VERSION = io('KVM_GET_API_VERSION', 0x00);
export const KVM_CREATE_VM = io('KVM_CREATE_VM', 0x01);
export const KVM_CHECK_EXTENSION = io('KVM_CHECK_EXTENSION', 0x03);
export const KVM_GET_VCPU_MMAP_SIZE = io('KVM_GET_VCPU_MMAP_SIZE', 0x04);
export const KVM_GET_SUPPORTED_CPUID = iowr('KVM_GET_SUPPORTED_CPUID', 0x05, kvm_cpuid2);
// VM ioctls
export const KVM_CREATE_VCPU = io('KVM_CREATE_VCPU', 0x41);
export const KVM_SET_TSS_ADDR = io('KVM_SET_TSS_ADDR', 0x47);
export const KVM_SET_USER_MEMORY_REGION2 = iow('KVM_SET_USER_MEMORY_REGION2', 0x49, kvm_userspace_memory_region2);
export const KVM_ENABLE_CAP = iow('KVM_ENABLE_CAP', 0xa3, kvm_enable_cap);
export const KVM_SET_MEMORY_ATTRIBUTES = iow('KVM_SET_MEMORY_ATTRIBUTES', 0xd2, kvm_memory_attributes);
export const KVM_CREATE_GUEST_MEMFD = iowr('KVM_CREATE_GUEST_MEMFD', 0xd4, kvm_create_guest_memfd);
// vCPU ioctls
export const KVM_RUN = io('KVM_RUN', 0x80);
export const KVM_GET_REGS = ior('KVM_GET_REGS', 0x81, kvm_regs);
export const KVM_SET_REGS = iow('KVM_SET_REGS', 0x82, kvm_regs);
export const KVM_GET_SREGS = ior('KVM_GET_SREGS', 0x83, kvm_sregs);
export const KVM_SET_SREGS = iow('KVM_SET_SREGS', 0x84, kvm_sregs);
export const KVM_SET_CPUID2 = iow('KVM_SET_CPUID2', 0x90, kvm_cpuid2);
export const KVM_PRE_FAULT_MEMORY = iowr('KVM_PRE_FAULT_MEMORY', 0xd5, kvm_pre_fault_memory);

// --- capabilities ----------------------------------------------------------------

export const KVM_API_VERSION = 12;
export const KVM_CAP_NR_MEMSLOTS = 10;
export const KVM_CAP_IMMEDIATE_EXIT = 136;
export const KVM_CAP_EXIT_HYPERCALL = 201;
export const KVM_CAP_USER_MEMORY2 = 231;
export const KVM_CAP_MEMORY_FAULT_INFO = 232;
export const KVM_CAP_MEMORY_ATTRIBUTES = 233;
export const KVM_CAP_GUEST_MEMFD = 234;
export const KVM_CAP_VM_TYPES = 235;
export const KVM_CAP_PRE_FAULT_MEMORY = 236;
export const KVM_CAP_GUEST_MEMFD_FLAGS = 244;

// --- VM types, memslot and guest_memfd flags, attributes --------------------------

export const KVM_X86_DEFAULT_VM = 0;
export const KVM_X86_SW_PROTECTED_VM = 1;
export const KVM_X86_SEV_VM = 2;
export const KVM_X86_SEV_ES_VM = 3;
export const KVM_X86_SNP_VM = 4;
export const KVM_X86_TDX_VM = 5;
/** Names of the x86 VM types, by value. */
export const VM_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'default', 1: 'sw-protected', 2: 'sev', 3: 'sev-es', 4: 'snp', 5: 'tdx',
};

export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;

export const GUEST_MEMFD_FLAG_MMAP = 1 << 0;
export const GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1;

export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3;

// --- exits --------------------------------------------------------------------------

export const KVM_EXIT_UNKNOWN = 0;
export const KVM_EXIT_IO = 2;
export const KVM_EXIT_HYPERCALL = 3;
export const KVM_EXIT_HLT = 5;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTR = 10;
export const KVM_EXIT_INTERNAL_ERROR = 17;
export const KVM_EXIT_MEMORY_FAULT = 39;

export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;
export const KVM_EXIT_HYPERCALL_LONG_MODE = 1 << 0;
export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3;

// --- hypercalls (kvm_para.h) --------------------------------------------------------

export const KVM_HC_MAP_GPA_RANGE = 12;
export const KVM_MAP_GPA_RANGE_PAGE_SZ_4K = 0;
export const KVM_MAP_GPA_RANGE_PAGE_SZ_2M = 1 << 0;
export const KVM_MAP_GPA_RANGE_PAGE_SZ_1G = 1 << 1;
export const KVM_MAP_GPA_RANGE_ENCRYPTED = 1 << 4;
export const KVM_MAP_GPA_RANGE_DECRYPTED = 0;
/** Error values a hypercall returns to the guest (negated in RAX). */
export const KVM_ENOSYS = 1000;
export const KVM_EFAULT = 14;
export const KVM_EINVAL = 22;
export const KVM_E2BIG = 7;
export const KVM_EPERM = 1;
