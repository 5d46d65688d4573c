/**
 * Private guest memory in a guest_memfd (KVM_CREATE_GUEST_MEMFD). 4 KiB pages
 * only (the kernel has no huge guest_memfd pages yet). Allocation is
 * fallocate(KEEP_SIZE), discard is PUNCH_HOLE|KEEP_SIZE. Host access through
 * mmap needs the MMAP flag, and INIT_SHARED for the host to touch the memory
 * (without it the pages are private and a host access is SIGBUS), so the
 * store is mappable only with both.
 *
 * The kernel keeps no per-file count (st_blocks stays 0); its system-wide
 * page-cache count moves with every page (see test/support/kernel-meter.ts).
 */
import { CapabilityError, InvalidArgumentError } from '../core/errors.js';
import { hex, toSafeByteCount, type ByteCount } from '../core/units.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, HOST_PAGE_BYTES, MAP_SHARED, PROT_NONE, PROT_READ, PROT_WRITE, fallocate, type CallContext } from '../sys/libc.js';
import { Mapping } from '../sys/mapping.js';
import type { GuestMemfd, KvmVm } from '../sys/kvm.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_CAP_GUEST_MEMFD, KVM_CAP_GUEST_MEMFD_FLAGS } from '../sys/kvm-uapi.js';
import { BaseBackingStore, type HostMapping } from './backing-store.js';

/** Options for {@link GuestMemfdStore.create}. */
export interface GuestMemfdStoreOptions {
  /** Name in errors (also the guest_memfd's name). */
  readonly name: string;
  /** Size in bytes, a multiple of 4 KiB. */
  readonly size: ByteCount;
  /** GUEST_MEMFD_FLAG_MMAP: the file can be mmapped. */
  readonly mmap?: boolean;
  /** GUEST_MEMFD_FLAG_INIT_SHARED: memory starts shared, so the host may touch it. */
  readonly initShared?: boolean;
}

/** A guest_memfd holding private guest memory. */
export class GuestMemfdStore extends BaseBackingStore {
  /** Always `guest_memfd`. */
  readonly kind = 'guest_memfd' as const;
  readonly mappable: boolean;
  /** The guest_memfd (for memslots). */
  readonly guestMemfd: GuestMemfd;
  private mapping: Mapping | undefined;
  /** A PROT_NONE mapping, never touched, for mincore (MMAP files only). */
  private residencyView: Mapping | undefined;
  /** Error context, built once (a failing call adds its range). */
  private readonly context: CallContext;

  private constructor(name: string, size: number, guestMemfd: GuestMemfd) {
    super(name, size, HOST_PAGE_BYTES, HOST_PAGE_BYTES, 'base');
    this.guestMemfd = guestMemfd;
    this.context = { target: guestMemfd.fd.toString() };
    this.mappable = (guestMemfd.flags & GUEST_MEMFD_FLAG_MMAP) !== 0 && (guestMemfd.flags & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0;
  }

  /**
   * Creates the guest_memfd on `vm`.
   *
   * @throws CapabilityError when the VM has no guest_memfd or not the flags
   *         asked for; InvalidArgumentError for a bad size; SystemCallError.
   */
  static create(vm: KvmVm, options: GuestMemfdStoreOptions): GuestMemfdStore {
    const size = toSafeByteCount(options.size, `guest_memfd store '${options.name}': size`);
    if (size === 0 || size % HOST_PAGE_BYTES !== 0) {
      throw new InvalidArgumentError(`guest_memfd store '${options.name}': size ${hex(size)} must be a non-zero multiple of ${hex(HOST_PAGE_BYTES)}`);
    }
    if (vm.checkExtension(KVM_CAP_GUEST_MEMFD) === 0) throw new CapabilityError('KVM_CAP_GUEST_MEMFD', 'this VM has no guest_memfd');
    const flags = (options.mmap ? GUEST_MEMFD_FLAG_MMAP : 0) | (options.initShared ? GUEST_MEMFD_FLAG_INIT_SHARED : 0);
    const supported = vm.checkExtension(KVM_CAP_GUEST_MEMFD_FLAGS);
    if ((flags & ~supported) !== 0) {
      throw new CapabilityError('KVM_CAP_GUEST_MEMFD_FLAGS', `flags ${hex(flags)} asked for, this VM supports ${hex(supported)}`);
    }
    return new GuestMemfdStore(options.name, size, vm.createGuestMemfd(size, flags, options.name));
  }

  protected kernelAllocate(offset: number, size: number): void {
    fallocate(this.guestMemfd.fd.fd, FALLOC_FL_KEEP_SIZE, offset, size, this.context);
  }

  protected kernelPunch(offset: number, size: number): void {
    fallocate(this.guestMemfd.fd.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, size, this.context);
  }

  protected hostMapping(): HostMapping {
    this.mapping ??= Mapping.map(this.size, PROT_READ | PROT_WRITE, MAP_SHARED, this.guestMemfd.fd.fd, 0, this.guestMemfd.fd.toString());
    const m = this.mapping;
    return { start: m.start, length: m.length, bytes: m.bytes };
  }

  protected kernelResidency(offset: number, size: number): Uint8Array | undefined {
    if ((this.guestMemfd.flags & GUEST_MEMFD_FLAG_MMAP) === 0) return undefined;
    this.residencyView ??= Mapping.map(this.size, PROT_NONE, MAP_SHARED, this.guestMemfd.fd.fd, 0, `${this.guestMemfd.fd.toString()} (residency)`);
    // Pages the guest (or host) faulted in are up to date; mincore sees exactly those.
    const vec = this.residencyView.residency(offset, size);
    for (let i = 0; i < vec.length; i++) vec[i] = (vec[i] ?? 0) & 1;
    return vec;
  }

  protected release(): void {
    this.residencyView?.close();
    this.mapping?.close();
    this.guestMemfd.close();
  }
}
