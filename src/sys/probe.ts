/**
 * What this host offers, probed once: KVM's API version, VM types and the
 * capabilities guestmem depends on, huge page pools, the shmem THP mode, the
 * memory cgroup version, and whether the CPU virtualizes in hardware. Values
 * the kernel reports that guestmem does not know are kept as
 * `{ kind: 'unknown', raw }`.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { CapabilityError } from '../core/errors.js';
import { Kvm } from './kvm.js';
import { HOST_PAGE_BYTES } from './libc.js';
import * as uapi from './kvm-uapi.js';

/** A value the kernel reported that guestmem does not know the meaning of. */
export interface Unknown {
  readonly kind: 'unknown';
  readonly raw: string | number;
}

/** KVM as probed. */
export type KvmProbe =
  | {
    readonly available: true;
    readonly apiVersion: number;
    /** VM types KVM_CREATE_VM accepts (from KVM_CAP_VM_TYPES; just the default VM when the cap is 0). */
    readonly vmTypes: readonly (string | Unknown)[];
    /** Raw capability values: on the system fd, and on a default VM's fd where that is where they are exact. */
    readonly caps: {
      readonly guestMemfd: number;
      /** Mask of valid guest_memfd flags (bit 0 MMAP, bit 1 INIT_SHARED), on a default VM. */
      readonly guestMemfdFlags: number;
      readonly userMemory2: number;
      /** Mask of KVM_SET_MEMORY_ATTRIBUTES attributes on a default VM (0 when not supported there). */
      readonly memoryAttributes: number;
      /** The same mask on the system fd (any VM type). */
      readonly memoryAttributesAnyVm: number;
      readonly memoryFaultInfo: number;
      /** Mask of hypercalls that can exit to userspace (bit 12: KVM_HC_MAP_GPA_RANGE). */
      readonly exitHypercall: number;
      readonly nrMemslots: number;
      readonly preFaultMemory: number;
      readonly immediateExit: number;
    };
    readonly vcpuMmapSize: number;
  }
  | { readonly available: false; readonly reason: string };

/** A hugetlb pool. */
export interface HugePagePool {
  readonly size: number;
  readonly total: number;
  readonly free: number;
  readonly reserved: number;
}

/** Everything the probe found. */
export interface HostProbe {
  readonly kvm: KvmProbe;
  readonly hostPageSize: number;
  readonly hugePages: readonly HugePagePool[];
  /** /sys/kernel/mm/transparent_hugepage/shmem_enabled, its selected mode. */
  readonly shmemThp: 'never' | 'always' | 'within_size' | 'advise' | 'deny' | 'force' | Unknown | 'unavailable';
  readonly memoryCgroup: 'v1' | 'v2' | 'none';
  /** The CPU's virtualization: vmx/svm flags, or neither (then KVM may be PVM, a software hypervisor). */
  readonly cpuVirtualization: 'vmx' | 'svm' | 'none';
  /** The kvm_pvm module is loaded (software virtualization: CPL3 guest code runs natively, VMCALL does not exit). */
  readonly pvm: boolean;
}

let cached: HostProbe | undefined;

/** Probes the host once and keeps the answer; `refresh` probes again (e.g. after reserving huge pages). */
export function probeHost(options: { readonly refresh?: boolean; readonly kvmPath?: string } = {}): HostProbe {
  if (cached && !options.refresh) return cached;
  cached = {
    kvm: probeKvm(options.kvmPath ?? '/dev/kvm'),
    hostPageSize: HOST_PAGE_BYTES,
    hugePages: probeHugePages(),
    shmemThp: probeShmemThp(),
    memoryCgroup: existsSync('/sys/fs/cgroup/cgroup.controllers') ? 'v2' : existsSync('/sys/fs/cgroup/memory') ? 'v1' : 'none',
    cpuVirtualization: probeCpuVirtualization(),
    pvm: existsSync('/sys/module/kvm_pvm'),
  };
  return cached;
}

