/**
 * Typed errors. Every failure guestmem reports is a {@link GuestmemError} with a
 * stable string `code`; match on `code`, not on the message.
 *
 * An operation that throws one of these has changed nothing, unless the error
 * says otherwise (see {@link ListenerVetoError}, whose operation was undone).
 */

/** Base class of every error guestmem throws. */
export class GuestmemError extends Error {
  /** Stable identifier of the failure kind, e.g. `ERR_INVALID_RANGE`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An argument has the wrong type or an impossible value (not a range problem). */
export class InvalidArgumentError extends GuestmemError {
  declare readonly code: 'ERR_INVALID_ARGUMENT';
  constructor(message: string) {
    super('ERR_INVALID_ARGUMENT', message);
  }
}

/** Why a byte range was rejected. */
export type InvalidRangeReason =
  | 'unaligned-offset'
  | 'unaligned-size'
  | 'zero-size'
  | 'wrap-around'
  | 'out-of-bounds';

/**
 * A byte range failed validation: misaligned, empty, wrapping, or outside the
 * object it addresses. Nothing was changed and nothing was notified.
 */
export class InvalidRangeError extends GuestmemError {
  declare readonly code: 'ERR_INVALID_RANGE';
  /** Offset as given (hex). */
  readonly offset: string;
  /** Size as given (hex). */
  /** Size as given (hex). */
  readonly size: string;
  /** The first rule the range broke. */
  readonly reason: InvalidRangeReason;

  constructor(what: string, offset: number | bigint, size: number | bigint, reason: InvalidRangeReason, detail: string) {
    const o = `0x${offset.toString(16)}`;
    const s = `0x${size.toString(16)}`;
    super('ERR_INVALID_RANGE', `${what}: invalid range: offset ${o} size ${s}: ${detail}`);
    this.offset = o;
    this.size = s;
    this.reason = reason;
  }
}

/**
 * A listener threw on a discard notification. Discards cannot be refused: the
 * operation went on, and this records what the listener failed to drop.
 */
export interface DiscardFailure {
  /** The listener's name. */
  readonly listener: string;
  /** Offset within the region of the discarded range. */
  readonly offset: number;
  /** Size of the discarded range in bytes. */
  readonly size: number;
  /** What it threw. */
  readonly error: unknown;
}

/**
 * A listener refused a populate notification, or refused to prepare a
 * discard. The operation that caused it was rolled back completely, or never
 * began: page states are as before, and every listener that had already been
 * told about the change was told to discard exactly that. The listener's own
 * error is the `cause`.
 */
export class ListenerVetoError extends GuestmemError {
  declare readonly code: 'ERR_LISTENER_VETO';
  /** Name of the listener that refused. */
  readonly listener: string;
  /** Offset (within the region, hex) of the section the listener refused. */
  readonly offset: string;
  /** Size (hex) of the section the listener refused. */
  readonly size: string;
  /** What the listener refused: a populate, or the preparation of a discard. */
  readonly action: 'populate' | 'discard';
  /** Rollback discards that threw in turn (normally none). */
  readonly discardFailures: readonly DiscardFailure[];

  constructor(listener: string, operation: string, offset: number, size: number, cause: unknown,
    discardFailures: readonly DiscardFailure[] = [], action: 'populate' | 'discard' = 'populate') {
    const o = `0x${offset.toString(16)}`;
    const s = `0x${size.toString(16)}`;
    const why = cause instanceof Error ? cause.message : String(cause);
    super(
      'ERR_LISTENER_VETO',
      action === 'populate'
        ? `listener '${listener}' vetoed populate of offset ${o} size ${s} during ${operation}; rolled back: ${why}`
        : `listener '${listener}' refused discard of offset ${o} size ${s} during ${operation}; nothing changed: ${why}`,
      { cause },
    );
    this.listener = listener;
    this.offset = o;
    this.size = s;
    this.action = action;
    this.discardFailures = discardFailures;
  }
}

/**
 * A mutating call was made while the discard manager was notifying listeners
 * or replaying (from inside a callback). Such calls are refused so that no
 * listener ever sees a change interleaved with another; nothing was changed.
 */
export class ReentrancyError extends GuestmemError {
  declare readonly code: 'ERR_REENTRANT_CALL';
  constructor(operation: string) {
    super(
      'ERR_REENTRANT_CALL',
      `${operation} refused: called from inside a RamDiscardManager callback`
        + ' (hint: defer the call until the notification or replay has returned)',
    );
  }
}

/** A listener or source was registered twice, or unregistered without being registered. */
export class RegistrationError extends GuestmemError {
  declare readonly code: 'ERR_REGISTRATION';
  constructor(message: string) {
    super('ERR_REGISTRATION', message);
  }
}

/** A trace line that names a known event but does not match its format. */
export class TraceParseError extends GuestmemError {
  declare readonly code: 'ERR_TRACE_PARSE';
  /** 1-based line number, or 0 when parsing a single line. */
  readonly line: number;
  /** The offending line. */
  readonly text: string;

