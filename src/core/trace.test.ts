import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { propertyParameters } from '../../test/support/property.js';
import { thrown } from '../../test/support/thrown.js';
import { InvalidArgumentError, TraceParseError } from './errors.js';
import { expandFormat, trace, TraceRegistry, type TraceRecord } from './trace.js';
import { traceRamBlockAttributesStateChange } from './trace-events.js';

// QEMU's declaration, as in system/trace-events (commit 5d6483edaa).
const QEMU_DECLARATION =
  `ram_block_attributes_state_change(uint64_t offset, uint64_t size, const char *from, const char *to) "offset 0x%"PRIx64" size 0x%"PRIx64" from '%s' to '%s'"`;

describe('trace points', () => {
  it('declare ram_block_attributes_state_change exactly as QEMU does', () => {
    assert.equal(traceRamBlockAttributesStateChange.toTraceEvents(), QEMU_DECLARATION);
    assert.equal(traceRamBlockAttributesStateChange.format, "offset 0x%lx size 0x%lx from '%s' to '%s'");
    assert.ok(trace.toTraceEvents().split('\n').includes(QEMU_DECLARATION));
  });

  it('expand QEMU format literals', () => {
    assert.equal(expandFormat(`"start 0x%"PRIx64" size 0x%"PRIx64" %s"`), 'start 0x%lx size 0x%lx %s');
    assert.equal(expandFormat(`"a %d" "b %"PRIu32`), 'a %db %u');
    assert.throws(() => expandFormat(`"x" PRIq64`), InvalidArgumentError);
  });

  it('format a record as the log backend does, with and without the thread prefix', () => {
    const record: TraceRecord = { name: 'ram_block_attributes_state_change', args: [0x200000, 0x1000, 'discarded', 'populated'], time: 1_700_000_000_123.456 };
    assert.equal(trace.formatLine(record), "ram_block_attributes_state_change offset 0x200000 size 0x1000 from 'discarded' to 'populated'");
    assert.equal(trace.formatLine(record, 4242),
      "4242@1700000000.123456:ram_block_attributes_state_change offset 0x200000 size 0x1000 from 'discarded' to 'populated'");
  });

  it('parse QEMU log lines, skip unknown events, and reject malformed known ones', () => {
    const r = trace.parseLine("31337@1763721600.000042:ram_block_attributes_state_change offset 0xfffffffffffff000 size 0x1000 from 'mixture' to 'discarded'");
    assert.ok(r);
    assert.deepEqual(r.args, [0xfffffffffffff000n, 0x1000, 'mixture', 'discarded']);
    assert.equal(r.tid, 31337);
    assert.equal(r.time, 1763721600000.042);
    assert.equal(trace.parseLine('kvm_set_user_memory Slot#3 flags=0x4 gpa=0x0'), undefined);
    const err = thrown(TraceParseError, () => trace.parseLine('ram_block_attributes_state_change offset 0xzz size 0x1000 from', 7));
    assert.equal(err.line, 7);
    assert.equal(err.code, 'ERR_TRACE_PARSE');
    assert.throws(() => trace.parseLine('12@x:ram_block_attributes_state_change offset 0x0'), TraceParseError);
  });

  it('round-trip any arguments through format and parse', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.constantFrom('discarded', 'populated', 'mixture'), fc.constantFrom('discarded', 'populated'), (offset, size, from, to) => {
          const line = trace.formatLine({ name: 'ram_block_attributes_state_change', args: [offset, size, from, to], time: 0 });
          const parsed = trace.parseLine(line);
          const norm = (v: bigint): number | bigint => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
          assert.deepEqual(parsed?.args, [norm(offset), norm(size), from, to]);
        }),
      propertyParameters(200),
    );
  });

  it('emit only while enabled, to every sink, and drop a sink that throws', () => {
    const registry = new TraceRegistry();
    const point = registry.define<[n: number, s: string]>('test_point', 'int n, const char *s', `"n %d s %s"`);
    const got: string[] = [];
    registry.subscribe((r) => got.push(registry.formatMessage(r)));
    point.emit(1, 'off');
    assert.equal(registry.enable('test_*'), 1);
    const bad = registry.subscribe(() => {
      throw new Error('sink broke');
    });
    point.emit(2, 'on');
    point.emit(3, 'still');
    registry.disable('*');
    point.emit(4, 'off');
    assert.deepEqual(got, ['n 2 s on', 'n 3 s still']);
    const failures = registry.takeSinkFailures();
    assert.equal(failures.length, 1, 'the broken sink was dropped after its first failure');
    assert.deepEqual(registry.takeSinkFailures(), []);
    bad.dispose();
  });

  it('refuse bad declarations', () => {
    const registry = new TraceRegistry();
    assert.throws(() => registry.define('Bad-Name', '', `""`), InvalidArgumentError);
    assert.throws(() => registry.define('two_args', 'int a', `"%d %d"`), InvalidArgumentError);
    assert.throws(() => registry.define('odd_conv', 'int a', `"%q"`), InvalidArgumentError);
    registry.define('once', 'void', `""`);
    assert.throws(() => registry.define('once', 'void', `""`), InvalidArgumentError);
  });
});
