import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemslotError } from '../core/errors.js';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../sys/kvm-uapi.js';
import { checkMemslotRequest, type Memslot, type MemslotRequest } from './memslot-rules.js';

const vm = {};
const otherVm = {};
const gmem = { size: 8 << 20, vm };
const MiB = 1 << 20;

function req(fields: Partial<MemslotRequest>): MemslotRequest {
  return { slot: 1, flags: 0, gpa: 0x1_0000_0000n, size: 2 * MiB, userspaceAddr: 0x7f00_0000_0000n, guestMemfd: undefined, guestMemfdOffset: 0, ...fields };
}

function slots(...list: MemslotRequest[]): Map<number, Memslot> {
  return new Map(list.map((s) => [s.slot, s]));
}

function refused(existing: Map<number, Memslot>, request: MemslotRequest, errno: string, rule: RegExp): void {
  assert.throws(() => checkMemslotRequest(existing, request, vm, 32764), (e: unknown) => e instanceof MemslotError && e.errnoName === errno && rule.test(e.message));
}

describe('memslot rules', () => {
  it('accepts a create, a move, a flags change, a no-op and a delete', () => {
    const s1 = req({});
    assert.equal(checkMemslotRequest(new Map(), s1, vm, 32764), 'create');
    assert.equal(checkMemslotRequest(slots(s1), req({ gpa: 0x2_0000_0000n }), vm, 32764), 'move');
    assert.equal(checkMemslotRequest(slots(s1), req({ flags: KVM_MEM_LOG_DIRTY_PAGES }), vm, 32764), 'flags');
    assert.equal(checkMemslotRequest(slots(s1), req({}), vm, 32764), 'none');
    assert.equal(checkMemslotRequest(slots(s1), req({ size: 0 }), vm, 32764), 'delete');
  });

  it('refuses what the kernel refuses, with its errno', () => {
    const s1 = req({});
    refused(new Map(), req({ flags: 1 << 5 }), 'EINVAL', /unknown flags/);
    refused(new Map(), req({ size: 4097 }), 'EINVAL', /multiple of 4 KiB/);
    refused(new Map(), req({ gpa: 0x1000_0800n }), 'EINVAL', /not 4 KiB aligned/);
    refused(new Map(), req({ userspaceAddr: 0x7f00_0000_0100n }), 'EINVAL', /userspace address/);
    refused(new Map(), req({ userspaceAddr: 0xffff_8000_0000_0000n }), 'EINVAL', /not a user address range/);
    refused(new Map(), req({ slot: 32764 }), 'EINVAL', /below the limit 32764/);
    refused(new Map(), req({ slot: 1 << 16 }), 'EINVAL', /address space 1/);
    refused(new Map(), req({ size: 0 }), 'EINVAL', /does not exist/);
    refused(slots(s1), req({ slot: 2, gpa: 0x1_0010_0000n }), 'EEXIST', /overlaps slot 1/);
    refused(slots(s1), req({ size: 4 * MiB }), 'EINVAL', /cannot change its size/);
    refused(slots(s1), req({ userspaceAddr: 0x7f00_1000_0000n }), 'EINVAL', /userspace address/);
    refused(slots(s1), req({ flags: KVM_MEM_READONLY }), 'EINVAL', /KVM_MEM_READONLY/);
  });

  it('keeps guest_memfd slots to the guest_memfd rules', () => {
    const g = req({ flags: KVM_MEM_GUEST_MEMFD, guestMemfd: gmem, userspaceAddr: 0n });
    assert.equal(checkMemslotRequest(new Map(), g, vm, 32764), 'create');
    refused(new Map(), req({ flags: KVM_MEM_GUEST_MEMFD }), 'EINVAL', /without a guest_memfd/);
    refused(new Map(), req({ flags: KVM_MEM_GUEST_MEMFD, guestMemfd: { size: 8 * MiB, vm: otherVm } }), 'EINVAL', /another VM/);
    refused(new Map(), req({ flags: KVM_MEM_GUEST_MEMFD | KVM_MEM_READONLY, guestMemfd: gmem }), 'EINVAL', /read-only/);
    refused(new Map(), req({ flags: KVM_MEM_GUEST_MEMFD, guestMemfd: gmem, guestMemfdOffset: 7 * MiB }), 'EINVAL', /ends beyond the file/);
    refused(new Map(), req({ flags: KVM_MEM_GUEST_MEMFD, guestMemfd: gmem, guestMemfdOffset: 512 }), 'EINVAL', /offset .* not 4 KiB aligned/);
    refused(slots(g), g, 'EINVAL', /cannot be changed, only deleted/);
    refused(slots(g), req({ slot: 2, gpa: 0x2_0000_0000n, flags: KVM_MEM_GUEST_MEMFD, guestMemfd: gmem, guestMemfdOffset: MiB }), 'EINVAL', /already bound by slot 1/);
    assert.equal(checkMemslotRequest(slots(g), req({ slot: 2, gpa: 0x2_0000_0000n, flags: KVM_MEM_GUEST_MEMFD, guestMemfd: gmem, guestMemfdOffset: 2 * MiB }), vm, 32764), 'create');
    assert.equal(checkMemslotRequest(slots(g), req({ size: 0, flags: KVM_MEM_GUEST_MEMFD }), vm, 32764), 'delete');
  });
});