function probeKvm(path: string): KvmProbe {
  let kvm: Kvm;
  try {
    kvm = Kvm.open(path);
  } catch (error) {
    if (error instanceof CapabilityError) return { available: false, reason: error.message };
    throw error;
  }
  try {
    const sys = (cap: number): number => kvm.checkExtension(cap);
    const typesMask = sys(uapi.KVM_CAP_VM_TYPES);
    const vmTypes: (string | Unknown)[] = [];
    if (typesMask === 0) vmTypes.push('default');
    for (let t = 0; t < 32; t++) {
      if ((typesMask >>> t) & 1) {
        const name = uapi.VM_TYPE_NAMES[t];
        vmTypes.push(name ?? { kind: 'unknown', raw: t });
      }
    }
    using vm = kvm.createVm(uapi.KVM_X86_DEFAULT_VM);
    const onVm = (cap: number): number => vm.checkExtension(cap);
    return {
      available: true,
      apiVersion: kvm.getApiVersion(),
      vmTypes,
      caps: {
        guestMemfd: sys(uapi.KVM_CAP_GUEST_MEMFD),
        guestMemfdFlags: onVm(uapi.KVM_CAP_GUEST_MEMFD_FLAGS),
        userMemory2: sys(uapi.KVM_CAP_USER_MEMORY2),
        memoryAttributes: onVm(uapi.KVM_CAP_MEMORY_ATTRIBUTES),
        memoryAttributesAnyVm: sys(uapi.KVM_CAP_MEMORY_ATTRIBUTES),
        memoryFaultInfo: sys(uapi.KVM_CAP_MEMORY_FAULT_INFO),
        exitHypercall: sys(uapi.KVM_CAP_EXIT_HYPERCALL),
        nrMemslots: sys(uapi.KVM_CAP_NR_MEMSLOTS),
        preFaultMemory: sys(uapi.KVM_CAP_PRE_FAULT_MEMORY),
        immediateExit: sys(uapi.KVM_CAP_IMMEDIATE_EXIT),
      },
      vcpuMmapSize: kvm.getVcpuMmapSize(),
    };
  } finally {
    kvm.close();
  }
}

function readNumber(path: string): number {
  return Number(readFileSync(path, 'utf8').trim());
}

function probeHugePages(): HugePagePool[] {
  const dir = '/sys/kernel/mm/hugepages';
  if (!existsSync(dir)) return [];
  const pools: HugePagePool[] = [];
  for (const entry of readdirSync(dir)) {
    const m = /^hugepages-(\d+)kB$/.exec(entry);
    if (!m) continue;
    const base = `${dir}/${entry}`;
    pools.push({
      size: Number(m[1]) * 1024,
      total: readNumber(`${base}/nr_hugepages`),
      free: readNumber(`${base}/free_hugepages`),
      reserved: readNumber(`${base}/resv_hugepages`),
    });
  }
  return pools.sort((a, b) => a.size - b.size);
}

function probeShmemThp(): HostProbe['shmemThp'] {
  const path = '/sys/kernel/mm/transparent_hugepage/shmem_enabled';
  if (!existsSync(path)) return 'unavailable';
  const text = readFileSync(path, 'utf8').trim();
  const selected = /\[([a-z_]+)\]/.exec(text)?.[1];
  switch (selected) {
    case 'never':
    case 'always':
    case 'within_size':
    case 'advise':
    case 'deny':
    case 'force':
      return selected;
    default:
      return { kind: 'unknown', raw: text };
  }
}

function probeCpuVirtualization(): HostProbe['cpuVirtualization'] {
  if (!existsSync('/proc/cpuinfo')) return 'none';
  const flags = /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.split(/\s+/) ?? [];
  if (flags.includes('vmx')) return 'vmx';
  if (flags.includes('svm')) return 'svm';
  return 'none';
}

/** What guestmem can do on a host, derived from its probe. */
export interface HostAbilities {
  /** How private memory is made: memory attributes, memslot re-layout, or only simulated. */
  readonly privateMemory: { readonly mechanism: 'attributes' | 'memslots' | 'simulated'; readonly detail: string };
  /** How a guest's conversion requests reach guestmem. */
  readonly transports: readonly { readonly name: string; readonly available: boolean; readonly detail: string }[];
  /** Backing stores that can be created now. */
  readonly backings: readonly { readonly name: string; readonly available: boolean; readonly detail: string }[];
}

const PRIVATE_ATTRIBUTE = 8;
const MAP_GPA_RANGE_EXIT = 1 << 12;

