/**
 * The KVM layer on the real /dev/kvm: a guest reading and writing
 * guest_memfd-backed memory and exiting through MMIO, a host punch the guest
 * sees as zeroes, the memslot rules (our refusal and the kernel's agree),
 * kicks, real mode, and faults.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { GuestMemfdStore } from '../../src/backing/guest-memfd-store.js';
import { MemfdStore } from '../../src/backing/memfd-store.js';
import { MemslotError, SystemCallError, UnexpectedExitError } from '../../src/core/errors.js';
import { bootProbeGuest, bootRealModeGuest, LOW_RAM_BYTES } from '../../src/guest/boot.js';
import { Vm, type MemslotSpec } from '../../src/kvm/vm.js';
import { KVM_MEM_GUEST_MEMFD } from '../../src/sys/kvm-uapi.js';
import { openKvm } from '../support/host.js';
import { thrown } from '../support/thrown.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const DATA_GPA = 4 * GiB;

async function withVm(t: TestContext, fn: (vm: Vm) => Promise<void> | void): Promise<void> {
  const kvm = openKvm(t);
  if (!kvm) return;
  const vm = Vm.create({ kvm });
  try {
    await fn(vm);
  } finally {
    await vm.close();
    kvm.close();
  }
}

/** Our validation's errno for `spec`, and the kernel's for the same raw request. */
function bothRefuse(vm: Vm, spec: MemslotSpec): { ours: string; kernels: string } {
  const ours = thrown(MemslotError, () => vm.setMemslot(spec)).errnoName;
  const kernels = thrown(SystemCallError, () => {
    vm.fd.setUserMemoryRegion2({
      slot: spec.slot, flags: spec.guestMemfd ? KVM_MEM_GUEST_MEMFD : 0, guestPhysAddr: spec.gpa, memorySize: spec.size,
      userspaceAddr: spec.userspaceAddr ?? 0n, guestMemfdOffset: spec.guestMemfdOffset ?? 0,
      ...(spec.guestMemfd ? { guestMemfd: spec.guestMemfd.fd.fd } : {}),
    });
  }).errnoName;
  return { ours, kernels };
}

