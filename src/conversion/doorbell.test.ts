/**
 * The doorbell's registers, and a hostile guest writing them in any order,
 * at any width: every access is refused or acted on exactly, and the
 * conversions it asks for end as the same requests made directly would.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { propertyParameters } from '../../test/support/property.js';
import { sharedRuns } from '../../test/support/cvm-state.js';
import { ConversionError } from '../core/errors.js';
import { MiB } from '../core/units.js';
import type { MmioExit } from '../kvm/exits.js';
import { createSimulatedCvmMemory, type CvmMemory } from './cvm.js';
import { ConversionDoorbell, DOORBELL, DOORBELL_ID } from './doorbell.js';
import { GuestRequests, type VcpuRef } from './guest-requests.js';
import { decodeMapGpaRange, KVM_EINVAL } from './request.js';

const BASE = 0xd000_2000n;
const RAM = 0x4000_0000;

function mmio(offset: number, isWrite: boolean, length: number, value = 0n): MmioExit {
  const data = new Uint8Array(Math.min(length, 8));
  for (let i = 0; i < data.length; i++) data[i] = Number((value >> BigInt(8 * i)) & 0xffn);
  return { kind: 'mmio', gpa: BASE + BigInt(offset), isWrite, length, data };
}

function memory(): CvmMemory {
  return createSimulatedCvmMemory({
    ram: [{ name: 'low', gpa: RAM, size: 4 * MiB }, { name: 'high', gpa: RAM + 8 * MiB, size: 4 * MiB }],
    holes: [{ name: 'mmio', gpa: RAM + 4 * MiB, size: 4 * MiB }],
  });
}

/** A vCPU as the handler sees it: only its id is used. */
const vcpu = (id: number): VcpuRef => ({ id });

