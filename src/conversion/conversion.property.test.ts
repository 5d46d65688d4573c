/**
 * Random request streams through the orchestrator on simulated memory,
 * against a naive model (one state per 4 KiB page, and which pages the
 * guest touched since they changed state), with failures injected at random
 * steps. After every step:
 *
 * - the tracker, KVM's view and every listener's mappings equal the model
 *   (a failed request changed nothing);
 * - no page is backed on both sides;
 * - a shared page is backed only on the shared side, and there exactly when
 *   the guest touched it since it became shared;
 * - a private page is backed only on the private side, exactly when touched;
 *   its data is never reachable through the shared mapping, and a page the
 *   guest has not written since it became private reads zero.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { kvmPrivateRuns, MappingListener, pageRuns, sharedRuns } from '../../test/support/cvm-state.js';
import { at, defined, instance } from '../../test/support/narrow.js';
import { propertyParameters } from '../../test/support/property.js';
import { ConversionError } from '../core/errors.js';
import type { ByteRange } from '../core/range.js';
import { SimulatedStore } from '../backing/simulated-store.js';
import { createSimulatedCvmMemory } from './cvm.js';
import type { RamBlock } from './guest-memory.js';
import { SimulatedPrivateMemory } from './private-memory.js';

const PAGE = 4096;
const RAM = 0x4000_0000;
//   a: 256 KiB | hole 64 KiB | b: 128 KiB | c: 128 KiB (adjacent) | unmapped
const K = 1024;
const LAYOUT = [
  { name: 'a', gpa: RAM, size: 256 * K },
  { name: 'b', gpa: RAM + 320 * K, size: 128 * K },
  { name: 'c', gpa: RAM + 448 * K, size: 128 * K },
];
const HOLE = { name: 'mmio', gpa: RAM + 256 * K, size: 64 * K };
const SPAN = 640 * K;

type Fault = 'none' | 'veto' | 'kvm' | 'allocate' | 'commit-discard';

type Command =
  | { readonly t: 'convert'; readonly page: number; readonly pages: number; readonly to: 'private' | 'shared'; readonly fault: Fault; readonly at: number }
  | { readonly t: 'touch'; readonly page: number; readonly value: number };

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({
    t: fc.constant('convert' as const),
    page: fc.integer({ min: -4, max: SPAN / PAGE }),
    pages: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 100 })),
    to: fc.constantFrom('private' as const, 'shared' as const),
    fault: fc.constantFrom<Fault>('none', 'none', 'veto', 'kvm', 'allocate', 'commit-discard'),
    at: fc.integer({ min: 0, max: 3 }),
  }),
  fc.record({ t: fc.constant('touch' as const), page: fc.integer({ min: 0, max: SPAN / PAGE - 1 }), value: fc.integer({ min: 1, max: 255 }) }),
);

interface PageModel {
  shared: boolean;
  /** Backed on its side: the guest touched it, or the conversion preallocated it. */
  backed: boolean;
  /** The guest wrote it since it last changed state. */
  written: boolean;
}

describe('conversions against a naive model', () => {
  for (const preallocate of [false, true]) {
    it(`keeps every invariant under random requests and failures${preallocate ? ' (preallocating)' : ''}`, async () => {
      await fc.assert(fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 60 }), async (commands) => {
        const kvm = new SimulatedPrivateMemory();
        const cvm = createSimulatedCvmMemory({ ram: LAYOUT, holes: [HOLE], privateMemory: kvm, preallocate });
        const listeners = new Map<RamBlock, MappingListener>();
        for (const block of cvm.memory.blocks) {
          const listener = new MappingListener(`dma-${block.name}`, (offset) => !kvm.isPrivate(block, offset));
          await cvm.orchestrator.registerListener(block, listener);
          listeners.set(block, listener);
        }
        const model = new Map<RamBlock, PageModel[]>(cvm.memory.blocks.map((b) => [b, Array.from({ length: b.size / PAGE }, () => ({ shared: false, backed: false, written: false }))]));
        const locate = (gpa: number): { block: RamBlock; page: number } | undefined => {
          const block = cvm.memory.blockAt(gpa);
          return block ? { block, page: (gpa - block.gpa) / PAGE } : undefined;
        };

        for (const c of commands) {
          if (c.t === 'touch') {
            const where = locate(RAM + c.page * PAGE);
            if (!where) continue;
            const m = at(defined(model.get(where.block), 'model'), where.page);
            const store = instance(m.shared ? where.block.shared : where.block.private, SimulatedStore);
            store.fault(where.page * PAGE, PAGE);
            store.map().bytes.fill(c.value, where.page * PAGE, (where.page + 1) * PAGE);
            m.backed = true;
            m.written = true;
          } else {
            const gpa = RAM + c.page * PAGE;
            const size = c.pages * PAGE;
            inject(cvm.memory.blocks, kvm, listeners, c, gpa);
            try {
              await cvm.orchestrator.convert({ gpa, size, to: c.to, source: 'api', pageSize: PAGE });
              // Accepted: the model changes the RAM pages of the range.
              for (let p = gpa; p < gpa + size; p += PAGE) {
                const where = locate(p);
                if (!where) continue;
                const m = at(defined(model.get(where.block), 'model'), where.page);
                if (m.shared !== (c.to === 'shared')) {
                  m.shared = c.to === 'shared';
                  m.backed = preallocate;
                  m.written = false;
                }
              }
            } catch (error) {
              assert.ok(error instanceof ConversionError, `unexpected ${String(error)}`);
            }
            clear(cvm.memory.blocks, kvm, listeners);
          }
          assert.equal(cvm.orchestrator.stopped, undefined);
          assert.equal(cvm.orchestrator.pendingDiscards.length, 0);
          for (const block of cvm.memory.blocks) check(block, defined(model.get(block), 'model'), kvmPrivateRuns(cvm, block), defined(listeners.get(block), 'listener'));
        }
      }), propertyParameters(100));
    });
  }
});

