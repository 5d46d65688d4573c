/**
 * The exits that carry conversion requests, decoded from kvm_run as KVM
 * writes them. The hypercall and memory-fault exits cannot happen on hosts
 * without hardware virtualization or memory attributes (see docs/kvm.md), so
 * their kvm_run pages are written here the way KVM writes them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sharedRuns } from '../../test/support/cvm-state.js';
import { MiB } from '../core/units.js';
import { decodeExit } from '../kvm/exits.js';
import { KVM_EXIT_HYPERCALL, KVM_EXIT_HYPERCALL_LONG_MODE, KVM_EXIT_MEMORY_FAULT, KVM_RUN_OFFSETS as O } from '../sys/kvm-uapi.js';
import { createSimulatedCvmMemory, type CvmMemory } from './cvm.js';
import { GuestRequests, type GuestRequestRecord, type VcpuRef } from './guest-requests.js';
import { KVM_EINVAL, KVM_ENOSYS } from './request.js';

const RAM = 0x4000_0000;
const vcpu: VcpuRef = { id: 2 };

function memory(): CvmMemory {
  return createSimulatedCvmMemory({ ram: [{ name: 'ram', gpa: RAM, size: 4 * MiB }] });
}

function hypercall(nr: bigint, args: readonly bigint[]): DataView {
  const run = new DataView(new ArrayBuffer(4096));
  run.setUint32(O.exit_reason, KVM_EXIT_HYPERCALL, true);
  run.setBigUint64(O.hypercall_nr, nr, true);
  args.forEach((a, i) => { run.setBigUint64(O.hypercall_args + i * 8, a, true); });
  run.setBigUint64(O.hypercall_flags, BigInt(KVM_EXIT_HYPERCALL_LONG_MODE), true);
  return run;
}

function memoryFault(gpa: bigint, size: bigint, flags: bigint): DataView {
  const run = new DataView(new ArrayBuffer(4096));
  run.setUint32(O.exit_reason, KVM_EXIT_MEMORY_FAULT, true);
  run.setBigUint64(O.memory_fault_flags, flags, true);
  run.setBigUint64(O.memory_fault_gpa, gpa, true);
  run.setBigUint64(O.memory_fault_size, size, true);
  return run;
}

describe('guest requests from exits', () => {
  it('answers MAP_GPA_RANGE with 0 or the error, and other hypercalls with -KVM_ENOSYS', async () => {
    const cvm = memory();
    const records: GuestRequestRecord[] = [];
    const requests = new GuestRequests(cvm.orchestrator, { onRequest: (r) => records.push(r) });
    const ok = await requests.handle(vcpu, decodeExit(hypercall(12n, [BigInt(RAM), 2n, 0n]), 0, 0));
    assert.deepEqual(ok, { response: { ret: 0 } });
    assert.deepEqual(sharedRuns(cvm.block('ram')), [{ offset: 0, size: 0x2000 }]);
    const bad = await requests.handle(vcpu, decodeExit(hypercall(12n, [BigInt(RAM), 1n, 0x40n]), 0, 0));
    assert.deepEqual(bad, { response: { ret: -KVM_EINVAL } });
    const other = await requests.handle(vcpu, decodeExit(hypercall(9n, [0n]), 0, 0));
    assert.deepEqual(other, { response: { ret: -KVM_ENOSYS } });
    assert.deepEqual(records.map((r) => [r.vcpu, r.source, r.status]), [[2, 'hypercall', 0], [2, 'hypercall', -KVM_EINVAL]]);
    assert.equal(cvm.orchestrator.metrics.rejected['invalid-attributes'], 1);
  });

  it('converts on a memory fault and runs on; a fault it cannot convert stops the vCPU', async () => {
    const cvm = memory();
    const requests = new GuestRequests(cvm.orchestrator);
    const EFAULT = 14;
    // The access was shared (flags 0): the page becomes shared.
    assert.deepEqual(await requests.handle(vcpu, decodeExit(memoryFault(BigInt(RAM + 0x5000), 0x1000n, 0n), -1, EFAULT)), {});
    assert.deepEqual(sharedRuns(cvm.block('ram')), [{ offset: 0x5000, size: 0x1000 }]);
    // Private access: back to private.
    assert.deepEqual(await requests.handle(vcpu, decodeExit(memoryFault(BigInt(RAM + 0x5000), 0x1000n, 8n), -1, EFAULT)), {});
    assert.deepEqual(sharedRuns(cvm.block('ram')), []);
    const unknownFlag = await requests.handle(vcpu, decodeExit(memoryFault(BigInt(RAM), 0x1000n, 1n), -1, EFAULT));
    assert.match(String(unknownFlag.stop), /unknown flag bits 0x1/);
    const outside = await requests.handle(vcpu, decodeExit(memoryFault(0x1000n, 0x1000n, 8n), -1, EFAULT));
    assert.match(String(outside.stop), /could not be converted/);
  });

  it('hands every other exit to the fallback', async () => {
    const cvm = memory();
    const seen: string[] = [];
    const requests = new GuestRequests(cvm.orchestrator, { fallback: (_v, exit) => (seen.push(exit.kind), { stop: 'fallback' }) });
    assert.deepEqual(await requests.handle(vcpu, { kind: 'hlt' }), { stop: 'fallback' });
    assert.deepEqual(seen, ['hlt']);
    assert.deepEqual(await new GuestRequests(cvm.orchestrator).handle(vcpu, { kind: 'shutdown' }), { stop: 'unhandled shutdown exit' });
  });
});
