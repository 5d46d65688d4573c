/** The conformance suite on every store, and each store's own failure cases. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { GuestMemfdStore } from '../../src/backing/guest-memfd-store.js';
import { MemfdStore, type MemfdPages } from '../../src/backing/memfd-store.js';
import { SimulatedStore } from '../../src/backing/simulated-store.js';
import { CapabilityError, InconsistentStateError, SystemCallError, UnsupportedOperationError } from '../../src/core/errors.js';
import { GiB, MiB } from '../../src/core/units.js';
import { need, openKvm, withHugePages, withShmemThp } from '../support/host.js';
import { canReadPageCacheExactly, pageCacheMeter } from '../support/kernel-meter.js';
import { thrown } from '../support/thrown.js';
import { storeConformance, type Harness } from './conformance.js';

function simulated(size: number, pageSize: number, runs: number, policy: 'huge' | 'transparent-huge' = 'huge'): void {
  storeConformance(`simulated store, ${pageSize / 1024} KiB pages${pageSize > 4096 ? `, ${policy}` : ''}`, {
    runs,
    open: async (_t, run) => {
      const store = new SimulatedStore({ name: 'sim', size, pageSize, policy });
      try {
        await run({ store, meter: { source: 'the simulated kernel', read: () => store.kernelBackedBytes() } });
      } finally {
        store.close();
      }
    },
  });
}
simulated(4 * MiB, 4096, 400);
simulated(16 * MiB, 2 * MiB, 300);
simulated(16 * MiB, 2 * MiB, 300, 'transparent-huge');
simulated(2 * GiB, GiB, 30);

function memfd(pages: MemfdPages, size: number, runs: number, host: (t: Parameters<Parameters<typeof storeConformance>[1]['open']>[0], fn: () => Promise<void>) => Promise<void>): void {
  storeConformance(`memfd store, ${pages}`, {
    runs,
    open: (t, run) => host(t, async () => {
      const store = MemfdStore.create({ name: `conformance-${pages}`, size, pages });
      try {
        await run({ store, meter: { source: 'st_blocks x 512', read: () => store.kernelBackedBytes() } });
      } finally {
        store.close();
      }
    }),
  });
}
memfd('4k', 8 * MiB, 60, async (_t, fn) => fn());
memfd('thp', 8 * MiB, 40, (t, fn) => withShmemThp(t, 'within_size', fn));
memfd('hugetlb-2m', 8 * MiB, 30, (t, fn) => withHugePages(t, 2 * MiB, 4, fn));
memfd('hugetlb-1g', GiB, 3, (t, fn) => withHugePages(t, GiB, 1, fn));

function guestMemfd(label: string, mmap: boolean, runs: number): void {
  storeConformance(`guest_memfd store, ${label}`, {
    runs,
    open: async (t, run) => {
      if (!need(t, canReadPageCacheExactly, 'checking guest_memfd against the kernel needs root (/proc/sys/vm/stat_refresh)')) return;
      const kvm = openKvm(t);
      if (!kvm) return;
      const vm = kvm.createVm();
      const store = GuestMemfdStore.create(vm, { name: 'conformance', size: 8 * MiB, mmap, initShared: mmap });
      const harness: Harness = { store, meter: pageCacheMeter() };
      try {
        await run(harness);
      } finally {
        store.close();
        vm.close();
        kvm.close();
      }
    },
  });
}
guestMemfd('flags 0', false, 25);
guestMemfd('MMAP|INIT_SHARED', true, 25);

describe('guest memory: exposed ranges and what the kernel holds', () => {
  it('exposes without allocating; the kernel backs what the guest faults in; discard frees it', () => {
    const store = new SimulatedStore({ name: 'sim', size: 8 * MiB });
    store.expose(0, MiB);
    assert.equal(store.kernelCalls, 0, 'exposing makes no call');
    assert.equal(store.ledger.requestedBytes, MiB);
    store.fault(4096, 8192);
    assert.deepEqual([...(store.residentPages(0, 4 * 4096) ?? [])], [0, 1, 1, 0]);
    store.discard(0, MiB);
    assert.equal(store.kernelBackedBytes(), 0, 'the discard punched what the guest had faulted in');
  });

  it('hugetlb-like: a discard of part of an exposed huge page keeps the rest (stranded)', () => {
    const store = new SimulatedStore({ name: 'sim', size: 8 * MiB, pageSize: 2 * MiB });
    store.expose(0, 2 * MiB);
    store.fault(0, 2 * MiB);
    store.discard(4096, 4096);
    assert.equal(store.kernelBackedBytes(), 2 * MiB, 'nothing freed: the rest of the huge page is in use');
    assert.equal(store.ledger.strandedBytes, 4096);
    store.discard(0, 4096);
    store.discard(8192, 2 * MiB - 8192);
    assert.equal(store.kernelBackedBytes(), 0, 'freed with its last page');
  });

  it('memfd and guest_memfd report the pages the kernel holds (mincore)', (t) => {
    using memfd = MemfdStore.create({ name: 'resident', size: 4 * MiB });
    memfd.expose(0, 4 * MiB);
    memfd.map().bytes[3 * 4096] = 1;
    assert.deepEqual([...(memfd.residentPages(0, 4 * 4096) ?? [])], [0, 0, 0, 1]);
    memfd.discard(3 * 4096, 4096);
    assert.deepEqual([...(memfd.residentPages(0, 4 * 4096) ?? [])], [0, 0, 0, 0]);
    const kvm = openKvm(t);
    if (!kvm) return;
    using vm = kvm.createVm();
    using shared = GuestMemfdStore.create(vm, { name: 'g', size: MiB, mmap: true, initShared: true });
    shared.expose(0, MiB);
    shared.map().bytes[4096] = 1;
    assert.deepEqual([...(shared.residentPages(0, 3 * 4096) ?? [])], [0, 1, 0]);
    shared.discard(0, MiB);
    assert.deepEqual([...(shared.residentPages(0, 3 * 4096) ?? [])], [0, 0, 0]);
    using noMmap = GuestMemfdStore.create(vm, { name: 'h', size: MiB });
    assert.equal(noMmap.residentPages(0, 4096), undefined, 'without MMAP the kernel cannot be asked');
    kvm.close();
  });
});

describe('backing store failures', () => {
  it('undoes a partial allocation: ledger and kernel as before, error typed', () => {
    const store = new SimulatedStore({ name: 'sim', size: 16 * MiB, pageSize: 2 * MiB });
    store.allocate(0, 2 * MiB);
    store.failNext('allocate', { errno: 'ENOMEM', afterBytes: 4 * MiB });
    const err = thrown(SystemCallError, () => { store.allocate(2 * MiB, 8 * MiB); });
    assert.equal(err.errnoName, 'ENOMEM');
    assert.equal(err.call, 'fallocate');
    assert.equal(store.ledger.backedBytes, 2 * MiB);
    assert.equal(store.kernelBackedBytes(), 2 * MiB, 'what the failed call backed was punched again');
    store.allocate(2 * MiB, 2 * MiB);
    assert.equal(store.kernelBackedBytes(), 4 * MiB, 'the store is usable afterwards');
  });

  it('refuses further use when a partial allocation cannot be undone', () => {
    const store = new SimulatedStore({ name: 'sim', size: 8 * MiB });
    store.failNext('allocate', { errno: 'ENOMEM', afterBytes: 8192 });
    store.failNext('discard', { errno: 'EIO' });
    const err = thrown(InconsistentStateError, () => { store.allocate(0, MiB); });
    assert.equal(err.code, 'ERR_INCONSISTENT');
    assert.match(err.message, /could not be freed again \(0x0\+0x100000\)/);
    assert.throws(() => { store.discard(0, MiB); }, InconsistentStateError);
  });

  it('keeps the ledger when a discard fails', () => {
    const store = new SimulatedStore({ name: 'sim', size: 8 * MiB });
    store.allocate(0, MiB);
    store.failNext('discard', { errno: 'EINTR' });
    assert.throws(() => { store.discard(0, MiB); }, SystemCallError);
    assert.equal(store.ledger.backedBytes, MiB);
    store.discard(0, MiB);
    assert.equal(store.ledger.backedBytes, 0);
  });

  it('skips the kernel for an allocation of what is backed and a discard of what is not', () => {
    const store = new SimulatedStore({ name: 'sim', size: 8 * MiB });
    store.discard(0, MiB);
    assert.equal(store.kernelCalls, 0);
    store.allocate(0, MiB);
    store.allocate(4096, 8192);
    assert.equal(store.kernelCalls, 1);
  });

  it('hugetlb: an allocation beyond the pool fails with ENOSPC and leaves nothing behind', async (t) => {
    await withHugePages(t, 2 * MiB, 2, () => {
      const dir = '/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages';
      const free = (): number => Number(readFileSync(dir, 'utf8'));
      const before = free();
      const store = MemfdStore.create({ name: 'too-big', size: (before + 2) * 2 * MiB, pages: 'hugetlb-2m' });
      try {
        const err = thrown(SystemCallError, () => { store.allocate(0, store.size); });
        assert.equal(err.errnoName, 'ENOSPC');
        assert.match(err.message, /reserve huge pages/);
        assert.equal(store.ledger.backedBytes, 0);
        assert.equal(store.kernelBackedBytes(), 0, 'the pages the failed call got were freed again');
        assert.equal(free(), before);
      } finally {
        store.close();
      }
    });
  });

  it('guest_memfd without INIT_SHARED cannot be mapped for host access', (t) => {
    const kvm = openKvm(t);
    if (!kvm) return;
    using vm = kvm.createVm();
    using store = GuestMemfdStore.create(vm, { name: 'private', size: MiB, mmap: true });
    assert.equal(store.mappable, false);
    assert.throws(() => store.map(), UnsupportedOperationError);
    kvm.close();
  });

  it('refuses THP when shmem THP is off, with the setting to change', async (t) => {
    await withShmemThp(t, 'never', () => {
      const err = thrown(CapabilityError, () => MemfdStore.create({ name: 'thp', size: 4 * MiB, pages: 'thp' }));
      assert.match(err.message, /shmem_enabled is never; set it to within_size or always/);
    });
  });

  it('rejects sizes that are not a multiple of the page size', () => {
    assert.throws(() => MemfdStore.create({ name: 'x', size: 3 * MiB, pages: 'hugetlb-2m' }), /multiple of 0x200000/);
    assert.throws(() => new SimulatedStore({ name: 'x', size: 4096, pageSize: 8192 }), /must be 4 KiB, 2 MiB or 1 GiB/);
  });
});
