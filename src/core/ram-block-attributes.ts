/**
 * The shared/private state of a guest_memfd-backed RAM block: QEMU's
 * RamBlockAttributes, as a {@link RamDiscardSource} of the block's region.
 *
 * One state per page (host page size by default; any power of two). A new
 * block is all private. In the discard-manager protocol shared means
 * populated and private means discarded, so listeners (DMA mappings) see
 * shared memory as populated.
 */
import { InvalidArgumentError } from './errors.js';
import { PageStateSource, type PreparedStateChange, type RangeState, type StateChangeResult } from './page-state-source.js';
import type { RamDiscardManager } from './ram-discard-manager.js';
import { traceRamBlockAttributesStateChange } from './trace-events.js';
import type { ByteCount } from './units.js';

/** The host page size of x86-64 Linux: the default tracking granularity. */
export const HOST_PAGE_SIZE = 4096;

/** A page's (or range's) target state. */
export type PageState = 'private' | 'shared';

/** Options for {@link RamBlockAttributes}. */
export interface RamBlockAttributesOptions {
  /** Tracking granularity in bytes; a power of two dividing the region size. Default 4 KiB. */
  readonly pageSize?: ByteCount;
  /** Name in errors and traces. Default `<region>:attributes`. */
  readonly name?: string;
}

/**
 * The shared/private state of one guest_memfd-backed RAM block (QEMU's
 * RamBlockAttributes), a source of its region's {@link RamDiscardManager}.
 */
export class RamBlockAttributes extends PageStateSource {
  /**
   * Creates the (all-private) state of the region of `manager` and adds it as
   * a source.
   *
   * @throws InvalidArgumentError for a page size that is not a power of two
   *         dividing the region size; ReentrancyError from a manager callback.
   */
  constructor(manager: RamDiscardManager, options: RamBlockAttributesOptions = {}) {
    super(manager, options.name ?? `${manager.region.name}:attributes`, options.pageSize ?? HOST_PAGE_SIZE, false);
  }

  /** Tracking granularity, in bytes. */
  get pageSize(): number {
    return this.granularity;
  }

  /** Bytes currently shared. */
  get sharedBytes(): number {
    return this.populatedBytes;
  }

  /**
   * Converts [offset, offset + size) to `to` (QEMU's
   * ram_block_attributes_state_change):
   *
   * - offset and size must be page aligned, size non-zero, no wrap-around,
   *   inside the block; otherwise InvalidRangeError and nothing happens (no
   *   change, no notification, no trace);
   * - the trace event `ram_block_attributes_state_change` is emitted for every
   *   valid request, as QEMU does;
   * - already in `to`: nothing else happens;
   * - otherwise each maximal run in the opposite state changes, and every
   *   listener gets one notification per run (QEMU: one per page of a mixed
   *   range). Converting to shared can be vetoed by a listener: then nothing
   *   has changed and ListenerVetoError is thrown.
   *
   * @throws InvalidRangeError, InvalidArgumentError, ListenerVetoError, ReentrancyError.
   */
  stateChange(offset: ByteCount, size: ByteCount, to: PageState): StateChangeResult {
    if (!isPageState(to)) {
      throw new InvalidArgumentError(`${this.name}: state change target must be 'private' or 'shared', got ${JSON.stringify(to)}`);
    }
    return this.change(offset, size, to === 'shared', `state change to ${to}`);
  }

  /**
   * Validates and computes a conversion of [offset, offset + size) to `to`,
   * and traces it like {@link stateChange}, without changing anything yet:
   * the caller sequences the steps (see PreparedStateChange), as the
   * conversion orchestrator does around KVM and the backing stores.
   *
   * @throws InvalidRangeError, InvalidArgumentError, ReentrancyError;
   *         ListenerVetoError (action `discard`) when a listener that
   *         prepares discards refuses one (nothing changed).
   */
  prepareStateChange(offset: ByteCount, size: ByteCount, to: PageState): PreparedStateChange {
    if (!isPageState(to)) {
      throw new InvalidArgumentError(`${this.name}: state change target must be 'private' or 'shared', got ${JSON.stringify(to)}`);
    }
    return this.prepare(offset, size, to === 'shared', `state change to ${to}`);
  }

  /** True when every page of the range is shared (validated like a state change). */
  isShared(offset: ByteCount, size: ByteCount): boolean {
    return this.rangeState(offset, size, 'query') === 'populated';
  }

  /** True when every page of the range is private. */
  isPrivate(offset: ByteCount, size: ByteCount): boolean {
    return this.rangeState(offset, size, 'query') === 'discarded';
  }

  /** `private`, `shared`, or `mixed` for a range. */
  stateOf(offset: ByteCount, size: ByteCount): PageState | 'mixed' {
    const s = this.rangeState(offset, size, 'query');
    return s === 'populated' ? 'shared' : s === 'discarded' ? 'private' : 'mixed';
  }

  protected override onRequest(offset: number, size: number, from: RangeState, populate: boolean): void {
    traceRamBlockAttributesStateChange.emit(offset, size, from, populate ? 'populated' : 'discarded');
  }
}

/** Boundary check for callers without types (the CLI, JavaScript, a parsed trace). */
function isPageState(value: unknown): value is PageState {
  return value === 'private' || value === 'shared';
}
