/**
 * Conversion requests as they arrive: a MAP_GPA_RANGE hypercall (or the same
 * three arguments through the doorbell device), a KVM_EXIT_MEMORY_FAULT, or
 * a direct call. Each is decoded into one {@link ConversionRequest} or
 * refused with a {@link ConversionError} carrying what the guest is told,
 * before anything else happens.
 *
 * What a guest sends is 64-bit and hostile until checked: the checks here
 * use bigints, so an address near 2^64 or a page count that overflows is
 * refused, never rounded.
 */
import { ConversionError, InvalidArgumentError, type ConversionFailure } from '../core/errors.js';
import type { PageState } from '../core/ram-block-attributes.js';
import { GiB, MAX_PHYS_ADDR, MiB, hex, toByteCount, type ByteCount } from '../core/units.js';

// KVM's hypercall error numbers (include/uapi/linux/kvm_para.h); the guest sees them negated.
/** The guest may not make the call (not at CPL0). */
export const KVM_EPERM = 1;
/** Too big: guestmem's answer when a conversion would need more memslots than allowed. */
export const KVM_E2BIG = 7;
/** The host could not carry the request out (a listener's veto, a kernel error). */
export const KVM_EFAULT = 14;
/** The request is invalid (arguments, alignment, outside guest RAM). */
export const KVM_EINVAL = 22;
/** No such hypercall. */
export const KVM_ENOSYS = 1000;

// MAP_GPA_RANGE attribute bits (arch/x86/include/uapi/asm/kvm_para.h).
/** The guest uses 2 MiB pages for the range (it must be 2 MiB aligned). */
export const MAP_GPA_RANGE_PAGE_SZ_2M = 1n << 0n;
/** The guest uses 1 GiB pages for the range (it must be 1 GiB aligned). */
export const MAP_GPA_RANGE_PAGE_SZ_1G = 1n << 1n;
/** Encrypted: make the range private (clear: shared). */
export const MAP_GPA_RANGE_ENCRYPTED = 1n << 4n;
const MAP_GPA_RANGE_KNOWN = MAP_GPA_RANGE_PAGE_SZ_2M | MAP_GPA_RANGE_PAGE_SZ_1G | MAP_GPA_RANGE_ENCRYPTED;

/** KVM_MEMORY_EXIT_FLAG_PRIVATE: the faulting access was private. */
export const MEMORY_FAULT_FLAG_PRIVATE = 1n << 3n;

const PAGE = 4096;
const U64_LIMIT = 1n << 64n;

/** Where a request came from. */
export type ConversionSource = 'hypercall' | 'doorbell' | 'memory-fault' | 'api' | 'trace';

/** A decoded conversion: a 4 KiB-aligned guest physical range and its target state. */
export interface ConversionRequest {
  /** First guest physical address. */
  readonly gpa: number;
  /** Bytes, a non-zero multiple of 4 KiB. */
  readonly size: number;
  /** The state the range is to be in. */
  readonly to: PageState;
  /** Where the request came from. */
  readonly source: ConversionSource;
  /**
   * The page size the guest declared for the range (MAP_GPA_RANGE's size
   * bits): 4 KiB, 2 MiB or 1 GiB. The range is aligned to it.
   */
  readonly pageSize: number;
  /** The vCPU that asked, for traces and metrics. */
  readonly vcpu?: number;
}

/** What the guest is told for a failure (a negative KVM error). */
export function guestStatusOf(reason: ConversionFailure): number {
  switch (reason) {
    case 'memslot-limit':
      return -KVM_E2BIG;
    case 'listener-veto':
    case 'kernel-error':
    case 'stopped':
      return -KVM_EFAULT;
    default:
      return -KVM_EINVAL;
  }
}

/** A ConversionError with the guest status its reason implies. */
export function conversionError(reason: ConversionFailure, message: string, cause?: unknown): ConversionError {
  return new ConversionError(reason, guestStatusOf(reason), message, cause === undefined ? undefined : { cause });
}

/** The raw MAP_GPA_RANGE arguments (a hypercall's args[0..2], or the doorbell's registers). */
export interface MapGpaRangeArgs {
  /** args[0]: the first guest physical address. */
  readonly gpa: bigint;
  /** In 4 KiB pages. */
  readonly npages: bigint;
  /** args[2]: MAP_GPA_RANGE_* bits. */
  readonly attributes: bigint;
}

/**
 * Decodes MAP_GPA_RANGE: ENCRYPTED (bit 4) asks for private, else shared;
 * at most one page-size bit (bit 0: 2 MiB, bit 1: 1 GiB). Refused, in this
 * order: unknown attribute bits or both size bits; npages 0; gpa not 4 KiB
 * aligned; a range that wraps around 2^64; a range beyond the physical
 * address space; a range not aligned to the declared page size.
 *
 * @throws ConversionError (status -KVM_EINVAL).
 */
