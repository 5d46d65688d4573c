import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { captureTrace, type TraceCapture } from '../../test/support/trace-capture.js';
import { thrown } from '../../test/support/thrown.js';
import { RecordingListener } from '../../test/support/recording-listener.js';
import { ramBlock, type TestBlock } from '../../test/support/ram-block.js';
import { GuestmemError, InvalidArgumentError, InvalidRangeError, ListenerVetoError, ReentrancyError } from './errors.js';
import { GiB, KiB, MiB, TiB } from './units.js';

function block(size = 64 * MiB, pageSize?: number): TestBlock {
  return ramBlock(size, pageSize);
}

describe('RamBlockAttributes', () => {
  let traced: TraceCapture;
  beforeEach(() => {
    traced = captureTrace('ram_block_attributes_*');
  });
  afterEach(() => {
    traced.dispose();
  });

  describe('creation', () => {
    it('starts all private, tracking 4 KiB host pages by default', () => {
      const { attrs, manager } = block();
      assert.equal(attrs.pageSize, 4 * KiB);
      assert.equal(manager.minGranularity, 4 * KiB);
      assert.equal(attrs.isPrivate(0, 64 * MiB), true);
      assert.equal(attrs.sharedBytes, 0);
      assert.equal(attrs.stats.leaves, 0);
    });

    it('accepts any power-of-two page size that divides the block', () => {
      for (const pageSize of [1, 512, 4 * KiB, 64 * KiB, 2 * MiB, 1 * GiB]) {
        const { attrs } = block(2 * GiB, pageSize);
        assert.equal(attrs.pageSize, pageSize);
      }
      assert.throws(() => block(64 * MiB, 3 * KiB), InvalidArgumentError);
      assert.throws(() => block(64 * MiB, 128 * MiB), InvalidArgumentError);
      assert.throws(() => block(64 * MiB + 4 * KiB, 2 * MiB), InvalidArgumentError);
    });

    it('holds a 64 TiB block and converts its last page', () => {
      const { attrs } = block(64 * TiB);
      const last = 64 * TiB - 4 * KiB;
      const r = attrs.stateChange(last, 4 * KiB, 'shared');
      assert.equal(r.changedBytes, 4 * KiB);
      assert.equal(attrs.isShared(last, 4 * KiB), true);
      assert.equal(attrs.isPrivate(0, last), true);
      assert.ok(attrs.stats.byteSize < 16 * MiB, `${attrs.stats.byteSize} bytes for 64 TiB`);
    });
  });

  describe('validation', () => {
    const bad: [string, number | bigint, number | bigint, string][] = [
      ['unaligned offset', 4 * KiB + 1, 4 * KiB, 'unaligned-offset'],
      ['unaligned size', 0, 4 * KiB + 512, 'unaligned-size'],
      ['zero size', 8 * KiB, 0, 'zero-size'],
      ['wrap-around', 0xffff_ffff_ffff_f000n, 8 * KiB, 'wrap-around'],
      ['end beyond the block', 64 * MiB - 4 * KiB, 8 * KiB, 'out-of-bounds'],
      ['offset beyond the block', 64 * MiB, 4 * KiB, 'out-of-bounds'],
      ['offset above 2^53', 2n ** 60n, 4 * KiB, 'out-of-bounds'],
    ];
    for (const [what, offset, size, reason] of bad) {
      it(`rejects ${what} with a typed error and changes nothing`, () => {
        const { manager, region, attrs } = block();
        attrs.stateChange(0, 4 * MiB, 'shared');
        const l = new RecordingListener('vfio');
        manager.registerListener(l, region.section());
        l.take();
        traced.lines.length = 0;
        for (const to of ['shared', 'private'] as const) {
          const err = thrown(InvalidRangeError, () => attrs.stateChange(offset, size, to));
          assert.equal(err.reason, reason);
          assert.equal(err.code, 'ERR_INVALID_RANGE');
          assert.match(err.message, /invalid range: offset 0x[0-9a-f]+ size 0x[0-9a-f]+/);
        }
        assert.deepEqual(l.take(), [], 'no notification');
        assert.deepEqual(traced.lines, [], 'no trace');
        assert.equal(attrs.sharedBytes, 4 * MiB);
        assert.equal(attrs.isShared(0, 4 * MiB), true);
        assert.equal(attrs.isPrivate(4 * MiB, 60 * MiB), true);
      });
    }

    it('rejects values that are not byte counts, and a bad target state', () => {
      const { attrs } = block();
      for (const v of [-4096, 4096.5, Number.NaN, Infinity, '4096', null, undefined, -1n]) {
        assert.throws(() => attrs.stateChange(v as number, 4096, 'shared'), InvalidArgumentError);
        assert.throws(() => attrs.stateChange(0, v as number, 'shared'), InvalidArgumentError);
      }
      assert.throws(() => attrs.stateChange(0, 4096, 'encrypted' as 'shared'), InvalidArgumentError);
      assert.equal(attrs.sharedBytes, 0);
    });

    it('accepts bigint offsets and sizes', () => {
      const { attrs } = block();
      attrs.stateChange(2n * BigInt(MiB), 8192n, 'shared');
      assert.equal(attrs.isShared(2 * MiB, 8192), true);
    });
  });

  describe('state changes', () => {
    it('does nothing but trace when the range is already in the target state', () => {
      const { manager, region, attrs } = block();
      const l = new RecordingListener('vfio');
      manager.registerListener(l, region.section());
      const r = attrs.stateChange(0, 2 * MiB, 'private');
      assert.deepEqual(r.changed, []);
      assert.equal(r.from, 'discarded');
      assert.deepEqual(l.take(), []);
      assert.deepEqual(traced.lines, ["ram_block_attributes_state_change offset 0x0 size 0x200000 from 'discarded' to 'discarded'"]);
    });

    it('changes a range in the opposite state at once, with one notification per listener', () => {
      const { manager, region, attrs } = block();
      const a = new RecordingListener('a');
      const b = new RecordingListener('b');
      manager.registerListener(a, region.section());
      manager.registerListener(b, region.section(0, 32 * MiB));
      const r = attrs.stateChange(4 * MiB, 8 * MiB, 'shared');
      assert.equal(r.from, 'discarded');
      assert.deepEqual(r.changed, [{ offset: 4 * MiB, size: 8 * MiB }]);
      assert.deepEqual(a.take(), ['populate 0x400000+0x800000']);
      assert.deepEqual(b.take(), ['populate 0x400000+0x800000']);
      attrs.stateChange(4 * MiB, 8 * MiB, 'private');
      assert.deepEqual(a.take(), ['discard 0x400000+0x800000']);
      assert.deepEqual(traced.lines, [
        "ram_block_attributes_state_change offset 0x400000 size 0x800000 from 'discarded' to 'populated'",
        "ram_block_attributes_state_change offset 0x400000 size 0x800000 from 'populated' to 'discarded'",
      ]);
    });

    it('changes a mixed range as its maximal changed runs, one notification per run', () => {
      const { manager, region, attrs } = block();
      // shared:  [1 MiB, 2 MiB) and [3 MiB, 3 MiB + 4 KiB)
      attrs.stateChange(1 * MiB, 1 * MiB, 'shared');
      attrs.stateChange(3 * MiB, 4 * KiB, 'shared');
      const l = new RecordingListener('vfio');
      manager.registerListener(l, region.section());
      assert.deepEqual(l.take(), ['populate 0x100000+0x100000', 'populate 0x300000+0x1000']);
      traced.lines.length = 0;
      const r = attrs.stateChange(0, 4 * MiB, 'shared');
      assert.equal(r.from, 'mixture');
      assert.deepEqual(l.take(), ['populate 0x0+0x100000', 'populate 0x200000+0x100000', 'populate 0x301000+0xff000']);
      assert.equal(r.changedBytes, 4 * MiB - 1 * MiB - 4 * KiB);
      assert.deepEqual(traced.lines, ["ram_block_attributes_state_change offset 0x0 size 0x400000 from 'mixture' to 'populated'"]);
      attrs.stateChange(2 * MiB, 4 * KiB, 'private');
      attrs.stateChange(2 * MiB + 8 * KiB, 4 * KiB, 'private');
      l.take();
      attrs.stateChange(0, 4 * MiB, 'private');
      assert.deepEqual(l.take(), ['discard 0x0+0x200000', 'discard 0x201000+0x1000', 'discard 0x203000+0x1fd000']);
      assert.equal(attrs.sharedBytes, 0);
    });

    it('prepares a change to private: listeners told first, state changed at apply, or the notice reverted', () => {
      const { manager, region, attrs } = block();
      attrs.stateChange(0, 2 * MiB, 'shared');
      const l = new RecordingListener('vfio');
      manager.registerListener(l, region.section());
      l.take();
      traced.lines.length = 0;
      const p = attrs.prepareStateChange(MiB, 2 * MiB, 'private');
      assert.equal(p.from, 'mixture');
      assert.deepEqual(p.changed, [{ offset: MiB, size: MiB }]);
      assert.deepEqual(traced.lines, ["ram_block_attributes_state_change offset 0x100000 size 0x200000 from 'mixture' to 'discarded'"]);
      assert.deepEqual(l.take(), [], 'preparing tells nobody');
      assert.deepEqual(p.notifyDiscard(), []);
      assert.deepEqual(l.take(), ['discard 0x100000+0x100000']);
      assert.equal(attrs.isShared(MiB, MiB), true, 'the state changes only at apply');
      p.revertDiscardNotice();
      assert.deepEqual(l.take(), ['populate 0x100000+0x100000'], 'reverting repopulates exactly what was discarded');
      const q = attrs.prepareStateChange(MiB, 2 * MiB, 'private');
      q.notifyDiscard();
      q.apply();
      assert.equal(attrs.isPrivate(MiB, 2 * MiB), true);
      assert.equal(attrs.sharedBytes, MiB);
    });

    it('prepares a change to shared: apply populates, a veto restores the state', () => {
      const { manager, region, attrs } = block();
      const l = new RecordingListener('vfio');
      manager.registerListener(l, region.section());
      const p = attrs.prepareStateChange(0, 8 * KiB, 'shared');
      assert.deepEqual(l.take(), []);
      p.apply();
      assert.deepEqual(l.take(), ['populate 0x0+0x2000']);
      l.refusePopulate = () => true;
      const q = attrs.prepareStateChange(8 * KiB, 8 * KiB, 'shared');
      assert.throws(() => {
        q.apply();
      }, ListenerVetoError);
      assert.equal(attrs.isPrivate(8 * KiB, 8 * KiB), true);
      assert.equal(attrs.sharedBytes, 8 * KiB);
    });

    it('refuses to apply a prepared change after the source changed', () => {
      const { attrs } = block();
      const p = attrs.prepareStateChange(0, 4 * KiB, 'shared');
      attrs.stateChange(4 * KiB, 4 * KiB, 'shared');
      assert.throws(() => {
        p.apply();
      }, /prepared change is stale/);
      assert.equal(attrs.isPrivate(0, 4 * KiB), true);
    });

    it('reports stateOf a range', () => {
      const { attrs } = block();
      attrs.stateChange(0, 8 * KiB, 'shared');
      assert.equal(attrs.stateOf(0, 8 * KiB), 'shared');
      assert.equal(attrs.stateOf(0, 12 * KiB), 'mixed');
      assert.equal(attrs.stateOf(8 * KiB, 4 * KiB), 'private');
      assert.throws(() => attrs.stateOf(1, 4 * KiB), InvalidRangeError);
    });

    it('refuses a state change from inside a listener callback, changing nothing', () => {
      const { manager, region, attrs } = block();
      const l = new RecordingListener('vfio');
      let inner: unknown;
      l.during = () => {
        try {
          attrs.stateChange(32 * MiB, 4 * KiB, 'shared');
        } catch (error) {
          inner = error;
        }
      };
      manager.registerListener(l, region.section());
      attrs.stateChange(0, 4 * KiB, 'shared');
      assert.ok(inner instanceof ReentrancyError);
      assert.ok(inner instanceof GuestmemError);
      assert.equal(inner.code, 'ERR_REENTRANT_CALL');
      assert.equal(attrs.isPrivate(32 * MiB, 4 * KiB), true);
      assert.equal(attrs.sharedBytes, 4 * KiB);
    });

    it('lets a listener query the new state from inside its callback', () => {
      const { manager, region, attrs } = block();
      const l = new RecordingListener('vfio');
      const seen: boolean[] = [];
      l.during = (_kind, s) => seen.push(manager.isPopulated(s));
      manager.registerListener(l, region.section());
      attrs.stateChange(0, 8 * KiB, 'shared');
      attrs.stateChange(0, 8 * KiB, 'private');
      assert.deepEqual(seen, [true, false]);
    });
  });
});