function inject(blocks: readonly RamBlock[], kvm: SimulatedPrivateMemory, listeners: Map<RamBlock, MappingListener>, c: Extract<Command, { t: 'convert' }>, gpa: number): void {
  const block = blocks.find((b) => gpa >= b.gpa && gpa < b.gpa + b.size) ?? at(blocks, 0);
  switch (c.fault) {
    case 'veto': {
      let n = 0;
      defined(listeners.get(block), 'listener').refuse = () => n++ === c.at;
      break;
    }
    case 'kvm':
      kvm.failNext({ errno: 'ENOMEM', after: c.at });
      break;
    case 'allocate':
      instance(c.to === 'shared' ? block.shared : block.private, SimulatedStore).failNext('allocate', { errno: 'ENOSPC', afterBytes: c.at * PAGE });
      break;
    case 'commit-discard':
      // One failed attempt: the orchestrator's retry frees the pages.
      instance(c.to === 'shared' ? block.private : block.shared, SimulatedStore).failNext('discard', { errno: 'EIO' });
      break;
    case 'none':
      break;
  }
}

function clear(blocks: readonly RamBlock[], kvm: SimulatedPrivateMemory, listeners: Map<RamBlock, MappingListener>): void {
  kvm.clearFailure();
  for (const block of blocks) {
    instance(block.shared, SimulatedStore).clearFailures();
    instance(block.private, SimulatedStore).clearFailures();
    defined(listeners.get(block), 'listener').refuse = () => false;
  }
}

function runsOf(pages: readonly PageModel[], shared: boolean): ByteRange[] {
  return pageRuns(pages.flatMap((m, i) => (m.shared === shared ? [i * PAGE] : [])));
}

/** True when the page at `page` of `bytes` is all zero. */
function zeroPage(bytes: Uint8Array, page: number): boolean {
  const words = new BigUint64Array(bytes.buffer, bytes.byteOffset + page * PAGE, PAGE / 8);
  for (const w of words) if (w !== 0n) return false;
  return true;
}

function check(block: RamBlock, pages: readonly PageModel[], kvmPrivate: ByteRange[] | string, listener: MappingListener): void {
  assert.deepEqual(sharedRuns(block), runsOf(pages, true), `${block.name}: tracker`);
  assert.deepEqual(kvmPrivate, runsOf(pages, false), `${block.name}: KVM's view`);
  listener.check(block);
  const shared = defined(block.shared.residentPages(0, block.size), 'shared residency');
  const priv = defined(block.private.residentPages(0, block.size), 'private residency');
  const sharedBytes = block.shared.map().bytes;
  const privateBytes = block.private.map().bytes;
  pages.forEach((m, i) => {
    const where = `${block.name} page ${i} (${m.shared ? 'shared' : 'private'}, ${m.backed ? 'backed' : 'not backed'})`;
    assert.ok(!(shared[i] && priv[i]), `${where}: backed on both sides`);
    if (m.shared) {
      assert.equal(priv[i], 0, `${where}: backed on the private side`);
      assert.equal(shared[i], m.backed ? 1 : 0, `${where}: shared side`);
    } else {
      assert.equal(shared[i], 0, `${where}: backed on the shared side`);
      assert.equal(priv[i], m.backed ? 1 : 0, `${where}: private side`);
      assert.ok(zeroPage(sharedBytes, i), `${where}: data reachable through the shared mapping`);
      if (!m.written) assert.ok(zeroPage(privateBytes, i), `${where}: stale private data`);
    }
  });
}
