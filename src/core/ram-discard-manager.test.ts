import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { thrown } from '../../test/support/thrown.js';
import { RecordingListener } from '../../test/support/recording-listener.js';
import { ramBlock, type TestBlock } from '../../test/support/ram-block.js';
import { captureTrace, type TraceCapture } from '../../test/support/trace-capture.js';
import { InvalidArgumentError, InvalidRangeError, ListenerVetoError, ReentrancyError, RegistrationError } from './errors.js';
import { PlugState } from './plug-state.js';
import { RamBlockAttributes } from './ram-block-attributes.js';
import { RamDiscardManager } from './ram-discard-manager.js';
import { MemoryRegion, type MemoryRegionSection } from './section.js';
import { KiB, MiB } from './units.js';

function setup(size = 16 * MiB): TestBlock {
  return ramBlock(size);
}

function runs(sections: MemoryRegionSection[]): string[] {
  return sections.map((s) => `0x${s.offsetWithinRegion.toString(16)}+0x${s.size.toString(16)}@0x${s.offsetWithinAddressSpace.toString(16)}`);
}

describe('RamDiscardManager', () => {
  let traced: TraceCapture;
  beforeEach(() => {
    traced = captureTrace('ram_discard_manager_*');
  });
  afterEach(() => {
    traced.dispose();
  });

  describe('registration', () => {
    it('replays the shared parts of the section at once, clipped, at the right addresses', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 2 * MiB, 'shared');
      attrs.stateChange(3 * MiB, 1 * MiB, 'shared');
      const l = new RecordingListener('vfio');
      // Section [1 MiB, 5 MiB) placed at IOVA 0x1_0000_0000.
      manager.registerListener(l, region.section(1 * MiB, 4 * MiB, 0x1_0000_0000));
      assert.deepEqual(l.log, [
        { kind: 'populate', offset: 1 * MiB, size: 1 * MiB, address: 0x1_0000_0000 },
        { kind: 'populate', offset: 3 * MiB, size: 1 * MiB, address: 0x1_0020_0000 },
      ]);
      assert.equal(manager.listeners.length, 1);
    });

    it('unregistering sends one discard for the whole section', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 4 * KiB, 'shared');
      const l = new RecordingListener('vfio');
      manager.registerListener(l, region.section(0, 8 * MiB));
      l.take();
      assert.deepEqual(manager.unregisterListener(l), []);
      assert.deepEqual(l.take(), ['discard 0x0+0x800000']);
      assert.equal(manager.listeners.length, 0);
      attrs.stateChange(0, 16 * MiB, 'shared');
      assert.deepEqual(l.take(), [], 'an unregistered listener hears nothing');
    });

    it('unregisters through the returned disposable, once', () => {
      const { region, manager } = setup();
      const l = new RecordingListener('vfio');
      const reg = manager.registerListener(l, region.section());
      reg.dispose();
      reg.dispose();
      assert.deepEqual(l.take(), ['discard 0x0+0x1000000']);
      const again = manager.registerListener(l, region.section());
      manager.unregisterListener(l);
      again[Symbol.dispose]();
      assert.equal(manager.listeners.length, 0);
    });

    it('refuses double registration, unknown listeners and foreign sections', () => {
      const { region, manager } = setup();
      const l = new RecordingListener('vfio');
      manager.registerListener(l, region.section());
      assert.throws(() => manager.registerListener(l, region.section()), RegistrationError);
      assert.throws(() => manager.unregisterListener(new RecordingListener('x')), RegistrationError);
      const other = new MemoryRegion('other', 16 * MiB);
      assert.throws(() => manager.registerListener(new RecordingListener('y'), other.section()), InvalidArgumentError);
      assert.throws(() => manager.isPopulated(other.section()), InvalidArgumentError);
      assert.throws(() => region.section(15 * MiB, 2 * MiB), InvalidRangeError);
      assert.throws(() => region.section(0, 0), InvalidRangeError);
      assert.throws(() => manager.registerListener({ name: 'z' } as unknown as RecordingListener, region.section()), InvalidArgumentError);
      assert.equal(manager.listeners.length, 1);
    });

    it('rolls back a listener whose replay is refused, leaving it unregistered', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 1 * MiB, 'shared');
      attrs.stateChange(2 * MiB, 1 * MiB, 'shared');
      attrs.stateChange(4 * MiB, 1 * MiB, 'shared');
      const l = new RecordingListener('vfio');
      l.refusePopulate = (s) => s.offsetWithinRegion === 4 * MiB;
      const err = thrown(ListenerVetoError, () => manager.registerListener(l, region.section()));
      assert.equal(err.listener, 'vfio');
      assert.equal(err.offset, '0x400000');
      assert.match(err.message, /listener 'vfio' vetoed populate of offset 0x400000 size 0x100000 during listener registration/);
      // Told about two runs, then told to discard exactly those, newest first.
      assert.deepEqual(l.take(), ['populate 0x0+0x100000', 'populate 0x200000+0x100000', 'discard 0x200000+0x100000', 'discard 0x0+0x100000']);
      assert.equal(manager.listeners.length, 0);
      l.refusePopulate = () => false;
      manager.registerListener(l, region.section());
      assert.equal(manager.listeners.length, 1);
    });
  });

  describe('notification', () => {
    it('notifies the most recently registered listener first', () => {
      const { region, manager, attrs } = setup();
      const order: string[] = [];
      for (const name of ['first', 'second', 'third']) {
        const l = new RecordingListener(name);
        l.during = (kind) => order.push(`${name}:${kind}`);
        manager.registerListener(l, region.section());
      }
      attrs.stateChange(0, 4 * KiB, 'shared');
      attrs.stateChange(0, 4 * KiB, 'private');
      assert.deepEqual(order, ['third:populate', 'second:populate', 'first:populate', 'third:discard', 'second:discard', 'first:discard']);
      assert.deepEqual(manager.listeners.map((r) => r.listener.name), ['third', 'second', 'first']);
    });

    it('tells each listener only about its own section, clipped', () => {
      const { region, manager, attrs } = setup();
      const low = new RecordingListener('low');
      const high = new RecordingListener('high');
      manager.registerListener(low, region.section(0, 4 * MiB, 0x8000_0000));
      manager.registerListener(high, region.section(8 * MiB, 8 * MiB));
      attrs.stateChange(2 * MiB, 4 * MiB, 'shared');
      assert.deepEqual(low.log, [{ kind: 'populate', offset: 2 * MiB, size: 2 * MiB, address: 0x8020_0000 }]);
      assert.deepEqual(high.log, []);
    });

    it('rolls back a refused populate: earlier listeners discard exactly what they were told, state is restored', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(1 * MiB, 1 * MiB, 'shared');
      const first = new RecordingListener('first');
      const refuser = new RecordingListener('iommu');
      const last = new RecordingListener('last');
      manager.registerListener(first, region.section());
      manager.registerListener(refuser, region.section());
      manager.registerListener(last, region.section(0, 1536 * KiB));
      for (const l of [first, refuser, last]) l.take();
      // Mixed range: runs [0, 1 MiB) and [2 MiB, 4 MiB). `iommu` refuses the second run.
      refuser.refusePopulate = (s) => s.offsetWithinRegion === 2 * MiB;
      const err = thrown(ListenerVetoError, () => attrs.stateChange(0, 4 * MiB, 'shared'));
      assert.equal(err.listener, 'iommu');
      assert.equal(err.code, 'ERR_LISTENER_VETO');
      assert.ok(err.cause instanceof Error);
      assert.deepEqual(last.take(), ['populate 0x0+0x100000', 'discard 0x0+0x100000']);
      assert.deepEqual(refuser.take(), ['populate 0x0+0x100000', 'discard 0x0+0x100000']);
      assert.deepEqual(first.take(), [], 'not reached before the veto');
      assert.equal(attrs.stateOf(0, 1 * MiB), 'private');
      assert.equal(attrs.stateOf(1 * MiB, 1 * MiB), 'shared');
      assert.equal(attrs.stateOf(2 * MiB, 2 * MiB), 'private');
      assert.equal(attrs.sharedBytes, 1 * MiB);
      assert.deepEqual(traced.lines.filter((l) => l.includes('veto')), [
        "ram_discard_manager_veto listener 'iommu' vetoed populate offset 0x200000 size 0x200000 during state change",
      ]);
    });

    it('reports a listener that throws on discard and still notifies the others', () => {
      const { region, manager, attrs } = setup();
      const a = new RecordingListener('a');
      const broken = new RecordingListener('broken');
      manager.registerListener(a, region.section());
      manager.registerListener(broken, region.section());
      attrs.stateChange(0, 8 * MiB, 'shared');
      a.take();
      broken.take();
      broken.failDiscard = () => true;
      const r = attrs.stateChange(0, 8 * MiB, 'private');
      assert.equal(r.discardFailures.length, 1);
      const [failure] = r.discardFailures;
      assert.ok(failure);
      assert.equal(failure.listener, 'broken');
      assert.equal(failure.size, 8 * MiB);
      assert.ok(failure.error instanceof Error);
      assert.deepEqual(a.take(), ['discard 0x0+0x800000']);
      assert.equal(attrs.sharedBytes, 0);
      assert.equal(manager.discardFailureCount, 1);
      assert.equal(traced.lines.filter((l) => l.startsWith('ram_discard_manager_discard_failed')).length, 1);
      assert.equal(manager.unregisterListener(broken).length, 1, 'unregistration reports it too');
      assert.equal(manager.listeners.length, 1, 'and still removes the listener');
    });

    it('refuses registration changes from inside a callback', () => {
      const { region, manager, attrs } = setup();
      const l = new RecordingListener('vfio');
      const errors: unknown[] = [];
      const attempt = (f: () => unknown): void => {
        try {
          f();
        } catch (error) {
          errors.push(error);
        }
      };
      l.during = () => {
        attempt(() => manager.registerListener(new RecordingListener('x'), region.section()));
        attempt(() => manager.unregisterListener(l));
        attempt(() => manager.addSource(attrs));
        attempt(() => new PlugState(manager, { blockSize: 2 * MiB }));
      };
      manager.registerListener(l, region.section());
      attrs.stateChange(0, 4 * KiB, 'shared');
      assert.equal(errors.length, 4);
      for (const e of errors) assert.ok(e instanceof ReentrancyError, String(e));
      assert.equal(manager.listeners.length, 1);
      assert.equal(manager.sources.length, 1);
    });
  });

  describe('queries', () => {
    it('isPopulated is true only when every byte is shared', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 2 * MiB, 'shared');
      assert.equal(manager.isPopulated(region.section(0, 2 * MiB)), true);
      assert.equal(manager.isPopulated(region.section(4 * KiB, 100)), true);
      assert.equal(manager.isPopulated(region.section(0, 2 * MiB + 1)), false, 'a partly covered private page counts');
    });

    it('replays maximal populated and discarded runs, clipped to the section', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(1 * MiB, 1 * MiB, 'shared');
      attrs.stateChange(2 * MiB, 4 * KiB, 'shared');
      attrs.stateChange(3 * MiB, 1 * MiB, 'shared');
      const section = region.section(1536 * KiB, 2 * MiB, 0x4000_0000);
      const populated: MemoryRegionSection[] = [];
      const discarded: MemoryRegionSection[] = [];
      assert.equal(manager.replayPopulated(section, (s) => populated.push(s)), undefined);
      assert.equal(manager.replayDiscarded(section, (s) => discarded.push(s)), undefined);
      assert.deepEqual(runs(populated), ['0x180000+0x81000@0x40000000', '0x300000+0x80000@0x40180000']);
      assert.deepEqual(runs(discarded), ['0x201000+0xff000@0x40081000']);
    });

    it('stops a replay at the first callback that throws and returns its error', () => {
      const { region, manager, attrs } = setup();
      for (let i = 0; i < 4; i++) attrs.stateChange(i * 2 * MiB, 4 * KiB, 'shared');
      const boom = new Error('boom');
      let calls = 0;
      const result = manager.replayPopulated(region.section(), () => {
        if (++calls === 2) throw boom;
      });
      assert.equal(result, boom);
      assert.equal(calls, 2);
    });

    it('reports the minimum granularity over the sources, 0 with none', () => {
      const region = new MemoryRegion('r', 16 * MiB);
      const manager = new RamDiscardManager(region);
      assert.equal(manager.minGranularity, 0);
      const plug = new PlugState(manager, { blockSize: 2 * MiB });
      assert.equal(manager.minGranularity, 2 * MiB);
      new RamBlockAttributes(manager);
      assert.equal(manager.minGranularity, 4 * KiB);
      plug.detach();
      assert.equal(manager.minGranularity, 4 * KiB);
    });
  });

  describe('several sources', () => {
    it('treats everything as populated with no sources', () => {
      const region = new MemoryRegion('r', 4 * MiB);
      const manager = new RamDiscardManager(region);
      const l = new RecordingListener('vfio');
      manager.registerListener(l, region.section());
      assert.deepEqual(l.take(), ['populate 0x0+0x400000']);
      assert.equal(manager.isPopulated(region.section()), true);
    });

    it('populates only where every source populates (plug state AND shared)', () => {
      const { region, manager, attrs } = setup();
      const l = new RecordingListener('vfio');
      manager.registerListener(l, region.section());
      const plug = new PlugState(manager, { blockSize: 2 * MiB });
      assert.deepEqual(l.take(), [], 'nothing was populated, so adding a discarding source says nothing');
      attrs.stateChange(0, 8 * MiB, 'shared');
      assert.deepEqual(l.take(), [], 'shared but unplugged: still discarded');
      plug.plug(2 * MiB, 4 * MiB);
      assert.deepEqual(l.take(), ['populate 0x200000+0x400000']);
      attrs.stateChange(3 * MiB, 4 * KiB, 'private');
      assert.deepEqual(l.take(), ['discard 0x300000+0x1000']);
      plug.unplug(2 * MiB, 2 * MiB);
      assert.deepEqual(l.take(), ['discard 0x200000+0x100000', 'discard 0x301000+0xff000']);
      assert.equal(manager.isPopulated(region.section(4 * MiB, 2 * MiB)), true);
      assert.equal(manager.isPopulated(region.section(6 * MiB, 2 * MiB)), false);
    });

    it('adding and removing a source notifies exactly the difference', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 6 * MiB, 'shared');
      const l = new RecordingListener('vfio');
      manager.registerListener(l, region.section());
      l.take();
      const plug = new PlugState(manager, { blockSize: 2 * MiB });
      assert.deepEqual(l.take(), ['discard 0x0+0x600000']);
      plug.plug(0, 16 * MiB);
      assert.deepEqual(l.take(), ['populate 0x0+0x600000']);
      plug.unplug(4 * MiB, 4 * MiB);
      assert.deepEqual(l.take(), ['discard 0x400000+0x200000']);
      plug.detach();
      assert.deepEqual(l.take(), ['populate 0x400000+0x200000']);
      assert.deepEqual(manager.sources.map((s) => s.name), ['pc.ram:attributes']);
    });

    it('keeps a source whose removal is vetoed, and rolls the listeners back', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 16 * MiB, 'shared');
      const plug = new PlugState(manager, { blockSize: 2 * MiB });
      plug.plug(0, 2 * MiB);
      const a = new RecordingListener('a');
      const b = new RecordingListener('b');
      manager.registerListener(a, region.section());
      manager.registerListener(b, region.section());
      a.take();
      b.take();
      a.refusePopulate = () => true;
      assert.throws(() => { plug.detach(); }, ListenerVetoError);
      assert.deepEqual(b.take(), ['populate 0x200000+0xe00000', 'discard 0x200000+0xe00000']);
      assert.deepEqual(a.take(), []);
      assert.equal(manager.sources.length, 2);
      assert.equal(manager.isPopulated(region.section(2 * MiB, 2 * MiB)), false);
    });

    it('refuses a duplicate source, an absent one and a bad granularity', () => {
      const { manager, attrs } = setup();
      assert.throws(() => manager.addSource(attrs), RegistrationError);
      const stray = {
        name: 'stray',
        granularity: 4096,
        nextPopulated(from: number): number {
          return from;
        },
        nextDiscarded(_from: number, end: number): number {
          return end;
        },
        forEachRun(from: number, end: number, populated: boolean, visit: (s: number, e: number) => unknown): void {
          if (populated) visit(from, end);
        },
      };
      assert.throws(() => {
        manager.removeSource(stray);
      }, RegistrationError);
      assert.throws(() => {
        manager.notifyPopulate(stray, []);
      }, RegistrationError);
      assert.throws(() => manager.addSource({ ...stray, granularity: 3000 }), InvalidArgumentError);
      assert.throws(() => manager.addSource({ ...stray, granularity: 32 * MiB }), InvalidArgumentError);
      assert.equal(manager.sources.length, 1);
    });
  });

  describe('prepared discards', () => {
    /** A listener that records preparations and refuses those `refuse` picks. */
    class Preparing extends RecordingListener {
      prepared: string[] = [];
      refuse: (section: MemoryRegionSection) => boolean = () => false;
      prepareDiscard(section: MemoryRegionSection): void {
        this.prepared.push(`0x${section.offsetWithinRegion.toString(16)}+0x${section.size.toString(16)}`);
        if (this.refuse(section)) throw new Error('cannot split the mapping');
      }
    }

    it('asks before a discard, with the sections the discard will carry', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 8 * MiB, 'shared');
      const l = new Preparing('iommufd');
      manager.registerListener(l, region.section(1 * MiB, 4 * MiB));
      l.take();
      attrs.stateChange(0, 2 * MiB, 'private');
      assert.deepEqual(l.prepared, ['0x100000+0x100000']);
      assert.deepEqual(l.take(), ['discard 0x100000+0x100000']);
      attrs.stateChange(3 * MiB, 4 * KiB, 'private');
      assert.deepEqual(l.prepared.slice(1), ['0x300000+0x1000'], 'the one-page path asks too');
      assert.ok(manager.preparesDiscards);
    });

    it('a refusal changes nothing: no state, no notification, for one page or many', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 8 * MiB, 'shared');
      const other = new RecordingListener('other');
      const l = new Preparing('type1');
      manager.registerListener(other, region.section());
      manager.registerListener(l, region.section());
      other.take();
      l.take();
      l.refuse = () => true;
      for (const [offset, size] of [[4 * KiB, 4 * KiB], [1 * MiB, 3 * MiB]] as const) {
        const err = thrown(ListenerVetoError, () => attrs.stateChange(offset, size, 'private'));
        assert.equal(err.action, 'discard');
        assert.match(err.message, /listener 'type1' refused discard of offset 0x[0-9a-f]+ size 0x[0-9a-f]+ during state change; nothing changed: cannot split the mapping/);
        assert.equal(attrs.isShared(0, 8 * MiB), true);
      }
      assert.deepEqual(other.take(), []);
      assert.deepEqual(l.take(), []);
      assert.match(traced.lines.join('\n'), /ram_discard_manager_discard_refused listener 'type1' refused discard offset 0x1000 size 0x1000 during state change/);
    });

    it('a prepared conversion asks when it is prepared, before any step', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 8 * MiB, 'shared');
      const l = new Preparing('type1');
      manager.registerListener(l, region.section());
      l.take();
      l.refuse = (s) => s.offsetWithinRegion === 2 * MiB;
      assert.throws(() => attrs.prepareStateChange(2 * MiB, 2 * MiB, 'private'), ListenerVetoError);
      const ok = attrs.prepareStateChange(4 * MiB, 2 * MiB, 'private');
      assert.deepEqual(l.prepared, ['0x200000+0x200000', '0x400000+0x200000']);
      ok.notifyDiscard();
      ok.apply();
      assert.deepEqual(l.take(), ['discard 0x400000+0x200000']);
      // Undoing a discard and the discard of a rollback are not prepared.
      ok.revert();
      ok.revertDiscardNotice();
      assert.equal(l.prepared.length, 2);
    });

    it('a source addition asks too, and a refusal keeps the source out', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 16 * MiB, 'shared');
      const l = new Preparing('type1');
      manager.registerListener(l, region.section());
      l.take();
      l.refuse = () => true;
      assert.throws(() => new PlugState(manager, { blockSize: 2 * MiB }), ListenerVetoError);
      assert.deepEqual(manager.sources.map((s) => s.name), [attrs.name]);
      assert.deepEqual(l.take(), []);
    });

    it('a registration can be refused before its replay, with every populated run in hand', () => {
      const { region, manager, attrs } = setup();
      attrs.stateChange(0, 2 * MiB, 'shared');
      attrs.stateChange(4 * MiB, 2 * MiB, 'shared');
      const seen: string[][] = [];
      const l = new RecordingListener('type1');
      Object.assign(l, {
        prepareRegistration(populated: readonly MemoryRegionSection[]): void {
          seen.push(runs([...populated]));
          throw new Error('65535 mappings would be needed');
        },
      });
      const err = thrown(ListenerVetoError, () => manager.registerListener(l, region.section(1 * MiB, 8 * MiB, 0x10_0000_0000)));
      assert.match(err.message, /65535 mappings would be needed/);
      assert.deepEqual(seen, [['0x100000+0x100000@0x1000000000', '0x400000+0x200000@0x1000300000']]);
      assert.deepEqual(l.take(), [], 'nothing replayed');
      assert.equal(manager.listeners.length, 0);
    });

    it('refuses hooks that are not functions', () => {
      const { region, manager } = setup();
      const l = Object.assign(new RecordingListener('odd'), { prepareDiscard: 42 });
      assert.throws(() => manager.registerListener(l as unknown as RecordingListener, region.section()), InvalidArgumentError);
    });
  });
});
