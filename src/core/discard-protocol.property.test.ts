/**
 * The discard-manager protocol against a naive model: one byte per 4 KiB unit
 * per source, one byte per unit per listener view. Random sequences of state
 * changes (valid and not), plug changes, listener registrations with random
 * sections, source attach/detach, vetoes and failing discards at random
 * points; after every step the real objects must agree with the model.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import fc from 'fast-check';
import { propertyParameters } from '../../test/support/property.js';
import { captureTrace } from '../../test/support/trace-capture.js';
import { InvalidRangeError, ListenerVetoError } from './errors.js';
import { PlugState } from './plug-state.js';
import { RamBlockAttributes } from './ram-block-attributes.js';
import { RamDiscardManager, type RamDiscardListener } from './ram-discard-manager.js';
import { MemoryRegion, type MemoryRegionSection } from './section.js';

const UNIT = 4096;
const LISTENERS = 3;

type Op =
  | { t: 'attrs'; at: number; len: number; align: boolean; shared: boolean }
  | { t: 'plug'; at: number; len: number; align: boolean; plugged: boolean }
  | { t: 'register'; who: number; at: number; len: number; address: number }
  | { t: 'unregister'; who: number }
  | { t: 'attachPlug' }
  | { t: 'detachPlug' }
  | { t: 'query'; at: number; len: number };

interface Faults {
  /** Listener `who` refuses its `nth` populate of this step. */
  readonly veto: { who: number; nth: number } | null;
  /** Listener `who` throws on its `nth` discard of this step. */
  readonly failDiscard: { who: number; nth: number } | null;
}

interface Step {
  readonly op: Op;
  readonly faults: Faults;
}

/** A listener that checks every notification against its own view of the region. */
class ModelListener implements RamDiscardListener {
  readonly name: string;
  readonly view: Uint8Array;
  section: MemoryRegionSection | undefined;
  /** Set by the driver for the current step. */
  vetoNth = 0;
  failNth = 0;
  /** Unregistration discards the whole section, populated or not. */
  loose = false;
  populates = 0;
  discards = 0;
  refused = false;
  failed = 0;
  /** A broken expectation inside a callback (where a throw would read as a veto). */
  violation: unknown;
  readonly seen: { kind: string; start: number; end: number }[] = [];

  constructor(index: number, units: number) {
    this.name = `listener${index}`;
    this.view = new Uint8Array(units);
  }

  beginStep(faults: Faults, index: number): void {
    this.vetoNth = faults.veto?.who === index ? faults.veto.nth : 0;
    this.failNth = faults.failDiscard?.who === index ? faults.failDiscard.nth : 0;
    this.populates = 0;
    this.discards = 0;
    this.refused = false;
    this.failed = 0;
    this.seen.length = 0;
    this.violation = undefined;
  }

  notifyPopulate(s: MemoryRegionSection): void {
    const [a, b] = this.expect(() => this.check(s));
    if (++this.populates === this.vetoNth) {
      this.refused = true;
      throw new Error(`${this.name} refuses`);
    }
    for (let u = a; u < b; u++) {
      this.expect(() => {
        assert.equal(this.view[u], 0, `${this.name}: populate of unit ${u} that it already has`);
      });
      this.view[u] = 1;
    }
    this.seen.push({ kind: 'populate', start: a, end: b });
  }

  notifyDiscard(s: MemoryRegionSection): void {
    const [a, b] = this.expect(() => this.check(s));
    for (let u = a; u < b; u++) {
      if (!this.loose) {
        this.expect(() => {
          assert.equal(this.view[u], 1, `${this.name}: discard of unit ${u} that it does not have`);
        });
      }
      this.view[u] = 0;
    }
    this.seen.push({ kind: 'discard', start: a, end: b });
    if (++this.discards === this.failNth) {
      this.failed++;
      throw new Error(`${this.name} fails to unmap`);
    }
  }

  /** Runs a check, keeping the first failure for the driver to report. */
  private expect<T>(check: () => T): T {
    try {
      return check();
    } catch (error) {
      this.violation ??= error;
      throw error;
    }
  }