describe('conversion doorbell', () => {
  it('reads back what was written, identifies itself, and converts on COMMAND', async () => {
    const cvm = memory();
    const doorbell = new ConversionDoorbell(BASE);
    const requests = new GuestRequests(cvm.orchestrator, { doorbell });
    const v = vcpu(0);
    await requests.handle(v, mmio(DOORBELL.gpa, true, 8, BigInt(RAM)));
    await requests.handle(v, mmio(DOORBELL.npages, true, 8, 2n));
    await requests.handle(v, mmio(DOORBELL.attributes, true, 8, 0n));
    assert.deepEqual(await requests.handle(v, mmio(DOORBELL.gpa, false, 8)), { response: { data: BigInt(RAM) } });
    assert.deepEqual(await requests.handle(v, mmio(DOORBELL.id, false, 8)), { response: { data: DOORBELL_ID } });
    await requests.handle(v, mmio(DOORBELL.command, true, 8, 1n));
    assert.deepEqual(await requests.handle(v, mmio(DOORBELL.status, false, 8)), { response: { data: 0n } });
    assert.deepEqual(sharedRuns(cvm.block('low')), [{ offset: 0, size: 0x2000 }]);
    // Another vCPU has its own registers.
    assert.deepEqual(await requests.handle(vcpu(1), mmio(DOORBELL.gpa, false, 8)), { response: { data: 0n } });
  });

  it('refuses odd accesses without touching the arguments', async () => {
    const cvm = memory();
    const doorbell = new ConversionDoorbell(BASE);
    const requests = new GuestRequests(cvm.orchestrator, { doorbell });
    const v = vcpu(0);
    await requests.handle(v, mmio(DOORBELL.gpa, true, 8, BigInt(RAM)));
    await requests.handle(v, mmio(DOORBELL.npages, true, 8, 1n));
    await requests.handle(v, mmio(DOORBELL.gpa, true, 4, 0x1234n));
    await requests.handle(v, mmio(DOORBELL.gpa + 1, true, 1, 0xffn));
    await requests.handle(v, mmio(DOORBELL.status, true, 8, 0n));
    await requests.handle(v, mmio(DOORBELL.id, true, 8, 0n));
    await requests.handle(v, mmio(DOORBELL.command, true, 8, 2n));
    assert.equal(doorbell.badAccesses, 5);
    assert.equal(doorbell.status(0), -KVM_EINVAL);
    assert.deepEqual(await requests.handle(v, mmio(DOORBELL.gpa, false, 8)), { response: { data: BigInt(RAM) } });
    await requests.handle(v, mmio(DOORBELL.command, true, 8, 1n));
    assert.equal(doorbell.status(0), 0);
    assert.deepEqual(sharedRuns(cvm.block('low')), [{ offset: 0, size: 0x1000 }]);
  });

  it('answers a refused conversion with its status; the guest runs on', async () => {
    const cvm = memory();
    const doorbell = new ConversionDoorbell(BASE);
    const requests = new GuestRequests(cvm.orchestrator, { doorbell });
    const v = vcpu(0);
    await requests.handle(v, mmio(DOORBELL.gpa, true, 8, BigInt(RAM + 4 * MiB)));
    await requests.handle(v, mmio(DOORBELL.npages, true, 8, 1n));
    await requests.handle(v, mmio(DOORBELL.attributes, true, 8, 0x10n));
    assert.deepEqual(await requests.handle(v, mmio(DOORBELL.command, true, 8, 1n)), {});
    assert.equal(doorbell.status(0), -KVM_EINVAL);
    assert.equal(cvm.orchestrator.metrics.rejected['outside-ram'], 1);
    await requests.handle(v, mmio(DOORBELL.attributes, true, 8, 0x40n));
    await requests.handle(v, mmio(DOORBELL.command, true, 8, 1n));
    assert.equal(cvm.orchestrator.metrics.rejected['invalid-attributes'], 1);
  });

  it('hostile register traffic from several vCPUs ends as the same requests made directly', async () => {
    const offsets = fc.oneof(fc.constantFrom(0, 8, 0x10, 0x18, 0x20, 0x28), fc.integer({ min: 0, max: 0x40 }));
    const interesting = fc.oneof(
      fc.constantFrom(0n, 1n, 2n, 0x10n, 0x11n, 0x12n, 0x13n, 0x20n, 512n, BigInt(RAM), BigInt(RAM + 4 * MiB - 4096), BigInt(RAM + 8 * MiB), (1n << 64n) - 4096n, 1n << 63n),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.integer({ min: 0, max: 4095 }).map((p) => BigInt(RAM + p * 4096)),
      fc.integer({ min: 1, max: 1024 }).map(BigInt),
    );
    const access = fc.record({
      vcpu: fc.integer({ min: 0, max: 2 }),
      offset: offsets,
      isWrite: fc.boolean(),
      length: fc.constantFrom(1, 2, 4, 8, 8, 8),
      value: interesting,
    });
    await fc.assert(fc.asyncProperty(fc.array(access, { maxLength: 120 }), async (accesses) => {
      const cvm = memory();
      const direct = memory();
      const doorbell = new ConversionDoorbell(BASE);
      const requests = new GuestRequests(cvm.orchestrator, { doorbell });
      const regs = new Map<number, { gpa: bigint; npages: bigint; attributes: bigint }>();
      for (const a of accesses) {
        const r = regs.get(a.vcpu) ?? { gpa: 0n, npages: 0n, attributes: 0n };
        regs.set(a.vcpu, r);
        await requests.handle(vcpu(a.vcpu), mmio(a.offset, a.isWrite, a.length, a.value));
        if (!a.isWrite || a.length !== 8) continue;
        if (a.offset === DOORBELL.gpa) r.gpa = a.value;
        if (a.offset === DOORBELL.npages) r.npages = a.value;
        if (a.offset === DOORBELL.attributes) r.attributes = a.value;
        if (a.offset === DOORBELL.command && a.value === 1n) {
          let status = 0;
          try {
            await direct.orchestrator.convert(decodeMapGpaRange(r, 'doorbell'));
          } catch (error) {
            assert.ok(error instanceof ConversionError, String(error));
            status = error.guestStatus;
          }
          assert.equal(doorbell.status(a.vcpu), status);
        }
      }
      for (const name of ['low', 'high']) assert.deepEqual(sharedRuns(cvm.block(name)), sharedRuns(direct.block(name)));
    }), propertyParameters(200));
  });
});
