/**
 * The kernel's memslot rules (virt/kvm/kvm_main.c __kvm_set_memory_region,
 * virt/kvm/guest_memfd.c kvm_gmem_bind), checked before the ioctl so that a
 * refused change is a MemslotError naming the rule, with the errno the kernel
 * would have returned. Pure: the current slots and the request in, the
 * verdict out.
 */
import { MemslotError } from '../core/errors.js';
import { hex } from '../core/units.js';
import { KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY } from '../sys/kvm-uapi.js';

const PAGE = 4096;
const VALID_FLAGS = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD;
/** x86-64 user address space end (TASK_SIZE_MAX with 4-level paging). */
const USER_ADDRESS_END = 0x7fff_ffff_f000n;

/** A memslot as KVM holds it. */
export interface Memslot {
  /** Slot id. */
  readonly slot: number;
  /** KVM_MEM_* flags. */
  readonly flags: number;
  /** Guest physical address of the first byte. */
  readonly gpa: bigint;
  /** Bytes. */
  readonly size: number;
  /** Host address behind the slot (0 for a guest_memfd-only slot). */
  readonly userspaceAddr: bigint;
  /** For a guest_memfd slot: which file (an identity) and where in it. */
  readonly guestMemfd: GuestMemfdRef | undefined;
  /** Where in the guest_memfd the slot starts. */
  readonly guestMemfdOffset: number;
}

/** What the rules need to know of a guest_memfd (a sys GuestMemfd is one). */
export interface GuestMemfdRef {
  readonly size: number;
  /** The VM the file was created on (an identity, compared with ===). */
  readonly vm: object;
}

/**
 * A request of KVM_SET_USER_MEMORY_REGION2: the slot as it is to be (size
 * 0 deletes it). An accepted request is the slot KVM then holds.
 */
export type MemslotRequest = Memslot;

/** What the request does if it is accepted. */
export type MemslotChange = 'create' | 'delete' | 'move' | 'flags' | 'none';

/**
 * Checks a request against the slots the VM has (`slots`, by slot id) and
 * returns the change it makes.
 *
 * @throws MemslotError with the kernel's errno for the first rule broken.
 */
export function checkMemslotRequest(slots: ReadonlyMap<number, Memslot>, request: MemslotRequest, vm: object, maxSlots: number): MemslotChange {
  const { slot, flags, gpa, size } = request;
  const fail = (errno: string, rule: string): never => {
    throw new MemslotError(slot, errno, rule);
  };
  if ((flags & ~VALID_FLAGS) !== 0) fail('EINVAL', `unknown flags ${hex(flags & ~VALID_FLAGS)}`);
  const gmem = (flags & KVM_MEM_GUEST_MEMFD) !== 0;
  if (gmem && (flags & (KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) !== 0) {
    fail('EINVAL', 'a guest_memfd slot cannot log dirty pages or be read-only');
  }
  const id = slot & 0xffff;
  const asId = slot >>> 16;
  if (asId !== 0) fail('EINVAL', `address space ${asId}: guestmem uses address space 0 only`);
  if (!Number.isInteger(id) || id < 0 || id >= maxSlots) fail('EINVAL', `slot id ${id} is not below the limit ${maxSlots} (KVM_CAP_NR_MEMSLOTS)`);
  if (!Number.isSafeInteger(size) || size < 0 || size % PAGE !== 0) fail('EINVAL', `size ${hex(size)} is not a multiple of 4 KiB`);
  if (gpa % BigInt(PAGE) !== 0n) fail('EINVAL', `guest physical address ${hex(gpa)} is not 4 KiB aligned`);
  if (request.userspaceAddr % BigInt(PAGE) !== 0n) fail('EINVAL', `userspace address ${hex(request.userspaceAddr)} is not 4 KiB aligned`);
  if (size > 0 && request.userspaceAddr + BigInt(size) > USER_ADDRESS_END) {
    fail('EINVAL', `userspace range ${hex(request.userspaceAddr)}+${hex(size)} is not a user address range`);
  }
  if (gpa + BigInt(size) > 1n << 52n) fail('EINVAL', `guest physical range ${hex(gpa)}+${hex(size)} ends beyond 2^52`);

  const old = slots.get(slot);
  if (size === 0) {
    if (!old) fail('EINVAL', 'deleting a slot that does not exist');
    return 'delete';
  }
  if (gmem) {
    const file = request.guestMemfd;
    if (!file) return fail('EINVAL', 'KVM_MEM_GUEST_MEMFD without a guest_memfd');
    if (file.vm !== vm) fail('EINVAL', 'the guest_memfd belongs to another VM');
    const off = request.guestMemfdOffset;
    if (!Number.isSafeInteger(off) || off < 0 || off % PAGE !== 0) fail('EINVAL', `guest_memfd offset ${hex(off)} is not 4 KiB aligned`);
    if (off + size > file.size) fail('EINVAL', `guest_memfd range ${hex(off)}+${hex(size)} ends beyond the file's ${hex(file.size)}`);
  }
  if (old) {
    // An existing slot: guest_memfd slots are immutable; others may move or change flags only.
    if ((old.flags & KVM_MEM_GUEST_MEMFD) !== 0 || gmem) fail('EINVAL', 'a guest_memfd slot cannot be changed, only deleted and created again');
    if (request.userspaceAddr !== old.userspaceAddr) fail('EINVAL', 'an existing slot cannot change its userspace address');
    if (size !== old.size) fail('EINVAL', 'an existing slot cannot change its size');
    if (((flags ^ old.flags) & KVM_MEM_READONLY) !== 0) fail('EINVAL', 'an existing slot cannot change KVM_MEM_READONLY');
  }
  const change: MemslotChange = !old ? 'create' : gpa !== old.gpa ? 'move' : flags !== old.flags ? 'flags' : 'none';
  if (change === 'create' || change === 'move') {
    const end = gpa + BigInt(size);
    for (const other of slots.values()) {
      if (other.slot === slot) continue;
      if (gpa < other.gpa + BigInt(other.size) && other.gpa < end) {
        fail('EEXIST', `guest physical range ${hex(gpa)}+${hex(size)} overlaps slot ${other.slot} at ${hex(other.gpa)}+${hex(other.size)}`);
      }
    }
  }
  if (change === 'create' && gmem) {
    const file = request.guestMemfd;
    const off = request.guestMemfdOffset;
    for (const other of slots.values()) {
      if (other.guestMemfd !== file || other.guestMemfd === undefined) continue;
      if (off < other.guestMemfdOffset + other.size && other.guestMemfdOffset < off + size) {
        fail('EINVAL', `guest_memfd range ${hex(off)}+${hex(size)} is already bound by slot ${other.slot}`);
      }
    }
  }
  return change;
}
