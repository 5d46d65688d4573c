/**
 * One conformance suite for every BackingStore: the same tests run against
 * the simulated store, memfd (4 KiB, THP, hugetlb) and guest_memfd. After
 * every operation the ledger must agree with a page-by-page model and the
 * kernel's own count must have moved by exactly what the ledger says.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import fc from 'fast-check';
import type { BackingStore } from '../../src/backing/backing-store.js';
import type { PagingPolicy } from '../../src/backing/ledger.js';
import { InvalidArgumentError, InvalidRangeError, ResourceClosedError } from '../../src/core/errors.js';
import { propertyParameters } from '../support/property.js';
import type { KernelMeter } from '../support/kernel-meter.js';

/** A store under test and how to read the kernel's count of it. */
export interface Harness {
  readonly store: BackingStore;
  readonly meter: KernelMeter;
  /** Runs after the test (e.g. closes a VM). */
  readonly cleanup?: () => void;
}

export interface ConformanceOptions {
  /** Property runs for the random-sequence test (real stores: few; simulated: many). */
  readonly runs: number;
  /** Opens a fresh store, or returns undefined after skipping the test. */
  readonly open: (t: TestContext, run: (h: Harness) => Promise<void> | void) => Promise<void>;
}

const PAGE = 4096;

/**
 * The model of a store, per 4 KiB unit: requested, and backed by the store's
 * policy: base (backed = requested), transparent-huge (an allocation backs
 * the whole huge pages it touches; a discard frees exactly its units), huge
 * (a huge page is backed while any unit in it is requested).
 */
class Model {
  readonly requested: Uint8Array;
  private readonly backed: Uint8Array;
  private readonly per: number;
  constructor(readonly size: number, readonly pageSize: number, readonly policy: PagingPolicy) {
    this.requested = new Uint8Array(size / PAGE);
    this.backed = new Uint8Array(size / PAGE);
    this.per = pageSize / PAGE;
  }
  allocate(offset: number, size: number): void {
    const a = offset / PAGE;
    const b = (offset + size) / PAGE;
    this.requested.fill(1, a, b);
    if (this.policy === 'base') this.backed.fill(1, a, b);
    else this.backed.fill(1, Math.floor(a / this.per) * this.per, Math.ceil(b / this.per) * this.per);
  }
  discard(offset: number, size: number): void {
    this.requested.fill(0, offset / PAGE, (offset + size) / PAGE);
    this.backed.fill(0, offset / PAGE, (offset + size) / PAGE);
  }
  get requestedBytes(): number {
    let n = 0;
    for (const u of this.requested) n += u;
    return n * PAGE;
  }
  get backedBytes(): number {
    if (this.policy === 'huge') {
      let pages = 0;
      for (let p = 0; p < this.requested.length; p += this.per) if (this.requested.subarray(p, p + this.per).includes(1)) pages++;
      return pages * this.pageSize;
    }
    let n = 0;
    for (const u of this.backed) n += u;
    return n * PAGE;
  }
}

/** Runs `op` and checks ledger, model and kernel agree afterwards (the kernel by its change). */
function step(h: Harness, model: Model, what: string, op: () => void): void {
  const kernelBefore = h.meter.read();
  const ledgerBefore = h.store.ledger.backedBytes;
  op();
  const kernelAfter = h.meter.read();
  const ledger = h.store.ledger;
  assert.equal(ledger.requestedBytes, model.requestedBytes, `${what}: requested bytes`);
  assert.equal(ledger.backedBytes, model.backedBytes, `${what}: backed bytes`);
  assert.equal(ledger.strandedBytes, model.backedBytes - model.requestedBytes, `${what}: stranded bytes`);
  assert.equal(kernelAfter - kernelBefore, ledger.backedBytes - ledgerBefore,
    `${what}: ${h.meter.source} moved by ${kernelAfter - kernelBefore}, the ledger by ${ledger.backedBytes - ledgerBefore}`);
}