export function decodeMapGpaRange(args: MapGpaRangeArgs, source: 'hypercall' | 'doorbell' | 'trace', vcpu?: number): ConversionRequest {
  const gpa = BigInt.asUintN(64, args.gpa);
  const npages = BigInt.asUintN(64, args.npages);
  const attributes = BigInt.asUintN(64, args.attributes);
  const what = `MAP_GPA_RANGE gpa ${hex(gpa)} npages ${hex(npages)} attributes ${hex(attributes)}`;
  if ((attributes & ~MAP_GPA_RANGE_KNOWN) !== 0n) {
    throw conversionError('invalid-attributes', `${what}: unknown attribute bits ${hex(attributes & ~MAP_GPA_RANGE_KNOWN)}`);
  }
  const sizeBits = attributes & (MAP_GPA_RANGE_PAGE_SZ_2M | MAP_GPA_RANGE_PAGE_SZ_1G);
  if (sizeBits === (MAP_GPA_RANGE_PAGE_SZ_2M | MAP_GPA_RANGE_PAGE_SZ_1G)) {
    throw conversionError('invalid-attributes', `${what}: both the 2 MiB and the 1 GiB page-size bits are set`);
  }
  const pageSize = sizeBits === MAP_GPA_RANGE_PAGE_SZ_2M ? 2 * MiB : sizeBits === MAP_GPA_RANGE_PAGE_SZ_1G ? GiB : PAGE;
  const range = checkGuestRange(gpa, npages * BigInt(PAGE), what);
  if (range.gpa % pageSize !== 0 || range.size % pageSize !== 0) {
    throw conversionError('granularity', `${what}: the range is not aligned to the declared ${hex(pageSize)} page size`);
  }
  return { ...range, to: (attributes & MAP_GPA_RANGE_ENCRYPTED) !== 0n ? 'private' : 'shared', source, pageSize, ...(vcpu === undefined ? {} : { vcpu }) };
}

/** A KVM_EXIT_MEMORY_FAULT's fields. */
export interface MemoryFaultArgs {
  /** First guest physical address of the access. */
  readonly gpa: bigint;
  /** Bytes. */
  readonly size: bigint;
  /** KVM_MEMORY_EXIT_FLAG_* bits. */
  readonly flags: bigint;
}

/**
 * Decodes an implicit conversion: the access was private (flag bit 3) or
 * shared, and the page becomes what the access wanted. Any other flag bit
 * is refused, as QEMU does.
 *
 * @throws ConversionError (status -KVM_EINVAL).
 */
export function decodeMemoryFault(args: MemoryFaultArgs, vcpu?: number): ConversionRequest {
  const flags = BigInt.asUintN(64, args.flags);
  const what = `KVM_EXIT_MEMORY_FAULT gpa ${hex(args.gpa)} size ${hex(args.size)} flags ${hex(flags)}`;
  if ((flags & ~MEMORY_FAULT_FLAG_PRIVATE) !== 0n) {
    throw conversionError('invalid-flags', `${what}: unknown flag bits ${hex(flags & ~MEMORY_FAULT_FLAG_PRIVATE)}`);
  }
  const range = checkGuestRange(BigInt.asUintN(64, args.gpa), BigInt.asUintN(64, args.size), what);
  return { ...range, to: (flags & MEMORY_FAULT_FLAG_PRIVATE) !== 0n ? 'private' : 'shared', source: 'memory-fault', pageSize: PAGE, ...(vcpu === undefined ? {} : { vcpu }) };
}

/**
 * A request made through the API (or replayed from a trace).
 *
 * @throws ConversionError for a range a guest could not have asked for
 *         either; InvalidArgumentError for a value that is not a byte count
 *         or a target that is not a page state.
 */
export function apiRequest(gpa: ByteCount, size: ByteCount, to: PageState, source: 'api' | 'trace' = 'api'): ConversionRequest {
  const target: unknown = to;
  if (target !== 'private' && target !== 'shared') {
    throw new InvalidArgumentError(`conversion target must be 'private' or 'shared', got ${JSON.stringify(to)}`);
  }
  const g = toByteCount(gpa, 'conversion gpa');
  const s = toByteCount(size, 'conversion size');
  // The common case in plain numbers; bigints only where a value is too large for them.
  if (g !== undefined && s !== undefined && s !== 0 && g % PAGE === 0 && s % PAGE === 0 && g + s <= MAX_PHYS_ADDR) {
    return { gpa: g, size: s, to, source, pageSize: PAGE };
  }
  const big = (v: ByteCount, n: number | undefined): bigint => (n !== undefined ? BigInt(n) : BigInt(v));
  const range = checkGuestRange(big(gpa, g), big(size, s), `conversion of ${hex(gpa)}+${hex(size)} to ${to}`);
  return { ...range, to, source, pageSize: PAGE };
}

/** The checks every source shares, on 64-bit values. */
function checkGuestRange(gpa: bigint, size: bigint, what: string): { gpa: number; size: number } {
  if (size === 0n) throw conversionError('zero-size', `${what}: the range is empty`);
  if (gpa % BigInt(PAGE) !== 0n || size % BigInt(PAGE) !== 0n) {
    throw conversionError('unaligned', `${what}: not 4 KiB aligned`);
  }
  if (gpa + size > U64_LIMIT) throw conversionError('wrap-around', `${what}: the range wraps around 2^64`);
  if (gpa + size > BigInt(MAX_PHYS_ADDR)) {
    throw conversionError('outside-ram', `${what}: the range ends beyond the physical address space (${hex(MAX_PHYS_ADDR)})`);
  }
  return { gpa: Number(gpa), size: Number(size) };
}
