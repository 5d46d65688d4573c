/**
 * The conversion path on the real kernel: private memory as memslots over a
 * guest_memfd (MMAP, no INIT_SHARED) and shared memory in a memfd, a guest
 * running natively that asks for conversions through the doorbell, and
 * several vCPUs converting at once.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { cvmState, kvmPrivateRuns, MappingListener, sharedRuns } from '../support/cvm-state.js';
import { openKvm, withHugePages } from '../support/host.js';
import { at, instance } from '../support/narrow.js';
import { ConversionError, InconsistentStateError, SystemCallError } from '../../src/core/errors.js';
import type { ByteRange } from '../../src/core/range.js';
import { GiB, MiB } from '../../src/core/units.js';
import { MemfdStore } from '../../src/backing/memfd-store.js';
import type { Memslot } from '../../src/kvm/memslot-rules.js';
import { Vm, type MemslotSpec } from '../../src/kvm/vm.js';
import { createCvmMemory, createSimulatedCvmMemory, type CvmMemory, type RealCvmOptions } from '../../src/conversion/cvm.js';
import { DOORBELL } from '../../src/conversion/doorbell.js';
import type { GuestRequestRecord } from '../../src/conversion/guest-requests.js';
import type { MemslotTable } from '../../src/conversion/memslot-private-memory.js';
import { ConversionOrchestrator } from '../../src/conversion/orchestrator.js';
import { AttributesPrivateMemory } from '../../src/conversion/private-memory.js';
import { apiRequest, decodeMapGpaRange, KVM_EINVAL, type MapGpaRangeArgs } from '../../src/conversion/request.js';
import { GuestScript } from '../../src/guest/convert-guest.js';
import { bootConvertGuest, CONVERSION_DOORBELL, convertGuestRequests } from '../../src/guest/boot.js';

const RAM = GiB;
const RAM_SIZE = 16 * MiB;
const HIGH = 2 * GiB;
const HIGH_SIZE = 8 * MiB;
const PCI = { name: 'pci', gpa: 3 * GiB, size: GiB };
const PAGE = 4096;

/** A VM with the two blocks and the PCI hole, or undefined (the test skipped) without KVM. */
function vmFor(t: TestContext): Vm | undefined {
  const k = openKvm(t);
  if (!k) return undefined;
  k.close();
  return Vm.create();
}

function cvmOn(vm: Vm, options: Partial<RealCvmOptions> = {}): CvmMemory {
  return createCvmMemory(vm, {
    ram: [{ name: 'ram', gpa: RAM, size: RAM_SIZE }, { name: 'high', gpa: HIGH, size: HIGH_SIZE }],
    holes: [PCI],
    ...options,
  });
}

/** The slots the VM holds for a block, as (start, end, private) within the block. */
function slotsOf(vm: Vm, base: number, size: number): string[] {
  return [...vm.memslots.values()]
    .filter((s) => Number(s.gpa) >= base && Number(s.gpa) < base + size)
    .sort((a, b) => Number(a.gpa - b.gpa))
    .map((s) => `${(Number(s.gpa) - base).toString(16)}+${s.size.toString(16)} ${s.guestMemfd ? 'private' : 'shared'}`);
}

/** The VM's memslots, by slot id. */
function slotList(vm: Vm): Memslot[] {
  return [...vm.memslots.values()].sort((a, b) => a.slot - b.slot);
}

/** Runs the converting guest's scripts to their end on `cvm`; returns the records of its requests. */
async function runGuest(vm: Vm, cvm: CvmMemory, scripts: GuestScript[], onRequest?: (r: GuestRequestRecord) => void): Promise<{ results: bigint[][]; records: GuestRequestRecord[]; pauses: number; kicks: number }> {
  const guest = await bootConvertGuest(vm, { scripts });
  const records: GuestRequestRecord[] = [];
  try {
    const { runner, done } = cvm.run(guest.vcpus, convertGuestRequests((r) => {
      records.push(r);
      onRequest?.(r);
    }));
    const outcomes = await done;
    for (const o of outcomes) assert.equal(o.reason, 'done', `vCPU ${o.vcpu}: ${o.reason}`);
    return { results: scripts.map((_, i) => guest.results(i)), records, pauses: runner.pauses, kicks: runner.kicks };
  } finally {
    await guest.close();
  }
}