  constructor(line: number, text: string, detail: string) {
    const shown = text.length > 120 ? `${text.slice(0, 117)}...` : text;
    super('ERR_TRACE_PARSE', `${line > 0 ? `line ${line}: ` : ''}${detail}: ${JSON.stringify(shown)}`);
    this.line = line;
    this.text = text;
  }
}

/**
 * A system call (or ioctl) failed. Carries what was called, the errno and its
 * name, and the range involved when there is one. The operation left
 * guestmem's own state as it was.
 */
export class SystemCallError extends GuestmemError {
  declare readonly code: 'ERR_SYSCALL';
  /** The libc function, e.g. `ioctl` or `fallocate`. */
  readonly call: string;
  /** For an ioctl, its name (`KVM_SET_USER_MEMORY_REGION2`); otherwise undefined. */
  readonly request: string | undefined;
  /** The errno value, e.g. 22. */
  readonly errno: number;
  /** The errno name, e.g. `EINVAL`. */
  readonly errnoName: string;
  /** The range the call was about, in hex, when there is one. */
  readonly range: { readonly offset: string; readonly size: string } | undefined;

  constructor(fields: {
    readonly call: string;
    readonly request?: string;
    readonly errno: number;
    readonly errnoName: string;
    readonly description: string;
    readonly target?: string;
    readonly range?: { readonly offset: number | bigint; readonly size: number | bigint };
    readonly hint?: string;
  }) {
    const what = fields.request ? `${fields.call}(${fields.request})` : fields.call;
    const on = fields.target ? ` on ${fields.target}` : '';
    const range = fields.range ? { offset: `0x${fields.range.offset.toString(16)}`, size: `0x${fields.range.size.toString(16)}` } : undefined;
    const where = range ? ` for offset ${range.offset} size ${range.size}` : '';
    const hint = fields.hint ? ` (hint: ${fields.hint})` : '';
    super('ERR_SYSCALL', `${what}${on} failed${where}: ${fields.errnoName} (${fields.description})${hint}`);
    this.call = fields.call;
    this.request = fields.request;
    this.errno = fields.errno;
    this.errnoName = fields.errnoName;
    this.range = range;
  }
}

/** Something the host does not offer (no /dev/kvm, a missing KVM capability, no huge pages). */
export class CapabilityError extends GuestmemError {
  declare readonly code: 'ERR_CAPABILITY';
  /** The capability, e.g. `KVM_CAP_GUEST_MEMFD` or `hugetlb 1 GiB pages`. */
  readonly capability: string;

  constructor(capability: string, detail: string) {
    super('ERR_CAPABILITY', `${capability} is not available: ${detail}`);
    this.capability = capability;
  }
}

/** A file descriptor, mapping or other owned resource was used after it was closed. */
export class ResourceClosedError extends GuestmemError {
  declare readonly code: 'ERR_CLOSED';
  constructor(what: string) {
    super('ERR_CLOSED', `${what} is closed`);
  }
}

/** An operation the object does not support in its configuration (e.g. mapping a guest_memfd created without MMAP). */
export class UnsupportedOperationError extends GuestmemError {
  declare readonly code: 'ERR_UNSUPPORTED';
  constructor(message: string) {
    super('ERR_UNSUPPORTED', message);
  }
}

/**
 * guestmem could not undo a failed step, so an object no longer matches the
 * kernel (for example a backing store whose partial allocation could not be
 * punched again). The object refuses further use; the message says what is
 * left over.
 */
export class InconsistentStateError extends GuestmemError {
  declare readonly code: 'ERR_INCONSISTENT';
  constructor(message: string, cause: unknown) {
    super('ERR_INCONSISTENT', message, { cause });
  }
}

/**
 * A memslot change the kernel would refuse, caught before the ioctl. `errnoName`
 * is what KVM_SET_USER_MEMORY_REGION2 returns for the same request.
 */
export class MemslotError extends GuestmemError {
  declare readonly code: 'ERR_MEMSLOT';
  readonly slot: number;
  /** The kernel's errno for this request: EINVAL, EEXIST, ... */
  readonly errnoName: string;

