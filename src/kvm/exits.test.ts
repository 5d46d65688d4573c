import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KVM_RUN_OFFSETS as O } from '../sys/kvm-uapi.js';
import { applyResponse, decodeExit } from './exits.js';

/** A made-up struct kvm_run (the data area at 4096, as KVM lays it out). */
function run(reason: number, fill: (v: DataView) => void = () => undefined): DataView {
  const v = new DataView(new ArrayBuffer(12288));
  v.setUint32(O.exit_reason, reason, true);
  fill(v);
  return v;
}

describe('exit decoding', () => {
  it('decodes port I/O, with the data of an out and the answer of an in', () => {
    const out = run(2, (v) => {
      v.setUint8(O.io_direction, 1);
      v.setUint8(O.io_size, 2);
      v.setUint16(O.io_port, 0x3f8, true);
      v.setUint32(O.io_count, 2, true);
      v.setBigUint64(O.io_data_offset, 4096n, true);
      v.setUint32(4096, 0xddccbbaa, true);
    });
    assert.deepEqual(decodeExit(out, 0, 0), { kind: 'io', direction: 'out', size: 2, port: 0x3f8, count: 2, data: new Uint8Array([0xaa, 0xbb, 0xcc, 0xdd]) });
    const inp = run(2, (v) => {
      v.setUint8(O.io_direction, 0);
      v.setUint8(O.io_size, 1);
      v.setUint32(O.io_count, 1, true);
      v.setBigUint64(O.io_data_offset, 4096n, true);
    });
    const exit = decodeExit(inp, 0, 0);
    applyResponse(inp, exit, { data: new Uint8Array([0x7f]) });
    assert.equal(inp.getUint8(4096), 0x7f);
  });

  it('decodes MMIO writes and answers MMIO reads, little-endian', () => {
    const write = run(6, (v) => {
      v.setBigUint64(O.mmio_phys_addr, 0xd000_0020n, true);
      v.setBigUint64(O.mmio_data, 0x1122334455667788n, true);
      v.setUint32(O.mmio_len, 8, true);
      v.setUint8(O.mmio_is_write, 1);
    });
    const w = decodeExit(write, 0, 0);
    assert.ok(w.kind === 'mmio');
    assert.ok(w.isWrite && w.gpa === 0xd000_0020n && w.data[0] === 0x88 && w.data[7] === 0x11);
    const read = run(6, (v) => {
      v.setUint32(O.mmio_len, 4, true);
    });
    const r = decodeExit(read, 0, 0);
    applyResponse(read, r, { data: 0xaabbccddeeffn });
    assert.equal(read.getBigUint64(O.mmio_data, true), 0xccddeeffn, 'only the access length is written');
  });

  it('decodes KVM_HC_MAP_GPA_RANGE and writes the return value before the next run', () => {
    const v = run(3, (d) => {
      d.setBigUint64(O.hypercall_nr, 12n, true);
      d.setBigUint64(O.hypercall_args, 0x1_0000_0000n, true);
      d.setBigUint64(O.hypercall_args + 8, 512n, true);
      d.setBigUint64(O.hypercall_args + 16, 0x11n, true);
      d.setBigUint64(O.hypercall_flags, 1n, true);
    });
    const exit = decodeExit(v, 0, 0);
    assert.ok(exit.kind === 'hypercall');
    assert.equal(exit.longMode, true);
    assert.deepEqual(exit.mapGpaRange, { gpa: 0x1_0000_0000n, npages: 512n, attributes: 0x11n });
    applyResponse(v, exit, { ret: -22 });
    assert.equal(v.getBigInt64(O.hypercall_ret, true), -22n);
    const other = decodeExit(run(3, (d) => { d.setBigUint64(O.hypercall_nr, 5n, true); }), 0, 0);
    assert.ok(other.kind === 'hypercall' && other.mapGpaRange === undefined && !other.longMode);
  });

  it('decodes KVM_EXIT_MEMORY_FAULT, which comes with KVM_RUN failing with EFAULT', () => {
    const v = run(39, (d) => {
      d.setBigUint64(O.memory_fault_flags, 8n, true);
      d.setBigUint64(O.memory_fault_gpa, 0xc000_0000n, true);
      d.setBigUint64(O.memory_fault_size, 4096n, true);
    });
    assert.deepEqual(decodeExit(v, -1, 14), { kind: 'memory_fault', flags: 8n, private: true, gpa: 0xc000_0000n, size: 4096n });
  });

  it('turns EINTR into interrupted, keeps unknown reasons and other failures raw', () => {
    assert.deepEqual(decodeExit(run(6), -1, 4), { kind: 'interrupted' });
    const unknown = decodeExit(run(77, (d) => { d.setUint8(O.exit, 0x5a); }), 0, 0);
    assert.ok(unknown.kind === 'unknown' && unknown.reason === 77 && unknown.errno === 0 && unknown.raw[0] === 0x5a && unknown.raw.length === 256);
    const efault = decodeExit(run(0), -1, 14);
    assert.ok(efault.kind === 'unknown' && efault.errno === 14, 'EFAULT without exit 39 (seen on PVM) is not a memory fault');
  });

  it('decodes HLT, SHUTDOWN, INTERNAL_ERROR and FAIL_ENTRY', () => {
    assert.deepEqual(decodeExit(run(5), 0, 0), { kind: 'hlt' });
    assert.deepEqual(decodeExit(run(8), 0, 0), { kind: 'shutdown' });
    const internal = decodeExit(run(17, (d) => {
      d.setUint32(O.internal_suberror, 1, true);
      d.setUint32(O.internal_ndata, 2, true);
      d.setBigUint64(O.internal_data, 0xabn, true);
      d.setBigUint64(O.internal_data + 8, 0xcdn, true);
    }), 0, 0);
    assert.deepEqual(internal, { kind: 'internal_error', suberror: 1, data: [0xabn, 0xcdn] });
    assert.deepEqual(decodeExit(run(9, (d) => {
      d.setBigUint64(O.fail_entry_reason, 0x80000021n, true);
      d.setUint32(O.fail_entry_cpu, 3, true);
    }), 0, 0), { kind: 'fail_entry', reason: 0x80000021n, cpu: 3 });
  });
});