  /** The section lies in the registered one, has the right address, and is unit-aligned. */
  private check(s: MemoryRegionSection): [number, number] {
    const reg = this.section;
    assert.ok(reg, `${this.name} notified while not registered`);
    assert.ok(s.size > 0);
    assert.ok(s.offsetWithinRegion >= reg.offsetWithinRegion && s.offsetWithinRegion + s.size <= reg.offsetWithinRegion + reg.size,
      `${this.name}: section outside its registration`);
    assert.equal(s.offsetWithinAddressSpace, reg.offsetWithinAddressSpace + s.offsetWithinRegion - reg.offsetWithinRegion);
    assert.equal(s.offsetWithinRegion % UNIT, 0);
    assert.equal(s.size % UNIT, 0);
    return [s.offsetWithinRegion / UNIT, (s.offsetWithinRegion + s.size) / UNIT];
  }
}

/** Within one step, the sections of one kind sent to a listener are maximal runs. */
function assertMaximal(l: ModelListener): void {
  for (const kind of ['populate', 'discard']) {
    const runs = l.seen.filter((s) => s.kind === kind).sort((x, y) => x.start - y.start);
    for (let i = 1; i < runs.length; i++) {
      const prev = runs[i - 1];
      const cur = runs[i];
      assert.ok(prev && cur && prev.end < cur.start, `${l.name}: ${kind} runs not maximal (${JSON.stringify(runs)})`);
    }
  }
}

const stepArb = (units: number): fc.Arbitrary<Step> => {
  const at = fc.nat({ max: units - 1 });
  const len = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 24 }) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: units + 8 }) });
  const align = fc.oneof({ weight: 6, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) });
  const who = fc.nat({ max: LISTENERS - 1 });
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 8, arbitrary: fc.record({ t: fc.constant('attrs' as const), at, len, align, shared: fc.boolean() }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('plug' as const), at, len, align, plugged: fc.boolean() }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('register' as const), who, at, len, address: fc.nat({ max: 1 << 20 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('unregister' as const), who }) },
    { weight: 1, arbitrary: fc.constant({ t: 'attachPlug' as const }) },
    { weight: 1, arbitrary: fc.constant({ t: 'detachPlug' as const }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('query' as const), at, len }) },
  );
  // About one step in three refuses a populate, one in three fails a discard.
  const fault = fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.record({ who, nth: fc.integer({ min: 1, max: 2 }) }) });
  return fc.record({ op, faults: fc.record({ veto: fault, failDiscard: fault }) });
};

interface Scenario {
  /** Region size in multiples of 8 units (the largest plug block). */
  readonly eighths: number;
  readonly attrsUnits: number;
  readonly plugUnits: number;
  /** Listeners registered before the first step (fractions of the region). */
  readonly initial: ({ from: number; to: number; address: number } | null)[];
}

const scenarioArb: fc.Arbitrary<{ s: Scenario; steps: Step[] }> = fc
  .record({
    eighths: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 16 }) }, { weight: 2, arbitrary: fc.integer({ min: 17, max: 75 }) },
      { weight: 1, arbitrary: fc.integer({ min: 76, max: 140 }) }),
    attrsUnits: fc.constantFrom(1, 1, 2),
    plugUnits: fc.constantFrom(1, 2, 4, 8),
    initial: fc.array(
      fc.oneof({ weight: 1, arbitrary: fc.constant(null) },
        { weight: 3, arbitrary: fc.record({ from: fc.double({ min: 0, max: 0.5, noNaN: true }), to: fc.double({ min: 0.5, max: 1, noNaN: true }), address: fc.nat({ max: 1 << 20 }) }) }),
      { minLength: LISTENERS, maxLength: LISTENERS }),
  })
  .chain((s) => fc.record({ s: fc.constant(s), steps: fc.array(stepArb(s.eighths * 8), { maxLength: 20 }) }));