  constructor(slot: number, errnoName: string, rule: string) {
    super('ERR_MEMSLOT', `memslot ${slot}: ${rule} (the kernel would answer ${errnoName})`);
    this.slot = slot;
    this.errnoName = errnoName;
  }
}

/** A guest exited in a way its host-side protocol did not expect (a shutdown, an exit at an odd address...). */
export class UnexpectedExitError extends GuestmemError {
  declare readonly code: 'ERR_UNEXPECTED_EXIT';
  /** The exit, as decoded. */
  readonly exit: unknown;
  constructor(what: string, exit: unknown) {
    super('ERR_UNEXPECTED_EXIT', `${what}: unexpected exit ${describeExit(exit)}`);
    this.exit = exit;
  }
}

function describeExit(exit: unknown): string {
  if (typeof exit !== 'object' || exit === null) return String(exit);
  return JSON.stringify(exit, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v instanceof Uint8Array ? Array.from(v) : v));
}

/** Why a conversion request was refused or failed. */
export type ConversionFailure =
  | 'invalid-attributes'
  | 'invalid-flags'
  | 'zero-size'
  | 'unaligned'
  | 'wrap-around'
  | 'outside-ram'
  | 'granularity'
  | 'memslot-limit'
  | 'listener-veto'
  | 'kernel-error'
  | 'stopped';

/**
 * A conversion request was refused or failed, with everything it had done
 * undone. `guestStatus` is what the guest is told (a hypercall's return
 * value or the doorbell's status): 0 never, else a negative KVM error.
 */
export class ConversionError extends GuestmemError {
  declare readonly code: 'ERR_CONVERSION';
  /** Why. */
  readonly reason: ConversionFailure;
  /** What the guest is told: a negative KVM error. */
  readonly guestStatus: number;

  constructor(reason: ConversionFailure, guestStatus: number, message: string, options?: { cause?: unknown }) {
    super('ERR_CONVERSION', `conversion ${reason}: ${message}`, options);
    this.reason = reason;
    this.guestStatus = guestStatus;
  }
}

/**
 * A DMA mapping call failed, as the kernel would answer it: `errnoName` is
 * what VFIO_IOMMU_MAP_DMA, IOMMU_IOAS_UNMAP or a cut returns for the same
 * request. What the call changed before failing, if anything, is said in the
 * message (an iommufd unmap stops at the first area it would split).
 */
export class DmaMapError extends GuestmemError {
  declare readonly code: 'ERR_DMA_MAP';
  /** The mapper (container or IOAS) that refused. */
  readonly mapper: string;
  /** The call, e.g. `VFIO_IOMMU_MAP_DMA`. */
  readonly call: string;
  /** The kernel's errno for this request: EINVAL, EEXIST, ENOSPC, ENOENT, ENOMEM, ENOTTY, EOPNOTSUPP, EOVERFLOW. */
  readonly errnoName: string;
  /** The IOVA range of the call, in hex. */
  readonly iova: string;
  /** Its size, in hex. */
  readonly size: string;

  constructor(fields: { mapper: string; call: string; errnoName: string; iova: number; size: number; detail: string; hint?: string }) {
    const iova = `0x${fields.iova.toString(16)}`;
    const size = `0x${fields.size.toString(16)}`;
    const hint = fields.hint ? ` (hint: ${fields.hint})` : '';
    super('ERR_DMA_MAP', `${fields.mapper}: ${fields.call} iova ${iova} size ${size} failed: ${fields.errnoName}: ${fields.detail}${hint}`);
    this.mapper = fields.mapper;
    this.call = fields.call;
    this.errnoName = fields.errnoName;
    this.iova = iova;
    this.size = size;
  }
}
