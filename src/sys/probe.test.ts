import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hostAbilities, type HostProbe } from './probe.js';

const base: HostProbe = {
  kvm: {
    available: true, apiVersion: 12, vmTypes: ['default'], vcpuMmapSize: 12288,
    caps: { guestMemfd: 1, guestMemfdFlags: 3, userMemory2: 1, memoryAttributes: 0, memoryAttributesAnyVm: 0, memoryFaultInfo: 1, exitHypercall: 0x1000, nrMemslots: 32764, preFaultMemory: 0, immediateExit: 1 },
  },
  hostPageSize: 4096,
  hugePages: [{ size: 2 ** 21, total: 4, free: 4, reserved: 0 }, { size: 2 ** 30, total: 0, free: 0, reserved: 0 }],
  shmemThp: 'never',
  memoryCgroup: 'v1',
  cpuVirtualization: 'none',
  pvm: true,
};

describe('host abilities', () => {
  it('on a PVM host without memory attributes: memslots and the doorbell', () => {
    const a = hostAbilities(base);
    assert.equal(a.privateMemory.mechanism, 'memslots');
    assert.deepEqual(a.transports.map((t) => t.available), [false, false, true]);
    assert.match(a.transports[0]?.detail ?? '', /PVM/);
    assert.deepEqual(a.backings.map((b) => [b.name, b.available]), [
      ['guest_memfd', true], ['memfd 4 KiB', true], ['memfd THP', false], ['memfd hugetlb 2 MiB', true], ['memfd hugetlb 1 GiB', false],
    ]);
  });

  it('on a VMX host with SW_PROTECTED VMs: attributes, hypercall and memory-fault exits', () => {
    const kvm = base.kvm.available ? base.kvm : undefined;
    assert.ok(kvm);
    const a = hostAbilities({
      ...base, cpuVirtualization: 'vmx', pvm: false, shmemThp: 'within_size',
      kvm: { ...kvm, vmTypes: ['default', 'sw-protected'], caps: { ...kvm.caps, memoryAttributesAnyVm: 8 } },
    });
    assert.equal(a.privateMemory.mechanism, 'attributes');
    assert.deepEqual(a.transports.map((t) => t.available), [true, true, true]);
    assert.equal(a.backings.find((b) => b.name === 'memfd THP')?.available, true);
  });

  it('without KVM: the simulated path only', () => {
    const a = hostAbilities({ ...base, kvm: { available: false, reason: '/dev/kvm is not available' } });
    assert.equal(a.privateMemory.mechanism, 'simulated');
    assert.ok(a.transports.every((t) => !t.available));
  });
});
