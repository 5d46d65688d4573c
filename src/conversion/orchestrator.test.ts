/**
 * The orchestrator on simulated memory: the order of the steps, validation
 * before any side effect, rollback from a failure at every step and every
 * position, commit failures kept pending, the stop policy, and concurrent
 * requests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cvmState, MappingListener, sharedRuns } from '../../test/support/cvm-state.js';
import { at, instance } from '../../test/support/narrow.js';
import { captureTrace } from '../../test/support/trace-capture.js';
import { ConversionError, InconsistentStateError, InvalidArgumentError } from '../core/errors.js';
import { MiB } from '../core/units.js';
import { SimulatedStore } from '../backing/simulated-store.js';
import { createSimulatedCvmMemory, type CvmMemory, type SimulatedCvmOptions } from './cvm.js';
import type { RamBlock } from './guest-memory.js';
import type { ConversionResult, VcpuPauser } from './orchestrator.js';
import { SimulatedPrivateMemory } from './private-memory.js';
import { apiRequest, KVM_E2BIG, KVM_EFAULT, KVM_EINVAL } from './request.js';

const A = 0x4000_0000;
const HOLE = 0x4080_0000;
const B = 0x4100_0000;
const C = 0x4180_0000;
const END = 0x41c0_0000;
const PAGE = 4096;

interface Sim {
  readonly cvm: CvmMemory;
  readonly kvm: SimulatedPrivateMemory;
  readonly a: RamBlock;
  readonly b: RamBlock;
  readonly c: RamBlock;
  readonly listeners: MappingListener[];
}

/**
 *   A 8 MiB | MMIO hole 8 MiB | B 8 MiB | C 4 MiB (adjacent to B) | unmapped
 * with a MappingListener on every block.
 */
async function sim(options: Partial<SimulatedCvmOptions> = {}): Promise<Sim> {
  const kvm = options.privateMemory ?? new SimulatedPrivateMemory();
  const cvm = createSimulatedCvmMemory({
    ram: [{ name: 'a', gpa: A, size: 8 * MiB }, { name: 'b', gpa: B, size: 8 * MiB }, { name: 'c', gpa: C, size: 4 * MiB }],
    holes: [{ name: 'mmio', gpa: HOLE, size: 8 * MiB }],
    ...options,
    privateMemory: kvm,
  });
  const listeners: MappingListener[] = [];
  for (const block of cvm.memory.blocks) {
    const listener = new MappingListener(`dma-${block.name}`, (offset) => !kvm.isPrivate(block, offset));
    await cvm.orchestrator.registerListener(block, listener);
    listeners.push(listener);
  }
  return { cvm, kvm, a: cvm.block('a'), b: cvm.block('b'), c: cvm.block('c'), listeners };
}

function check(s: Sim): void {
  s.cvm.memory.blocks.forEach((block, i) => { at(s.listeners, i).check(block); });
}

async function convert(s: Sim, gpa: number, size: number, to: 'private' | 'shared'): Promise<ConversionResult> {
  return s.cvm.orchestrator.convert(apiRequest(gpa, size, to));
}

async function refused(s: Sim, gpa: number, size: number, to: 'private' | 'shared'): Promise<ConversionError> {
  try {
    // Not through apiRequest, which refuses the malformed ones itself: the orchestrator's own checks are under test.
    await s.cvm.orchestrator.convert({ gpa, size, to, source: 'api', pageSize: PAGE });
  } catch (error) {
    assert.ok(error instanceof ConversionError, `expected ConversionError, got ${String(error)}`);
    return error;
  }
  assert.fail(`conversion of ${gpa.toString(16)}+${size.toString(16)} to ${to} was not refused`);
}