describe('KVM on this host', () => {
  it('runs a CPL3 guest that reads and writes guest_memfd memory and exits through MMIO', async (t) => {
    await withVm(t, async (vm) => {
      using store = GuestMemfdStore.create(vm.fd, { name: 'data', size: 2 * MiB, mmap: true, initShared: true });
      store.allocate(0, 2 * MiB);
      const host = store.map();
      vm.setMemslot({ slot: 1, gpa: DATA_GPA, size: 2 * MiB, guestMemfd: store.guestMemfd, userspaceAddr: host.start });
      const guest = await bootProbeGuest(vm, { gib: 8 });
      try {
        const view = new DataView(host.bytes.buffer, host.bytes.byteOffset, host.length);
        view.setBigUint64(0x100, 0x0123_4567_89ab_cdefn, true);
        assert.equal(await guest.probe.read64(DATA_GPA + 0x100), 0x0123_4567_89ab_cdefn, 'the guest reads what the host wrote');
        await guest.probe.write64(DATA_GPA + 0x208, 0x5a5a_5a5a_5a5a_5a5an);
        assert.equal(view.getBigUint64(0x208, true), 0x5a5a_5a5a_5a5a_5a5an, 'the host sees what the guest wrote');
        await guest.probe.fill64(DATA_GPA + 4096, 8192, 3n);
        assert.equal(await guest.probe.sum64(DATA_GPA + 4096, 8192), 3n * 1024n);
        assert.ok(guest.probe.mmioExits >= 14, 'every doorbell access exited');
      } finally {
        await guest.close();
      }
    });
  });

  it('a host punch of guest_memfd makes the guest read zero', async (t) => {
    await withVm(t, async (vm) => {
      // MMAP without INIT_SHARED: guest-only memory, the host cannot read it (how
      // private memory is made on hosts without memory attributes). Without
      // MMAP a default VM would ignore the guest_memfd and use userspace_addr.
      using store = GuestMemfdStore.create(vm.fd, { name: 'data', size: 2 * MiB, mmap: true });
      store.allocate(0, 2 * MiB);
      vm.setMemslot({ slot: 1, gpa: DATA_GPA, size: 2 * MiB, guestMemfd: store.guestMemfd });
      const guest = await bootProbeGuest(vm, { gib: 8 });
      try {
        await guest.probe.fill64(DATA_GPA, 3 * 4096, 0x77n);
        assert.equal(await guest.probe.read64(DATA_GPA + 4096), 0x77n);
        store.discard(4096, 4096);
        assert.equal(await guest.probe.read64(DATA_GPA + 4096), 0n, 'the punched page reads zero');
        assert.equal(await guest.probe.read64(DATA_GPA), 0x77n, 'its neighbours keep their data');
        assert.equal(await guest.probe.read64(DATA_GPA + 8192), 0x77n);
      } finally {
        await guest.close();
      }
    });
  });

  it('refuses memslots as the kernel does: overlap, foreign guest_memfd, immutability, limit', async (t) => {
    await withVm(t, (vm) => {
      const kvm = vm.kvm;
      using shared = MemfdStore.create({ name: 'shared', size: 4 * MiB });
      const hva = shared.map().start;
      using gmem = GuestMemfdStore.create(vm.fd, { name: 'gmem', size: 4 * MiB });
      const other = kvm.createVm();
      try {
        using foreign = GuestMemfdStore.create(other, { name: 'foreign', size: 4 * MiB });
        assert.equal(vm.setMemslot({ slot: 1, gpa: DATA_GPA, size: 2 * MiB, userspaceAddr: hva }), 'create');
        assert.deepEqual(bothRefuse(vm, { slot: 2, gpa: DATA_GPA + MiB, size: 2 * MiB, userspaceAddr: hva + BigInt(2 * MiB) }),
          { ours: 'EEXIST', kernels: 'EEXIST' }, 'overlapping guest physical ranges');
        assert.deepEqual(bothRefuse(vm, { slot: 3, gpa: 2 * DATA_GPA, size: 2 * MiB, guestMemfd: foreign.guestMemfd }),
          { ours: 'EINVAL', kernels: 'EINVAL' }, 'a guest_memfd of another VM');
        assert.equal(vm.setMemslot({ slot: 4, gpa: 3 * DATA_GPA, size: 2 * MiB, guestMemfd: gmem.guestMemfd }), 'create');
        assert.deepEqual(bothRefuse(vm, { slot: 4, gpa: 3 * DATA_GPA, size: 2 * MiB, guestMemfd: gmem.guestMemfd }),
          { ours: 'EINVAL', kernels: 'EINVAL' }, 'a guest_memfd slot re-issued unchanged');
        assert.deepEqual(bothRefuse(vm, { slot: 5, gpa: 4 * DATA_GPA, size: 2 * MiB, guestMemfd: gmem.guestMemfd, guestMemfdOffset: MiB }),
          { ours: 'EINVAL', kernels: 'EINVAL' }, 'a guest_memfd range bound twice');
        assert.deepEqual(bothRefuse(vm, { slot: vm.maxMemslots, gpa: 5 * DATA_GPA, size: 2 * MiB, userspaceAddr: hva }),
          { ours: 'EINVAL', kernels: 'EINVAL' }, 'a slot id at the limit');
        assert.deepEqual(bothRefuse(vm, { slot: 9, gpa: 0, size: 0 }), { ours: 'EINVAL', kernels: 'EINVAL' }, 'deleting a missing slot');
        // Delete and re-create is the way to change a guest_memfd slot.
        vm.deleteMemslot(4);
        assert.equal(vm.setMemslot({ slot: 4, gpa: 3 * DATA_GPA, size: 4 * MiB, guestMemfd: gmem.guestMemfd }), 'create');
        assert.equal(vm.memslots.get(4)?.size, 4 * MiB);
      } finally {
        other.close();
      }
    });
  });

  it('kicks a spinning vCPU out of KVM_RUN', async (t) => {
    await withVm(t, async (vm) => {
      const guest = await bootProbeGuest(vm, { gib: 4 });
      try {
        const spinning = guest.probe.spin();
        await new Promise((resolve) => setTimeout(resolve, 20));
        guest.vcpu.kick();
        assert.deepEqual(await spinning, { kind: 'interrupted' });
      } finally {
        await guest.close();
      }
    });
  });

  it('runs real-mode code: port output, port input answered by the host, HLT', async (t) => {
    await withVm(t, async (vm) => {
      const guest = await bootRealModeGuest(vm);
      try {
        const out = await guest.vcpu.run();
        assert.ok(out.kind === 'io' && out.direction === 'out' && out.port === 0x80 && out.data[0] === 0x42);
        const inp = await guest.vcpu.run();
        assert.ok(inp.kind === 'io' && inp.direction === 'in' && inp.port === 0x81);
        const echo = await guest.vcpu.run({ data: new Uint8Array([0x99]) });
        assert.ok(echo.kind === 'io' && echo.port === 0x82 && echo.data[0] === 0x99, 'the guest read what the host answered');
        assert.deepEqual(await guest.vcpu.run(), { kind: 'hlt' });
      } finally {
        await guest.close();
      }
    });
  });

  it('reports a guest fault as a shutdown, and registers round-trip through the vCPU thread', async (t) => {
    await withVm(t, async (vm) => {
      const guest = await bootProbeGuest(vm, { gib: 4 });
      try {
        const regs = await guest.vcpu.getRegs();
        assert.equal(regs.rip, 0x10_0000n);
        const sregs = await guest.vcpu.getSregs();
        assert.equal(sregs.cs.selector, 0x33);
        assert.equal(sregs.cs.dpl, 3);
        // 8 GiB is beyond the 4 GiB the page tables map: #PF, no IDT, triple fault.
        await assert.rejects(guest.probe.read64(8 * GiB), (e: unknown) => e instanceof UnexpectedExitError
          && typeof e.exit === 'object' && e.exit !== null && 'kind' in e.exit && e.exit.kind === 'shutdown');
      } finally {
        await guest.close();
      }
    });
  });

  it('maps low RAM for the guest below its data', () => {
    assert.ok(LOW_RAM_BYTES <= DATA_GPA);
  });
});