export function storeConformance(label: string, options: ConformanceOptions): void {
  describe(`${label}: BackingStore conformance`, () => {
    it('rejects bad ranges with typed errors and changes nothing', async (t) => {
      await options.open(t, (h) => {
        const { store } = h;
        const model = new Model(store.size, store.pageSize, store.ledger.policy);
        step(h, model, 'allocate the first page', () => {
          store.allocate(0, PAGE);
          model.allocate(0, PAGE);
        });
        const bad: [number | bigint, number | bigint, string][] = [
          [1, PAGE, 'unaligned-offset'], [0, PAGE + 512, 'unaligned-size'], [PAGE, 0, 'zero-size'],
          [store.size - PAGE, 2 * PAGE, 'out-of-bounds'], [store.size, PAGE, 'out-of-bounds'],
          [0xffff_ffff_ffff_f000n, 2 * PAGE, 'wrap-around'],
        ];
        for (const [offset, size, reason] of bad) {
          for (const op of ['allocate', 'discard'] as const) {
            step(h, model, `${op} ${String(offset)}+${String(size)}`, () => {
              assert.throws(() => { store[op](offset, size); }, (e: unknown) => e instanceof InvalidRangeError && e.reason === reason);
            });
          }
        }
        step(h, model, 'negative offset', () => {
          assert.throws(() => { store.allocate(-PAGE, PAGE); }, InvalidArgumentError);
        });
      });
    });

    it('allocates and discards, the kernel agreeing after every operation', async (t) => {
      await options.open(t, (h) => {
        const { store } = h;
        const model = new Model(store.size, store.pageSize, store.ledger.policy);
        const span = Math.min(store.size, 4 * store.pageSize);
        const ops: [string, 'allocate' | 'discard', number, number][] = [
          ['allocate everything', 'allocate', 0, span],
          ['allocate it again', 'allocate', 0, span],
          ['discard one 4 KiB page', 'discard', PAGE, PAGE],
          ['discard a second one', 'discard', 3 * PAGE, PAGE],
          ['allocate one back', 'allocate', PAGE, PAGE],
          ['discard the first half', 'discard', 0, span / 2],
          ['discard what was never allocated', 'discard', span / 2, span / 2],
          ['discard everything', 'discard', 0, store.size],
        ];
        for (const [what, op, offset, size] of ops) {
          step(h, model, what, () => {
            store[op](offset, size);
            model[op](offset, size);
          });
        }
        assert.equal(store.ledger.backedBytes, 0);
      });
    });

    it('reads zero after a discard and keeps data elsewhere', async (t) => {
      await options.open(t, (h) => {
        const { store } = h;
        if (!store.mappable) {
          t.diagnostic(`${store.kind} store is not mappable: data checked through the guest (KVM tests)`);
          return;
        }
        const bytes = store.map().bytes;
        store.allocate(0, 4 * PAGE);
        bytes.fill(0xab, 0, 4 * PAGE);
        store.discard(PAGE, PAGE);
        assert.ok(bytes.subarray(PAGE, 2 * PAGE).every((b) => b === 0), 'the discarded page reads zero');
        assert.ok(bytes.subarray(0, PAGE).every((b) => b === 0xab), 'the page before keeps its data');
        assert.ok(bytes.subarray(2 * PAGE, 4 * PAGE).every((b) => b === 0xab), 'the pages after keep their data');
        store.allocate(PAGE, PAGE);
        assert.ok(bytes.subarray(PAGE, 2 * PAGE).every((b) => b === 0), 'a re-allocated page starts zeroed');
      });
    });

    it('backs whole huge pages; a partial discard strands (hugetlb) or splits (THP)', async (t) => {
      await options.open(t, (h) => {
        const { store } = h;
        const policy = store.ledger.policy;
        if (policy === 'base') {
          t.diagnostic('4 KiB pages: nothing can be stranded');
          assert.equal(store.ledger.strandedBytes, 0);
          return;
        }
        const model = new Model(store.size, store.pageSize, policy);
        const huge = store.pageSize;
        step(h, model, 'allocate 4 KiB inside an empty huge page', () => {
          store.allocate(huge - 2 * PAGE, PAGE);
          model.allocate(huge - 2 * PAGE, PAGE);
        });
        assert.equal(store.ledger.backedBytes, huge, 'the whole huge page is backed');
        assert.equal(store.ledger.strandedBytes, huge - PAGE);
        step(h, model, 'allocate the whole huge page', () => {
          store.allocate(0, huge);
          model.allocate(0, huge);
        });
        step(h, model, 'discard 4 KiB of it', () => {
          store.discard(PAGE, PAGE);
          model.discard(PAGE, PAGE);
        });
        if (policy === 'huge') {
          assert.equal(store.ledger.strandedBytes, PAGE, 'hugetlb: the discarded 4 KiB are stranded');
          step(h, model, 'discard all but the last 4 KiB', () => {
            store.discard(0, huge - PAGE);
            model.discard(0, huge - PAGE);
          });
          assert.equal(store.ledger.backedBytes, huge, 'still backed: 4 KiB are requested');
        } else {
          assert.equal(store.ledger.backedBytes, huge - PAGE, 'THP: the huge page was split and 4 KiB freed');
          assert.equal(store.ledger.strandedBytes, 0);
          step(h, model, 'allocate the 4 KiB back: the whole window is backed again', () => {
            store.allocate(PAGE, PAGE);
            model.allocate(PAGE, PAGE);
          });
          assert.equal(store.ledger.backedBytes, huge);
          step(h, model, 'discard all but the last 4 KiB', () => {
            store.discard(0, huge - PAGE);
            model.discard(0, huge - PAGE);
          });
          assert.equal(store.ledger.backedBytes, PAGE);
        }
        step(h, model, 'discard the last 4 KiB', () => {
          store.discard(huge - PAGE, PAGE);
          model.discard(huge - PAGE, PAGE);
        });
        assert.equal(store.ledger.backedBytes, 0, 'freed once nothing in it is requested');
      });
    });

    it('agrees with the model and the kernel over random operation sequences', async (t) => {
      await options.open(t, (h) => {
        const { store } = h;
        const units = store.size / PAGE;
        const hugeUnits = store.pageSize / PAGE;
        const op = fc.record({
          allocate: fc.boolean(),
          at: fc.oneof(fc.nat({ max: units - 1 }), fc.nat({ max: Math.max(0, units / hugeUnits - 1) }).map((p) => p * hugeUnits)),
          len: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constant(hugeUnits), fc.integer({ min: 1, max: Math.min(units, 4 * hugeUnits) })),
        });
        fc.assert(
          fc.property(fc.array(op, { minLength: 1, maxLength: 12 }), (ops) => {
            store.discard(0, store.size); // a clean start for each sequence
            const model = new Model(store.size, store.pageSize, store.ledger.policy);
            for (const o of ops) {
              const len = Math.min(o.len, units - o.at) * PAGE;
              const name = o.allocate ? 'allocate' : 'discard';
              step(h, model, `${name} 0x${(o.at * PAGE).toString(16)}+0x${len.toString(16)}`, () => {
                store[name](o.at * PAGE, len);
                model[name](o.at * PAGE, len);
              });
            }
          }),
          propertyParameters(options.runs),
        );
        store.discard(0, store.size);
      });
    });

    it('refuses use after close, and closing twice is harmless', async (t) => {
      await options.open(t, (h) => {
        const { store } = h;
        store.allocate(0, PAGE);
        store.close();
        store.close();
        assert.equal(store.closed, true);
        assert.throws(() => { store.allocate(0, PAGE); }, ResourceClosedError);
        assert.throws(() => { store.discard(0, PAGE); }, ResourceClosedError);
        assert.throws(() => store.map(), ResourceClosedError);
      });
    });
  });
}