interface Snapshot {
  readonly shared: Uint8Array;
  readonly plugged: Uint8Array;
  readonly plugAttached: boolean;
  readonly views: Uint8Array[];
  readonly registered: (MemoryRegionSection | undefined)[];
}

function run({ s, steps }: { s: Scenario; steps: Step[] }): void {
  const units = s.eighths * 8;
  const region = new MemoryRegion('ram', units * UNIT);
  const manager = new RamDiscardManager(region);
  const attrs = new RamBlockAttributes(manager, { pageSize: s.attrsUnits * UNIT });
  const plug = new PlugState(manager, { blockSize: s.plugUnits * UNIT });
  plug.detach();
  // Model state.
  const shared = new Uint8Array(units);
  const plugged = new Uint8Array(units);
  let plugAttached = false;
  const listeners = Array.from({ length: LISTENERS }, (_, i) => new ModelListener(i, units));
  const populated = (u: number): boolean => shared[u] === 1 && (!plugAttached || plugged[u] === 1);

  s.initial.forEach((init, i) => {
    const l = listeners[i];
    if (!init || !l) return;
    const start = Math.min(units - 1, Math.floor(init.from * units));
    const end = Math.max(start + 1, Math.floor(init.to * units));
    l.section = region.section(start * UNIT, (end - start) * UNIT, init.address * UNIT);
    manager.registerListener(l, l.section);
  });

  const traced = captureTrace('ram_block_attributes_state_change');
  try {
    for (const { op, faults } of steps) {
      listeners.forEach((l, i) => {
        l.beginStep(faults, i);
      });
      traced.lines.length = 0;
      const before: Snapshot = { shared: shared.slice(), plugged: plugged.slice(), plugAttached, views: listeners.map((l) => l.view.slice()),
        registered: listeners.map((l) => l.section) };
      let error: unknown;
      let expectInvalid = false;
      let discardFailuresReported = -1;
      try {
        switch (op.t) {
          case 'attrs':
          case 'plug': {
            const g = op.t === 'attrs' ? s.attrsUnits : s.plugUnits;
            const a = op.align ? op.at - (op.at % g) : op.at;
            const n = op.align ? Math.ceil(op.len / g) * g : op.len;
            expectInvalid = a % g !== 0 || n % g !== 0 || a + n > units;
            const to = op.t === 'attrs' ? op.shared : op.plugged;
            const r = op.t === 'attrs'
              ? attrs.stateChange(a * UNIT, n * UNIT, op.shared ? 'shared' : 'private')
              : to ? plug.plug(a * UNIT, n * UNIT) : plug.unplug(a * UNIT, n * UNIT);
            (op.t === 'attrs' ? shared : plugged).fill(to ? 1 : 0, a, a + n);
            discardFailuresReported = r.discardFailures.length;
            if (op.t === 'attrs') {
              const slice = before.shared.subarray(a, a + n);
              const from = !slice.includes(1) ? 'discarded' : !slice.includes(0) ? 'populated' : 'mixture';
              assert.deepEqual(traced.lines, [
                `ram_block_attributes_state_change offset 0x${(a * UNIT).toString(16)} size 0x${(n * UNIT).toString(16)} from '${from}' to '${to ? 'populated' : 'discarded'}'`,
              ]);
            }
            break;
          }
          case 'register': {
            const l = listeners[op.who];
            assert.ok(l);
            if (l.section) break;
            const start = op.at;
            const len = Math.min(op.len, units - start);
            const section = region.section(start * UNIT, len * UNIT, op.address * UNIT);
            l.section = section;
            try {
              manager.registerListener(l, section);
            } catch (e) {
              l.section = undefined;
              throw e;
            }
            break;
          }
          case 'unregister': {
            const l = listeners[op.who];
            assert.ok(l);
            if (!l.section) break;
            l.loose = true;
            discardFailuresReported = manager.unregisterListener(l).length;
            l.loose = false;
            l.section = undefined;
            assert.ok(!l.view.includes(1), 'unregistration discards everything');
            break;
          }
          case 'attachPlug':
            if (plugAttached) break;
            discardFailuresReported = manager.addSource(plug).length;
            plugAttached = true;
            break;
          case 'detachPlug':
            if (!plugAttached) break;
            plug.detach();
            plugAttached = false;
            break;
          case 'query': {
            const len = Math.min(op.len, units - op.at);
            const section = region.section(op.at * UNIT, len * UNIT);
            let all = true;
            for (let u = op.at; u < op.at + len; u++) all &&= populated(u);
            assert.equal(manager.isPopulated(section), all);
            const got: string[] = [];
            assert.equal(manager.replayPopulated(section, (x) => got.push(`+${x.offsetWithinRegion / UNIT}:${x.size / UNIT}`)), undefined);
            assert.equal(manager.replayDiscarded(section, (x) => got.push(`-${x.offsetWithinRegion / UNIT}:${x.size / UNIT}`)), undefined);
            const want: string[] = [];
            for (const p of [true, false]) {
              for (let u = op.at; u < op.at + len;) {
                if (populated(u) !== p) {
                  u++;
                  continue;
                }
                let e = u;
                while (e < op.at + len && populated(e) === p) e++;
                want.push(`${p ? '+' : '-'}${u}:${e - u}`);
                u = e;
              }
            }
            assert.deepEqual(got, want);
            break;
          }
        }
      } catch (e) {
        error = e;
      }

      for (const l of listeners) if (l.violation !== undefined) assert.fail(inspect(l.violation));
      const refusedBy = listeners.filter((l) => l.refused);
      if (error !== undefined) {
        if (expectInvalid) {
          assert.ok(error instanceof InvalidRangeError, inspect(error));
          assert.deepEqual(traced.lines, [], 'no trace for an invalid request');
        } else {
          assert.ok(error instanceof ListenerVetoError, inspect(error));
          assert.equal(refusedBy.length, 1);
          assert.equal(error.listener, refusedBy[0]?.name);
        }
        // Nothing changed: states, listener views, registrations.
        shared.set(before.shared);
        plugged.set(before.plugged);
        plugAttached = before.plugAttached;
        assert.equal(attrs.sharedBytes, before.shared.reduce((x, y) => x + y, 0) * UNIT);
        listeners.forEach((l, i) => {
          assert.deepEqual(l.view, before.views[i], `${l.name}'s view after a failed step`);
          assert.equal(manager.listeners.some((r) => r.listener === l), before.registered[i] !== undefined);
        });
      } else {
        assert.ok(!expectInvalid, 'an invalid request was accepted');
        assert.equal(refusedBy.length, 0, 'a refusal went unnoticed');
        if (discardFailuresReported >= 0) {
          assert.equal(discardFailuresReported, listeners.reduce((n, l) => n + l.failed, 0), 'every failed discard is reported');
        }
      }

      // Every registered listener sees exactly the populated part of its section.
      for (const l of listeners) {
        assertMaximal(l);
        if (!l.section) {
          assert.ok(!l.view.includes(1), `${l.name} is unregistered but holds units`);
          continue;
        }
        const a = l.section.offsetWithinRegion / UNIT;
        const b = a + l.section.size / UNIT;
        for (let u = 0; u < units; u++) {
          const want = u >= a && u < b && populated(u) ? 1 : 0;
          if (l.view[u] !== want) assert.fail(`${l.name}: unit ${u} is ${l.view[u]} in its view, model says ${want}`);
        }
      }
      assert.equal(attrs.sharedBytes, shared.reduce((x, y) => x + y, 0) * UNIT);
      for (let u = 0; u < units; u += s.attrsUnits) assert.equal(attrs.isShared(u * UNIT, s.attrsUnits * UNIT), shared[u] === 1);
    }
  } finally {
    traced.dispose();
  }
}

describe('RamDiscardManager protocol (property)', () => {
  it('agrees with a page-by-page model over random operation sequences with vetoes and failures', () => {
    fc.assert(fc.property(scenarioArb, run), propertyParameters(10_000));
  });
});