describe('conversions on KVM, private memory as memslots', () => {
  it('lays each block out as its runs, coalescing neighbours, with the fewest ioctls', async (t) => {
    const vm = vmFor(t);
    if (!vm) return;
    const cvm = cvmOn(vm);
    try {
      assert.deepEqual(slotsOf(vm, RAM, RAM_SIZE), ['0+1000000 private']);
      const mid = await cvm.orchestrator.convert(apiRequest(RAM + 0x10000, PAGE, 'shared'));
      assert.equal(mid.privateMemoryCalls, 4, 'split: delete one, create three');
      assert.deepEqual(slotsOf(vm, RAM, RAM_SIZE), ['0+10000 private', '10000+1000 shared', '11000+fef000 private']);
      const grow = await cvm.orchestrator.convert(apiRequest(RAM + 0x11000, PAGE, 'shared'));
      assert.equal(grow.privateMemoryCalls, 4, 'grow the shared run: delete two, create two');
      assert.deepEqual(slotsOf(vm, RAM, RAM_SIZE), ['0+10000 private', '10000+2000 shared', '12000+fee000 private']);
      const edge = await cvm.orchestrator.convert(apiRequest(RAM, PAGE, 'shared'));
      assert.equal(edge.privateMemoryCalls, 3);
      assert.deepEqual(slotsOf(vm, RAM, RAM_SIZE), ['0+1000 shared', '1000+f000 private', '10000+2000 shared', '12000+fee000 private']);
      // One request over both shared runs and the private run between them: everything merges.
      const merge = await cvm.orchestrator.convert(apiRequest(RAM, 0x12000, 'shared'));
      assert.deepEqual(slotsOf(vm, RAM, RAM_SIZE), ['0+12000 shared', '12000+fee000 private']);
      assert.equal(merge.privateMemoryCalls, 4);
      await cvm.orchestrator.convert(apiRequest(RAM, RAM_SIZE, 'private'));
      assert.deepEqual(slotsOf(vm, RAM, RAM_SIZE), ['0+1000000 private']);
      assert.equal(cvm.privateMemory.memslotsInUse, 2);
    } finally {
      cvm.close();
      await vm.close();
    }
  });

  it('cuts slots at cell boundaries, so a conversion re-lays only the cells it touches', async (t) => {
    const vm = vmFor(t);
    if (!vm) return;
    const cvm = cvmOn(vm, { maxSlotBytes: MiB });
    try {
      assert.equal(slotsOf(vm, RAM, RAM_SIZE).length, 16);
      const across = await cvm.orchestrator.convert(apiRequest(RAM + MiB - PAGE, 2 * PAGE, 'shared'));
      assert.equal(across.privateMemoryCalls, 6, 'two cells: delete two, create four');
      assert.deepEqual(slotsOf(vm, RAM, RAM_SIZE).slice(0, 5), ['0+ff000 private', 'ff000+1000 shared', '100000+1000 shared', '101000+ff000 private', '200000+100000 private']);
      const back = await cvm.orchestrator.convert(apiRequest(RAM, RAM_SIZE, 'private'));
      assert.equal(back.privateMemoryCalls, 6);
      assert.equal(slotsOf(vm, RAM, RAM_SIZE).length, 16);
      assert.throws(() => cvmOn(vm, { maxSlotBytes: 3 * PAGE }), /power of two/);
    } finally {
      cvm.close();
      await vm.close();
    }
  });

  it('refuses a conversion that needs more memslots than allowed, changing nothing', async (t) => {
    const vm = vmFor(t);
    if (!vm) return;
    const cvm = cvmOn(vm, { slotLimit: 5 });
    try {
      await cvm.orchestrator.convert(apiRequest(RAM + 0x10000, PAGE, 'shared'));
      assert.equal(vm.memslots.size, 4);
      const before = slotList(vm);
      const state = cvmState(cvm);
      await assert.rejects(cvm.orchestrator.convert(apiRequest(RAM + 0x20000, PAGE, 'shared')), (e: unknown) => e instanceof ConversionError && e.reason === 'memslot-limit' && e.guestStatus === -7);
      assert.deepEqual(slotList(vm), before);
      assert.deepEqual(cvmState(cvm), state);
      // Growing the existing shared run needs no more slots and is allowed.
      await cvm.orchestrator.convert(apiRequest(RAM + 0x11000, PAGE, 'shared'));
    } finally {
      cvm.close();
      await vm.close();
    }
  });

  it('undoes a conversion that fails at any memslot ioctl, through the kernel', async (t) => {
    const vm = vmFor(t);
    if (!vm) return;
    /** Forwards to the VM, failing the call numbered `failAt` (and every call from `failFrom` on). */
    let calls = 0;
    let failAt = -1;
    let failFrom = Infinity;
    const fail = (): void => {
      const n = calls++;
      if (n === failAt || n >= failFrom) throw new SystemCallError({ call: 'KVM_SET_USER_MEMORY_REGION2', errno: 12, errnoName: 'ENOMEM', description: 'injected', target: 'test' });
    };
    const table: MemslotTable = {
      get maxMemslots() { return vm.maxMemslots; },
      get memslots() { return vm.memslots; },
      setMemslot: (spec: MemslotSpec) => {
        fail();
        return vm.setMemslot(spec);
      },
      deleteMemslot: (slot: number) => {
        fail();
        vm.deleteMemslot(slot);
      },
    };
    const cvm = cvmOn(vm, { memslots: table });
    try {
      const listener = new MappingListener('dma');
      await cvm.orchestrator.registerListener(cvm.block('ram'), listener);
      await cvm.orchestrator.convert(apiRequest(RAM + 0x10000, 0x3000, 'shared'));
      // Each conversion below takes four ioctls; fail each in turn.
      for (const [gpa, to] of [[RAM + 0x20000, 'shared'], [RAM + 0x11000, 'private']] as const) {
        for (let k = 0; k < 4; k++) {
          const slots = slotList(vm);
          const state = cvmState(cvm);
          calls = 0;
          failAt = k;
          await assert.rejects(cvm.orchestrator.convert(apiRequest(gpa, PAGE, to)), (e: unknown) => e instanceof ConversionError && e.reason === 'kernel-error', `${to} at ioctl ${k}`);
          failAt = -1;
          assert.deepEqual(slotList(vm), slots, `${to} at ioctl ${k}: memslots`);
          assert.deepEqual(cvmState(cvm), state, `${to} at ioctl ${k}: state`);
          listener.check(cvm.block('ram'));
        }
      }
      // A failure whose undo fails too stops the VM.
      calls = 0;
      failFrom = 2;
      await assert.rejects(cvm.orchestrator.convert(apiRequest(RAM + 0x20000, PAGE, 'shared')), InconsistentStateError);
      assert.ok(cvm.orchestrator.stopped);
    } finally {
      failFrom = Infinity;
      // After a failed undo the memslots are not what the layout says: closing reports that.
      try {
        cvm.close();
      } catch (error) {
        assert.ok(error instanceof Error);
      }
      await vm.close();
    }
  });

  it('rolls back when KVM refuses memory attributes (not compiled into this kernel)', async (t) => {
    const vm = vmFor(t);
    if (!vm) return;
    // The attributes mechanism on this VM: taking the blocks is skipped, so that the
    // first attribute ioctl the kernel sees is a conversion's.
    const mechanism = new AttributesPrivateMemory({ setMemoryAttributes: (a, s, attr) => { vm.fd.setMemoryAttributes(a, s, attr); } });
    mechanism.addBlock = () => undefined;
    const sim = createSimulatedCvmMemory({ ram: [{ name: 'ram', gpa: RAM, size: RAM_SIZE }] });
    const orchestrator = new ConversionOrchestrator({ memory: sim.memory, privateMemory: mechanism });
    try {
      const state = cvmState(sim);
      await assert.rejects(orchestrator.convert(apiRequest(RAM, PAGE, 'shared')), (e: unknown) => {
        assert.ok(e instanceof ConversionError && e.reason === 'kernel-error');
        const cause = e.cause;
        return cause instanceof SystemCallError && (cause.errnoName === 'ENOTTY' || cause.errnoName === 'EINVAL');
      });
      assert.deepEqual(cvmState(sim), state);
    } finally {
      sim.close();
      await vm.close();
    }
  });

  it('a guest converting through the doorbell sees its data, and the host never sees private data', async (t) => {
    const vm = vmFor(t);
    if (!vm) return;
    const cvm = cvmOn(vm);
    const block = cvm.block('ram');
    const shared = instance(block.shared, MemfdStore);
    const hostView = shared.map();
    const P = RAM + 0x10000;
    const offset = P - RAM;
    const HUGE = RAM + 2 * MiB;
    const SECRET = 0x5ec2e75ec2e7n;
    const s = new GuestScript();
    s.write64(P, SECRET);
    s.read64(P);
    const toShared = s.request(P, PAGE, 'shared');
    s.read64(P);
    s.write64(P, 0x5151n);
    const sync = s.request(PCI.gpa, PAGE, 'shared');
    const toPrivate = s.request(P, PAGE, 'private');
    s.read64(P);
    s.request(HUGE, 2 * MiB, 'shared', 2 * MiB);
    s.fill64(HUGE, 2 * MiB, 3n);
    s.sum64(HUGE, 2 * MiB);
    s.request(HUGE, 2 * MiB, 'private', 2 * MiB);
    s.sum64(HUGE, 2 * MiB);
    const checks: string[] = [];
    const u64At = (o: number): bigint => new DataView(hostView.bytes.buffer, hostView.bytes.byteOffset + o, 8).getBigUint64(0, true);
    const gmemResident = (): number => block.private.residentPages(offset, PAGE)?.[0] ?? -1;
    let step = 0;
    try {
      const { results, records } = await runGuest(vm, cvm, [s], () => {
        const at = step++;
        if (at === 0) checks.push(`after to-shared: host reads ${u64At(offset)}, gmem resident ${gmemResident()}`);
        if (at === 1) checks.push(`before to-private: host reads ${u64At(offset).toString(16)}`);
        // Not read: a host read of a hole in shmem allocates a page, which would then be held twice.
        if (at === 2) checks.push(`after to-private: memfd holds ${shared.kernelBackedBytes()}, resident ${shared.residentPages(offset, PAGE)?.[0] ?? -1}`);
      });
      assert.deepEqual(checks, [
        'after to-shared: host reads 0, gmem resident 0',
        'before to-private: host reads 5151',
        'after to-private: memfd holds 0, resident 0',
      ]);
      const r = at(results, 0);
      assert.equal(r[1], SECRET, 'the guest reads its private data');
      assert.equal(r[toShared], 0n);
      assert.equal(r[toShared + 1], 0n, 'a page made shared starts zeroed');
      assert.equal(r[sync], 0n, 'a hole made shared is accepted');
      assert.equal(r[toPrivate], 0n);
      assert.equal(r[toPrivate + 1], 0n, 'a page made private starts zeroed');
      assert.deepEqual(r.slice(toPrivate + 2), [0n, 262144n, 3n * 262144n, 0n, 0n], '2 MiB shared, filled, summed, private, summed');
      for (const rec of records) assert.equal(rec.status, 0);
      assert.deepEqual(records.map((rec) => ('result' in rec ? rec.result.doubleAllocatedBytes : -1)), [0, 0, 0, 0, 0]);
      assert.equal((await cvm.orchestrator.audit()).doubleAllocatedBytes, 0);
      // The secret is nowhere in the shared memory (scanning only what is resident: reading a hole would allocate it).
      const resident = shared.residentPages(0, RAM_SIZE) ?? new Uint8Array();
      resident.forEach((r, page) => {
        if (r) assert.ok(!hostView.bytes.subarray(page * PAGE, (page + 1) * PAGE).includes(0xe7), `page ${page}`);
      });
    } finally {
      cvm.close();
      await vm.close();
    }
  });

  it('four vCPUs converting overlapping ranges at once end as a serial replay', async (t) => {
    const vm = vmFor(t);
    if (!vm) return;
    const cvm = cvmOn(vm);
    const listeners = [new MappingListener('dma-ram'), new MappingListener('dma-high')];
    await cvm.orchestrator.registerListener(cvm.block('ram'), at(listeners, 0));
    await cvm.orchestrator.registerListener(cvm.block('high'), at(listeners, 1));
    let seed = 99;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const VCPUS = 4;
    const scripts = Array.from({ length: VCPUS }, (_, v) => {
      const s = new GuestScript();
      // Each vCPU's own page, for its data; the rest is contended.
      const own = RAM + RAM_SIZE - (v + 1) * PAGE;
      for (let i = 0; i < 120; i++) {
        const kind = rand(10);
        if (kind < 6) {
          const base = rand(2) === 0 ? RAM + rand(64) * PAGE : HIGH - 8 * PAGE + rand(16) * PAGE;
          s.request(base, (1 + rand(4)) * PAGE, rand(2) === 0 ? 'shared' : 'private');
        } else if (kind < 8) {
          s.request(HIGH + rand(4) * 2 * MiB, 2 * MiB, rand(2) === 0 ? 'shared' : 'private', 2 * MiB);
        } else {
          s.request(own, PAGE, 'shared');
          s.write64(own, BigInt(v * 1000 + i));
          s.read64(own);
          s.request(own, PAGE, 'private');
          s.read64(own);
        }
      }
      return s;
    });
    try {
      const { results, records, pauses, kicks } = await runGuest(vm, cvm, scripts);
      assert.ok(pauses > 0 && kicks > 0, `the vCPUs were paused (${pauses}) and kicked (${kicks}) while others ran`);
      // Every vCPU's statuses are what the host answered, in its order.
      for (let v = 0; v < VCPUS; v++) {
        const mine = records.filter((r) => r.vcpu === v).map((r) => BigInt(r.status));
        const script = at(scripts, v);
        const steps = at(results, v).filter((_, i) => isConvert(script, i));
        assert.deepEqual(steps, mine, `vCPU ${v}: statuses`);
      }
      // Each vCPU read back its own data while it was shared, and zero once private again.
      for (let v = 0; v < VCPUS; v++) {
        const r = at(results, v);
        const script = at(scripts, v);
        for (let i = 0; i < r.length; i++) {
          if (stepOp(script, i) === 2n) {
            assert.equal(r[i + 1], r[i], `vCPU ${v} step ${i + 1}: read back`);
            assert.equal(r[i + 3], 0n, `vCPU ${v} step ${i + 3}: zero after to-private`);
          }
        }
      }
      // The final state is the serial replay of the accepted requests, in the order they took effect.
      const replay = createSimulatedCvmMemory({ ram: [{ name: 'ram', gpa: RAM, size: RAM_SIZE }, { name: 'high', gpa: HIGH, size: HIGH_SIZE }], holes: [PCI] });
      const accepted = records.flatMap((r) => ('result' in r ? [r.result] : [])).sort((a, b) => a.sequence - b.sequence);
      for (const r of accepted) await replay.orchestrator.convert(r.request);
      for (const name of ['ram', 'high']) {
        const block = cvm.block(name);
        assert.deepEqual(sharedRuns(block), sharedRuns(replay.block(name)), `${name}: tracker`);
        assert.deepEqual(kvmPrivateRuns(cvm, block), complement(sharedRuns(block), block.size), `${name}: memslots`);
      }
      at(listeners, 0).check(cvm.block('ram'));
      at(listeners, 1).check(cvm.block('high'));
      assert.equal((await cvm.orchestrator.audit()).doubleAllocatedBytes, 0);
    } finally {
      cvm.close();
      await vm.close();
    }
  });

  it('a hostile guest: every request refused or applied exactly, the guest running on', async (t) => {
    const vm = vmFor(t);
    if (!vm) return;
    const cvm = cvmOn(vm);
    const U64 = (1n << 64n) - 1n;
    const P = BigInt(RAM + 0x40000);
    const s = new GuestScript();
    const converts: MapGpaRangeArgs[] = [];
    const convert = (gpa: bigint, npages: bigint, attributes: bigint): void => {
      s.convert(gpa, npages, attributes);
      converts.push({ gpa, npages, attributes });
    };
    convert(U64 - 4095n, 2n, 0n);
    convert(U64 - 4095n, 1n, 0x10n);
    convert(P, 0n, 0n);
    convert(P + 1n, 1n, 0n);
    convert(P, 1n << 52n, 0n);
    convert(P, U64, 0x10n);
    for (let bit = 0n; bit < 64n; bit++) convert(P, 1n, 1n << bit);
    convert(BigInt(PCI.gpa), 16n, 0x10n);
    convert(BigInt(PCI.gpa), 16n, 0n);
    convert(BigInt(RAM + RAM_SIZE - PAGE), 2n, 0n);
    convert(BigInt(HIGH + HIGH_SIZE - PAGE), 1n, 0n);
    convert(BigInt(HIGH + HIGH_SIZE), 1n, 0n);
    convert(BigInt(RAM - PAGE), 2n, 0n);
    convert(BigInt(RAM + 0x1000), 512n, 1n);
    convert(BigInt(RAM + 2 * MiB), 512n, 1n);
    convert(BigInt(RAM + 2 * MiB), 512n, 0x11n);
    // Doorbell traffic in odd orders and widths.
    const db = CONVERSION_DOORBELL;
    s.write64(db + BigInt(DOORBELL.gpa), P);
    s.write64(db + BigInt(DOORBELL.npages), 3n);
    s.write64(db + BigInt(DOORBELL.attributes), 0n);
    s.write32(db + BigInt(DOORBELL.gpa), 0x1234);
    s.write8(db + BigInt(DOORBELL.npages), 7);
    s.write64(db + BigInt(DOORBELL.status), 0n);
    s.write64(db + BigInt(DOORBELL.command), 2n);
    const badStatus = s.read64(db + BigInt(DOORBELL.status));
    s.write64(db + BigInt(DOORBELL.command), 1n);
    const goodStatus = s.read64(db + BigInt(DOORBELL.status));
    s.write8(db + BigInt(DOORBELL.command), 1);
    const afterOdd = s.read64(db + BigInt(DOORBELL.status));
    s.read64(db + 0x800n);
    try {
      const { results } = await runGuest(vm, cvm, [s]);
      const r = at(results, 0);
      // The same requests made directly on simulated memory of the same shape.
      const reference = createSimulatedCvmMemory({ ram: [{ name: 'ram', gpa: RAM, size: RAM_SIZE }, { name: 'high', gpa: HIGH, size: HIGH_SIZE }], holes: [PCI] });
      const expected: bigint[] = [];
      for (const args of [...converts, { gpa: P, npages: 3n, attributes: 0n }]) {
        try {
          await reference.orchestrator.convert(decodeMapGpaRange(args, 'doorbell'));
          expected.push(0n);
        } catch (error) {
          assert.ok(error instanceof ConversionError);
          expected.push(BigInt(error.guestStatus));
        }
      }
      assert.deepEqual(r.slice(0, converts.length), expected.slice(0, converts.length));
      assert.equal(expected.slice(0, converts.length).filter((x) => x === 0n).length, 5, 'the valid requests among the hostile ones');
      assert.equal(r[badStatus], BigInt(-KVM_EINVAL));
      assert.equal(r[goodStatus], expected[converts.length]);
      assert.equal(r[afterOdd], BigInt(-KVM_EINVAL));
      for (const name of ['ram', 'high']) assert.deepEqual(sharedRuns(cvm.block(name)), sharedRuns(reference.block(name)), name);
      assert.equal(cvm.orchestrator.stopped, undefined);
    } finally {
      cvm.close();
      await vm.close();
    }
  });
  it('with hugetlb shared memory, a partly shared huge page is stranded until all of it is private again', async (t) => {
    await withHugePages(t, 2 * MiB, 2, async () => {
      const vm = vmFor(t);
      if (!vm) return;
      const cvm = createCvmMemory(vm, { ram: [{ name: 'ram', gpa: RAM, size: 4 * MiB, sharedPages: 'hugetlb-2m' }] });
      const block = cvm.block('ram');
      const shared = instance(block.shared, MemfdStore);
      const s = new GuestScript();
      s.request(RAM, 2 * PAGE, 'shared');
      s.write64(RAM, 1n);
      s.write64(RAM + PAGE, 2n);
      s.request(RAM, PAGE, 'private');
      s.request(RAM + PAGE, PAGE, 'private');
      const seen: string[] = [];
      try {
        await runGuest(vm, cvm, [s], () => {
          seen.push(`memfd ${shared.kernelBackedBytes() / MiB} MiB, stranded ${shared.ledger.strandedBytes / PAGE} pages`);
        });
        // Two pages shared: the whole huge page is taken for them (510 pages held for nothing);
        // one back to private: 511; both: the huge page is freed.
        assert.deepEqual(seen, [
          'memfd 0 MiB, stranded 510 pages',
          'memfd 2 MiB, stranded 511 pages',
          'memfd 0 MiB, stranded 0 pages',
        ]);
        const snapshot = await cvm.orchestrator.snapshot();
        assert.equal(snapshot.stores.find((x) => x.store === 'ram:shared')?.strandedBytes, 0);
      } finally {
        cvm.close();
        await vm.close();
      }
    });
  });

  it("with the 'stop' policy a failed request stops every vCPU, as QEMU does", async (t) => {
    const vm = vmFor(t);
    if (!vm) return;
    const cvm = cvmOn(vm, { onError: 'stop' });
    const bad = new GuestScript();
    bad.request(RAM, PAGE, 'shared');
    bad.convert(RAM + 1, 1, 0);
    bad.request(RAM + PAGE, PAGE, 'shared');
    const busy = new GuestScript();
    for (let i = 0; i < 1000; i++) busy.sum64(RAM + RAM_SIZE - PAGE, PAGE);
    const guest = await bootConvertGuest(vm, { scripts: [bad, busy] });
    try {
      const { done } = cvm.run(guest.vcpus, convertGuestRequests());
      const outcomes = await done;
      assert.match(outcomes[0]?.reason ?? '', /^stopped: conversion unaligned/);
      assert.ok(cvm.orchestrator.stopped);
      assert.deepEqual(sharedRuns(cvm.block('ram')), [{ offset: 0, size: PAGE }], 'nothing after the error ran');
    } finally {
      await guest.close();
      cvm.close();
      await vm.close();
    }
  });
});

function stepOp(script: GuestScript, i: number): bigint {
  return new DataView(script.encode().buffer).getBigUint64(i * 32, true);
}

function isConvert(script: GuestScript, i: number): boolean {
  return stepOp(script, i) === 1n;
}

function complement(runs: readonly ByteRange[], size: number): ByteRange[] {
  const out: ByteRange[] = [];
  let p = 0;
  for (const r of runs) {
    if (r.offset > p) out.push({ offset: p, size: r.offset - p });
    p = r.offset + r.size;
  }
  if (p < size) out.push({ offset: p, size: size - p });
  return out;
}
