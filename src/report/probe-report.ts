/**
 * `guestmem probe` for a terminal: the capabilities, then in plain words what
 * guestmem can do here.
 */
import Table from 'cli-table3';
import { hex } from '../core/units.js';
import type { HostAbilities, HostProbe } from '../sys/probe.js';

export function formatProbe(probe: HostProbe, abilities: HostAbilities, color: boolean): string {
  const style = color ? {} : { head: [], border: [] };
  const caps = new Table({ head: ['capability', 'value'], style });
  const kvm = probe.kvm;
  if (kvm.available) {
    caps.push(
      ['KVM API version', String(kvm.apiVersion)],
      ['VM types', kvm.vmTypes.map((t) => (typeof t === 'string' ? t : `unknown(${t.raw})`)).join(', ')],
      ['KVM_CAP_GUEST_MEMFD', String(kvm.caps.guestMemfd)],
      ['KVM_CAP_GUEST_MEMFD_FLAGS', `${hex(kvm.caps.guestMemfdFlags)} (bit 0 MMAP, bit 1 INIT_SHARED)`],
      ['KVM_CAP_USER_MEMORY2', String(kvm.caps.userMemory2)],
      ['KVM_CAP_MEMORY_ATTRIBUTES', `${hex(kvm.caps.memoryAttributes)} on a default VM, ${hex(kvm.caps.memoryAttributesAnyVm)} on /dev/kvm`],
      ['KVM_CAP_MEMORY_FAULT_INFO', String(kvm.caps.memoryFaultInfo)],
      ['KVM_CAP_EXIT_HYPERCALL', `${hex(kvm.caps.exitHypercall)} (bit 12 MAP_GPA_RANGE)`],
      ['KVM_CAP_NR_MEMSLOTS', String(kvm.caps.nrMemslots)],
      ['KVM_CAP_PRE_FAULT_MEMORY', String(kvm.caps.preFaultMemory)],
      ['KVM_CAP_IMMEDIATE_EXIT', String(kvm.caps.immediateExit)],
      ['vCPU mmap size', String(kvm.vcpuMmapSize)],
    );
  } else {
    caps.push(['KVM', kvm.reason]);
  }
  caps.push(
    ['CPU virtualization', `${probe.cpuVirtualization}${probe.pvm ? ' (kvm_pvm loaded: software virtualization)' : ''}`],
    ['host page size', String(probe.hostPageSize)],
    ...probe.hugePages.map((p): [string, string] => [`huge pages ${p.size >= 2 ** 30 ? `${p.size / 2 ** 30} GiB` : `${p.size / 2 ** 20} MiB`}`, `${p.free} free of ${p.total} (${p.reserved} reserved)`]),
    ['shmem THP', typeof probe.shmemThp === 'string' ? probe.shmemThp : `unknown: ${String(probe.shmemThp.raw)}`],
    ['memory cgroup', probe.memoryCgroup],
  );
  const yes = (b: boolean): string => (b ? 'yes' : 'no ');
  const lines = [
    caps.toString(),
    '',
    `private memory: ${abilities.privateMemory.mechanism} - ${abilities.privateMemory.detail}`,
    'conversion requests:',
    ...abilities.transports.map((t) => `  ${yes(t.available)} ${t.name}: ${t.detail}`),
    'backing stores:',
    ...abilities.backings.map((b) => `  ${yes(b.available)} ${b.name}: ${b.detail}`),
  ];
  return lines.join('\n');
}