describe('conversion orchestrator (simulated)', () => {
  it('converts to shared and back, in the protocol order, freeing the side pages left', async () => {
    const s = await sim();
    const r = await convert(s, A + 0x10_0000, 0x4000, 'shared');
    assert.equal(r.changedBytes, 0x4000);
    assert.deepEqual(sharedRuns(s.a), [{ offset: 0x10_0000, size: 0x4000 }]);
    assert.equal(s.kvm.isPrivate(s.a, 0x10_0000), false);
    assert.equal(s.kvm.isPrivate(s.a, 0x10_4000), true);
    check(s);
    // The private side of those pages was punched; the shared side is exposed for the guest.
    assert.equal(s.a.private.ledger.isRequested(0x10_0000, 0x4000), false);
    assert.equal(s.a.shared.ledger.isRequested(0x10_0000, 0x4000), true);
    // The guest touches the shared pages; converting back frees them.
    instance(s.a.shared, SimulatedStore).fault(0x10_0000, 0x4000);
    assert.equal(instance(s.a.shared, SimulatedStore).kernelBackedBytes(), 0x4000);
    const back = await convert(s, A + 0x10_0000, 0x4000, 'private');
    assert.equal(back.changedBytes, 0x4000);
    assert.equal(back.doubleAllocatedBytes, 0);
    assert.equal(instance(s.a.shared, SimulatedStore).kernelBackedBytes(), 0);
    assert.deepEqual(sharedRuns(s.a), []);
    check(s);
    const m = s.cvm.orchestrator.metrics;
    assert.equal(m.conversions.shared['up-to-2m'], 1);
    assert.equal(m.conversions.private['up-to-2m'], 1);
    assert.equal(m.pagesConverted.shared, 4);
  });

  it('a request already in its target state changes nothing and calls nothing', async () => {
    const s = await sim();
    const before = s.kvm.calls;
    const r = await convert(s, A, 8 * MiB, 'private');
    assert.equal(r.changedBytes, 0);
    assert.equal(r.privateMemoryCalls, 0);
    assert.equal(s.kvm.calls, before);
    assert.equal(s.cvm.orchestrator.metrics.noChange, 1);
  });

  it('traces the conversion in QEMU formats', async () => {
    const s = await sim();
    const capture = captureTrace('*');
    try {
      await convert(s, A, 0x2000, 'shared');
      await refused(s, A + 1, 0x1000, 'shared');
    } finally {
      capture.dispose();
    }
    const expected = [
      /kvm_convert_memory start 0x40000000 size 0x2000 private_to_shared$/,
      /ram_block_attributes_state_change offset 0x0 size 0x2000 from 'discarded' to 'populated'$/,
      /backing_discard store 'a:private' offset 0x0 size 0x2000 stranded 0x0$/,
      /kvm_convert_memory start 0x40000001 size 0x1000 private_to_shared$/,
      /conversion_rejected gpa 0x40000001 size 0x1000 unaligned$/,
    ];
    const lines = capture.lines.filter((l) => /kvm_convert_memory|ram_block_attributes_state_change|backing_discard|conversion_rejected/.test(l));
    assert.equal(lines.length, expected.length, lines.join('\n'));
    expected.forEach((re, i) => { assert.match(lines[i] ?? '', re); });
  });

  describe('validation before any side effect', () => {
    const cases: [string, number, number, 'private' | 'shared', string, number][] = [
      ['an unaligned gpa', A + 0x800, 0x1000, 'shared', 'unaligned', -KVM_EINVAL],
      ['an unaligned size', A, 0x1800, 'shared', 'unaligned', -KVM_EINVAL],
      ['an empty range', A, 0, 'shared', 'zero-size', -KVM_EINVAL],
      ['a range below RAM', 0, 0x1000, 'shared', 'outside-ram', -KVM_EINVAL],
      ['a range past the last block', END, 0x1000, 'shared', 'outside-ram', -KVM_EINVAL],
      ['a range from the last block into nothing', END - 0x1000, 0x2000, 'shared', 'outside-ram', -KVM_EINVAL],
      ['an MMIO hole made private', HOLE, 0x1000, 'private', 'outside-ram', -KVM_EINVAL],
      ['a block and the hole after it, made private', A + 8 * MiB - 0x1000, 0x2000, 'private', 'outside-ram', -KVM_EINVAL],
      ['a range beyond the physical address space', 2 ** 52 - 0x1000, 0x2000, 'shared', 'outside-ram', -KVM_EINVAL],
    ];
    for (const [name, gpa, size, to, reason, status] of cases) {
      it(`refuses ${name}, changing nothing`, async () => {
        const s = await sim();
        await convert(s, A, 0x1000, 'shared');
        const before = cvmState(s.cvm);
        const calls = s.kvm.calls;
        const error = await refused(s, gpa, size, to);
        assert.equal(error.reason, reason);
        assert.equal(error.guestStatus, status);
        assert.deepEqual(cvmState(s.cvm), before);
        assert.equal(s.kvm.calls, calls);
        assert.equal(s.cvm.orchestrator.metrics.rejected[error.reason], 1);
        check(s);
      });
    }

    it('accepts an MMIO hole made shared, and does nothing there', async () => {
      const s = await sim();
      const r = await convert(s, HOLE, 8 * MiB, 'shared');
      assert.equal(r.changedBytes, 0);
      const across = await convert(s, A + 8 * MiB - 0x1000, 0x2000, 'shared');
      assert.equal(across.changedBytes, 0x1000);
      assert.deepEqual(sharedRuns(s.a), [{ offset: 8 * MiB - 0x1000, size: 0x1000 }]);
    });

    it('splits a range across adjacent blocks into one piece per block', async () => {
      const s = await sim();
      const r = await convert(s, C - 0x3000, 0x5000, 'shared');
      assert.equal(r.changedBytes, 0x5000);
      assert.deepEqual(sharedRuns(s.b), [{ offset: 8 * MiB - 0x3000, size: 0x3000 }]);
      assert.deepEqual(sharedRuns(s.c), [{ offset: 0, size: 0x2000 }]);
      check(s);
    });

    it('enforces the granularity policy', async () => {
      const s = await sim({ granularity: '2m' });
      const error = await refused(s, A, 0x1000, 'shared');
      assert.equal(error.reason, 'granularity');
      assert.equal((await convert(s, A + 2 * MiB, 2 * MiB, 'shared')).changedBytes, 2 * MiB);
      assert.equal((await refused(s, A + 0x1000, 2 * MiB, 'shared')).reason, 'granularity');
    });

    it('refuses a malformed request object with an argument error', async () => {
      const s = await sim();
      await assert.rejects(s.cvm.orchestrator.convert({ gpa: -1, size: 0x1000, to: 'shared', source: 'api', pageSize: PAGE }), InvalidArgumentError);
      await assert.rejects(s.cvm.orchestrator.convert({ gpa: A, size: 0x1000, to: 'neither' as 'shared', source: 'api', pageSize: PAGE }), InvalidArgumentError);
    });
  });

  describe('rollback', () => {
    type Fault = 'veto' | 'kvm' | 'preallocate';
    // A request over B and C (two pieces), with part of each already shared,
    // so each piece changes two runs.
    const setup = async (): Promise<Sim> => {
      const s = await sim({ preallocate: true });
      await convert(s, C - 0x8000, 0x2000, 'shared');
      await convert(s, C + 0x2000, 0x1000, 'shared');
      return s;
    };
    const inject = (s: Sim, fault: Fault, piece: number, nth: number, to: 'private' | 'shared'): void => {
      const block = piece === 0 ? s.b : s.c;
      if (fault === 'veto') {
        const listener = at(s.listeners, piece === 0 ? 1 : 2);
        let seen = 0;
        listener.refuse = () => seen++ === nth;
      } else if (fault === 'kvm') {
        // Calls of earlier pieces come first.
        s.kvm.failNext({ errno: 'ENOMEM', after: piece * 2 + nth });
      } else {
        // An allocation that fails halfway, as fallocate can.
        const store = instance(to === 'private' ? block.private : block.shared, SimulatedStore);
        store.failNext('allocate', { errno: 'ENOSPC', afterBytes: 0x1000 });
      }
    };
    for (const to of ['shared', 'private'] as const) {
      for (const fault of ['veto', 'kvm', 'preallocate'] as const) {
        if (fault === 'veto' && to === 'private') continue;
        for (const piece of [0, 1]) {
          for (const nth of [0, 1]) {
            if (fault === 'preallocate' && nth === 1) continue;
            it(`to ${to}: a ${fault} failure at piece ${piece}, call ${nth}, leaves everything as it was`, async () => {
              const s = await setup();
              if (to === 'private') await convert(s, C - 0x10000, 0x20000, 'shared');
              const range = to === 'shared' ? [C - 0x10000, 0x20000] as const : [C - 0x10000, 0x20000] as const;
              if (to === 'private') {
                // Make part of the range private again, so each piece changes two runs.
                await convert(s, C - 0x6000, 0x1000, 'private');
                await convert(s, C + 0x4000, 0x1000, 'private');
              }
              const before = cvmState(s.cvm);
              inject(s, fault, piece, nth, to);
              const error = await refused(s, range[0], range[1], to);
              assert.equal(error.reason, fault === 'veto' ? 'listener-veto' : 'kernel-error');
              assert.equal(error.guestStatus, -KVM_EFAULT);
              assert.deepEqual(cvmState(s.cvm), before);
              check(s);
              assert.equal(s.cvm.orchestrator.stopped, undefined);
              // Nothing is stuck: the same request succeeds now.
              const r = await convert(s, range[0], range[1], to);
              assert.ok(r.changedBytes > 0);
              check(s);
            });
          }
        }
      }
    }

    it('a listener that fails a discard is reported, and the conversion goes on', async () => {
      const s = await sim();
      await convert(s, A, 0x4000, 'shared');
      at(s.listeners, 0).failDiscard = () => true;
      const r = await convert(s, A, 0x4000, 'private');
      assert.equal(r.discardFailures.length, 1);
      assert.deepEqual(sharedRuns(s.a), []);
    });

    it('an undo that fails stops the VM with InconsistentStateError', async () => {
      const s = await sim();
      await convert(s, A, 0x4000, 'shared');
      // The tracker step vetoes, and KVM refuses to undo the change.
      const listener = at(s.listeners, 0);
      listener.refuse = () => true;
      s.kvm.failNext({ errno: 'EIO', after: 1 });
      const stops: string[] = [];
      s.cvm.orchestrator.onStop((e) => stops.push(e.error.name));
      await assert.rejects(convert(s, A + 0x10000, 0x1000, 'shared'), InconsistentStateError);
      assert.deepEqual(stops, ['InconsistentStateError']);
      const later = await refused(s, A + 0x20000, 0x1000, 'shared');
      assert.equal(later.reason, 'stopped');
    });
  });

  describe('commit', () => {
    it('retries a failing discard, then keeps it pending and refuses to convert over it', async () => {
      const s = await sim();
      await convert(s, A, 0x4000, 'shared');
      const shared = instance(s.a.shared, SimulatedStore);
      shared.fault(0, 0x4000);
      for (let i = 0; i < 3; i++) shared.failNext('discard', { errno: 'EIO' });
      const r = await convert(s, A, 0x4000, 'private');
      assert.equal(r.commitFailures.length, 1);
      assert.equal(s.cvm.orchestrator.pendingDiscards.length, 1);
      // The guest writes the pages, now private: they are held on both sides.
      instance(s.a.private, SimulatedStore).fault(0, 0x4000);
      const audit = await s.cvm.orchestrator.audit();
      assert.equal(audit.doubleAllocatedBytes, 0x4000);
      // The pending discard is retried before the next conversion of the block and succeeds.
      await convert(s, A + 0x10_0000, 0x1000, 'shared');
      assert.equal(s.cvm.orchestrator.pendingDiscards.length, 0);
      assert.equal((await s.cvm.orchestrator.audit()).doubleAllocatedBytes, 0);
      assert.equal(s.cvm.orchestrator.metrics.doubleAllocated.peak, 0x4000);
    });

    it('a conversion over a discard still pending is refused', async () => {
      const s = await sim();
      await convert(s, A, 0x4000, 'shared');
      const shared = instance(s.a.shared, SimulatedStore);
      shared.fault(0, 0x4000);
      for (let i = 0; i < 4; i++) shared.failNext('discard', { errno: 'EIO' });
      await convert(s, A, 0x4000, 'private');
      // The retry before the next request fails again.
      const error = await refused(s, A, 0x1000, 'shared');
      assert.equal(error.reason, 'kernel-error');
      assert.equal((await s.cvm.orchestrator.retryPendingDiscards()).length, 0);
      assert.equal((await convert(s, A, 0x1000, 'shared')).changedBytes, 0x1000);
    });
  });

  describe('policies', () => {
    it("'stop' stops the VM at the first error, as QEMU does", async () => {
      const s = await sim({ onError: 'stop' });
      await refused(s, A + 1, 0x1000, 'shared');
      assert.ok(s.cvm.orchestrator.stopped);
      assert.equal((await refused(s, A, 0x1000, 'shared')).reason, 'stopped');
    });

    it('a memslot-limit refusal from the mechanism has the E2BIG status', async () => {
      const kvm = new SimulatedPrivateMemory();
      const original = kvm.plan.bind(kvm);
      kvm.plan = (...args) => {
        if (args[2].length > 1) throw new ConversionError('memslot-limit', -KVM_E2BIG, 'too many runs');
        return original(...args);
      };
      const s = await sim({ privateMemory: kvm });
      await convert(s, A + 0x1000, 0x1000, 'shared');
      const before = cvmState(s.cvm);
      const error = await refused(s, A, 0x3000, 'shared');
      assert.equal(error.guestStatus, -KVM_E2BIG);
      assert.deepEqual(cvmState(s.cvm), before);
    });
  });

  describe('stopping', () => {
    /** A pauser whose pause() waits for `open()`, counting pauses in effect. */
    const gate = (): VcpuPauser & { open: () => void; depth: number } => {
      let resolvers: (() => void)[] = [];
      const g = {
        depth: 0,
        pause: () => {
          g.depth++;
          return new Promise<void>((resolve) => resolvers.push(resolve));
        },
        resume: () => {
          g.depth--;
        },
        open: () => {
          const r = resolvers;
          resolvers = [];
          for (const f of r) f();
        },
      };
      return g;
    };
    const pausing = (): SimulatedPrivateMemory => {
      const kvm = new SimulatedPrivateMemory();
      Object.defineProperty(kvm, 'needsPause', { value: true });
      return kvm;
    };

    it('a request waiting for its block when the VM stops is refused', async () => {
      const s = await sim({ onError: 'stop', privateMemory: pausing() });
      const pauser = gate();
      s.cvm.orchestrator.attachPauser(pauser);
      at(s.listeners, 0).refuse = () => true;
      const first = convert(s, A, 0x1000, 'shared');
      const second = convert(s, A + 0x10000, 0x1000, 'shared');
      await new Promise((resolve) => setImmediate(resolve));
      const before = cvmState(s.cvm);
      pauser.open();
      await assert.rejects(first, (e: unknown) => e instanceof ConversionError && e.reason === 'listener-veto');
      await assert.rejects(second, (e: unknown) => e instanceof ConversionError && e.reason === 'stopped');
      assert.deepEqual(cvmState(s.cvm), before);
      assert.equal(pauser.depth, 0);
    });

    it('a request waiting for the vCPUs when the VM stops is refused, and resumes them', async () => {
      const s = await sim({ privateMemory: pausing() });
      const pauser = gate();
      s.cvm.orchestrator.attachPauser(pauser);
      const before = cvmState(s.cvm);
      const pending = convert(s, A, 0x1000, 'shared');
      await new Promise((resolve) => setImmediate(resolve));
      // Detaching meanwhile does not change which pauser is resumed.
      s.cvm.orchestrator.detachPauser(pauser);
      s.cvm.orchestrator.stop(new Error('operator stop'));
      pauser.open();
      await assert.rejects(pending, (e: unknown) => e instanceof ConversionError && e.reason === 'stopped');
      assert.deepEqual(cvmState(s.cvm), before);
      assert.equal(pauser.depth, 0);
    });

    it('guest memory is not closed under a conversion in flight', async () => {
      const s = await sim({ privateMemory: pausing() });
      const pauser = gate();
      s.cvm.orchestrator.attachPauser(pauser);
      const pending = convert(s, A, 0x1000, 'shared');
      await new Promise((resolve) => setImmediate(resolve));
      assert.throws(() => { s.cvm.close(); }, InvalidArgumentError);
      pauser.open();
      await pending;
      s.cvm.close();
    });
  });

  describe('huge shared pages', () => {
    for (const policy of ['huge', 'transparent-huge'] as const) {
      it(`a rolled-back preallocation frees the whole ${policy} page it backed`, async () => {
        const s = await sim({ preallocate: true, ram: [{ name: 'a', gpa: A, size: 8 * MiB, sharedPageSize: 2 * MiB, sharedPolicy: policy }, { name: 'b', gpa: B, size: 8 * MiB }, { name: 'c', gpa: C, size: 4 * MiB }] });
        const before = cvmState(s.cvm);
        at(s.listeners, 0).refuse = () => true;
        await refused(s, A + 0x3000, 0x1000, 'shared');
        assert.deepEqual(cvmState(s.cvm), before);
        at(s.listeners, 0).refuse = () => false;
        await convert(s, A + 0x3000, 0x1000, 'shared');
        assert.equal(instance(s.a.shared, SimulatedStore).kernelBackedBytes(), 2 * MiB);
      });
    }
  });

  describe('concurrency', () => {
    it('requests from many callers at once end as a serial replay of them in sequence order', async () => {
      // A pauser that takes a while, so that conversions interleave at every await.
      let depth = 0;
      const pauser: VcpuPauser = {
        pause: () => {
          depth++;
          return new Promise((resolve) => setTimeout(resolve, Math.random() * 2));
        },
        resume: () => {
          depth--;
        },
      };
      const kvm = new SimulatedPrivateMemory();
      Object.defineProperty(kvm, 'needsPause', { value: true });
      const s = await sim({ privateMemory: kvm });
      s.cvm.orchestrator.attachPauser(pauser);
      let seed = 7;
      const rand = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      const requests = Array.from({ length: 400 }, () => {
        const gpa = at([A, B, C - 0x4000], rand(3)) + rand(64) * PAGE;
        return apiRequest(gpa, (1 + rand(8)) * PAGE, rand(2) === 0 ? 'shared' : 'private');
      });
      const results = await Promise.all(requests.map((r) => s.cvm.orchestrator.convert(r)));
      assert.equal(depth, 0);
      const replay = await sim();
      for (const r of [...results].sort((x, y) => x.sequence - y.sequence)) await replay.cvm.orchestrator.convert(r.request);
      s.cvm.memory.blocks.forEach((block, i) => { assert.deepEqual(sharedRuns(block), sharedRuns(at(replay.cvm.memory.blocks, i))); });
      check(s);
    });

    it('registers a listener between conversions, never inside one', async () => {
      let release!: () => void;
      const pauser: VcpuPauser = { pause: () => new Promise((resolve) => { release = resolve; }), resume: () => undefined };
      const kvm = new SimulatedPrivateMemory();
      Object.defineProperty(kvm, 'needsPause', { value: true });
      const s = await sim({ privateMemory: kvm });
      s.cvm.orchestrator.attachPauser(pauser);
      const converting = convert(s, A, 0x2000, 'shared');
      await new Promise((resolve) => setImmediate(resolve));
      const late = new MappingListener('late');
      const registering = s.cvm.orchestrator.registerListener(s.a, late);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(late.mapped.size, 0, 'registered while the conversion held the block');
      release();
      await converting;
      await registering;
      late.check(s.a);
    });
  });
});