/** Says what guestmem can do on the probed host. */
export function hostAbilities(probe: HostProbe): HostAbilities {
  const kvm = probe.kvm;
  let privateMemory: HostAbilities['privateMemory'];
  if (!kvm.available) {
    privateMemory = { mechanism: 'simulated', detail: `no KVM (${kvm.reason}): conversions run on the simulated path only` };
  } else if ((kvm.caps.memoryAttributesAnyVm & PRIVATE_ATTRIBUTE) !== 0 && kvm.vmTypes.some((t) => t === 'sw-protected' || t === 'snp' || t === 'tdx')) {
    privateMemory = { mechanism: 'attributes', detail: 'KVM_SET_MEMORY_ATTRIBUTES marks ranges private on a VM with private memory' };
  } else if (kvm.caps.guestMemfd !== 0 && (kvm.caps.guestMemfdFlags & 1) !== 0) {
    privateMemory = {
      mechanism: 'memslots',
      detail: `no memory attributes: private ranges are memslots over a guest_memfd with MMAP and without INIT_SHARED, `
        + `shared ranges memslots over the shared memory; a conversion re-lays memslots (at most ${kvm.caps.nrMemslots})`,
    };
  } else {
    privateMemory = { mechanism: 'simulated', detail: 'KVM has no guest_memfd with MMAP: conversions run on the simulated path only' };
  }
  const hardware = probe.cpuVirtualization !== 'none' && !probe.pvm;
  const hypercall = kvm.available && (kvm.caps.exitHypercall & MAP_GPA_RANGE_EXIT) !== 0;
  const transports = [
    {
      name: 'KVM_EXIT_HYPERCALL (MAP_GPA_RANGE)',
      available: hypercall && hardware,
      detail: !hypercall ? 'KVM_CAP_EXIT_HYPERCALL lacks MAP_GPA_RANGE'
        : hardware ? 'guest VMCALL/VMMCALL exits to guestmem'
          : 'the cap is there, but under PVM a guest VMCALL never exits',
    },
    {
      name: 'KVM_EXIT_MEMORY_FAULT (implicit)',
      available: kvm.available && kvm.caps.memoryFaultInfo !== 0 && privateMemory.mechanism === 'attributes',
      detail: kvm.available && kvm.caps.memoryFaultInfo !== 0 ? 'needs a VM with private memory attributes' : 'KVM_CAP_MEMORY_FAULT_INFO is 0',
    },
    { name: 'doorbell device (MMIO)', available: kvm.available, detail: 'the guest writes MAP_GPA_RANGE arguments to an MMIO register block' },
  ];
  const pool = (size: number): HugePagePool | undefined => probe.hugePages.find((p) => p.size === size);
  const hugetlb = (size: number, label: string): HostAbilities['backings'][number] => {
    const p = pool(size);
    return {
      name: `memfd hugetlb ${label}`,
      available: p !== undefined && p.free > 0,
      detail: p === undefined ? 'no pool' : `${p.free} of ${p.total} free${p.total === 0 ? ` (reserve: echo N > /sys/kernel/mm/hugepages/hugepages-${size / 1024}kB/nr_hugepages)` : ''}`,
    };
  };
  const thp = probe.shmemThp;
  const thpOn = thp === 'always' || thp === 'within_size' || thp === 'force';
  const backings = [
    {
      name: 'guest_memfd',
      available: kvm.available && kvm.caps.guestMemfd !== 0,
      detail: kvm.available ? `flags ${(kvm.caps.guestMemfdFlags & 1) !== 0 ? 'MMAP' : ''}${(kvm.caps.guestMemfdFlags & 2) !== 0 ? ' INIT_SHARED' : ''}; 4 KiB pages` : 'no KVM',
    },
    { name: 'memfd 4 KiB', available: true, detail: 'shmem' },
    {
      name: 'memfd THP',
      available: thpOn,
      detail: `shmem_enabled is ${typeof thp === 'string' ? thp : thp.raw}${thpOn ? '' : ' (set within_size or always)'}`,
    },
    hugetlb(2 ** 21, '2 MiB'),
    hugetlb(2 ** 30, '1 GiB'),
  ];
  return { privateMemory, transports, backings };
}
