/**
 * A {@link RamDiscardSource} that keeps one populated/discarded state per
 * granule in a {@link PageStateMap} and changes it transactionally. The base
 * of {@link RamBlockAttributes} (guest_memfd shared/private state) and
 * {@link PlugState} (a virtio-mem-like plug state).
 */
import { InvalidArgumentError, ReentrancyError, type DiscardFailure } from './errors.js';
import { PageStateMap, type PageStateMapStats } from './page-state-map.js';
import type { RamDiscardManager, RamDiscardSource } from './ram-discard-manager.js';
import { checkRange, validRange, type ByteRange, type RunVisitor } from './range.js';
import { checkPowerOfTwo, hex, type ByteCount } from './units.js';

/** A range's state in one source, as QEMU's trace prints it. */
export type RangeState = 'discarded' | 'populated' | 'mixture';

/** What a state change did. */
export interface StateChangeResult {
  /** The range's state before the change, in this source. */
  readonly from: RangeState;
  /**
   * The maximal runs that changed state, ascending, as region offsets. Empty
   * when the range was already in the target state.
   */
  readonly changed: readonly ByteRange[];
  /** Sum of the sizes of `changed`. */
  readonly changedBytes: number;
  /** Listeners that threw on a discard notification (reported, not fatal). */
  readonly discardFailures: readonly DiscardFailure[];
}

const NO_FAILURES: readonly DiscardFailure[] = Object.freeze([]);

/**
 * A state change validated and computed but not made yet, for a caller that
 * must interleave other steps (QEMU's kvm_convert_memory done in order):
 *
 *   to discarded (private):  notifyDiscard() -> [other steps] -> apply()
 *   to populated (shared):   [other steps] -> apply()   (notifies; a veto throws)
 *
 * and, when a later step fails, undone in reverse: revert() (after apply),
 * then, for a discard, revertDiscardNotice() once the caller's own steps
 * are undone.
 *
 * It is valid until the source changes in any other way; after that every
 * call throws instead of acting on a stale computation.
 */
export interface PreparedStateChange {
  /** The range's state before the change. */
  readonly from: RangeState;
  /** The maximal runs that will change, ascending (empty: nothing to do). */
  readonly changed: readonly ByteRange[];
  /** Sum of the sizes of `changed`. */
  readonly changedBytes: number;
  /** True for a change to populated (shared). */
  readonly populate: boolean;
  /**
   * For a change to discarded: tells listeners the runs are discarded before
   * the state changes (DMA is unmapped first). Never throws; returns the
   * listeners that failed.
   */
  notifyDiscard(): readonly DiscardFailure[];
  /**
   * Undoes {@link notifyDiscard}: listeners are told to populate again
   * exactly what they were told to discard.
   *
   * @throws ListenerVetoError when a listener refuses (it was rolled back; the
   *         caller must report that the listeners could not be restored).
   */
  revertDiscardNotice(): void;
  /**
   * Makes the change in the source. For a change to populated this also
   * notifies listeners, and a veto restores the source and throws
   * ListenerVetoError. For a change to discarded the listeners must have been
   * told with notifyDiscard().
   */
  apply(): void;
  /**
   * Undoes {@link apply} when a later step of the caller's sequence fails.
   * For a change to populated, listeners are told to discard the runs first
   * (never throws; returns the listeners that failed). For a change to
   * discarded only the state goes back: the caller then calls
   * revertDiscardNotice(), after its own steps are undone.
   */
  revert(): readonly DiscardFailure[];
}

/**
 * A source whose state is a {@link PageStateMap} at its granularity, changed
 * through {@link PageStateSource.change}: validated, traced, all or nothing.
 */
export abstract class PageStateSource implements RamDiscardSource {
  /** Names the source in errors and traces. */
  readonly name: string;
  /** Bytes per tracked granule: a power of two dividing the region size. */
  readonly granularity: number;
  /** The manager of the region this source describes. */
  readonly manager: RamDiscardManager;
  protected readonly map: PageStateMap;
  private populated: number;
  /** Counts changes, so a prepared change can tell it went stale. */
  private generation = 0;

  /**
   * Creates the state (every granule populated or every one discarded) and
   * adds the source to `manager`, which tells its listeners what that
   * discards (discard failures are traced and counted by the manager).
   */
  protected constructor(manager: RamDiscardManager, name: string, granularity: ByteCount, populated: boolean) {
    manager.assertIdle(`creating source '${name}'`);
    this.manager = manager;
    this.name = name;
    this.granularity = checkPowerOfTwo(granularity, `source '${name}': granularity`);
    const size = manager.region.size;
    if (size % this.granularity !== 0) {
      throw new InvalidArgumentError(
        `source '${name}': region size ${hex(size)} is not a multiple of the granularity ${hex(this.granularity)}`,
      );
    }
    this.map = new PageStateMap(size / this.granularity, { initial: populated ? 'shared' : 'private' });
    this.populated = populated ? size : 0;
    manager.addSource(this);
  }

  /** Size of the region, in bytes. */
  get size(): number {
    return this.manager.region.size;
  }

  /** Bytes populated in this source. */
  get populatedBytes(): number {
    return this.populated;
  }

  /** The representation's counters (leaves, bytes held). */
  get stats(): PageStateMapStats {
    return this.map.stats;
  }

  nextPopulated(from: number, end: number): number {
    const g = this.granularity;
    const p = this.map.nextShared(Math.floor(from / g), Math.ceil(end / g)) * g;
    return p < from ? from : p < end ? p : end;
  }

  nextDiscarded(from: number, end: number): number {
    const g = this.granularity;
    const p = this.map.nextPrivate(Math.floor(from / g), Math.ceil(end / g)) * g;
    return p < from ? from : p < end ? p : end;
  }

  forEachRun(from: number, end: number, populated: boolean, visit: RunVisitor): void {
    const g = this.granularity;
    this.map.forEachRun(Math.floor(from / g), Math.ceil(end / g), populated,
      (a, b) => visit(a * g < from ? from : a * g, b * g > end ? end : b * g));
  }

  /**
   * Removes this source from its manager; listeners are told to populate what
   * that populates. May be vetoed (the source then stays).
   */
  detach(): void {
    this.manager.removeSource(this);
  }

  /** State of a validated range in this source. */
  protected rangeState(offset: ByteCount, size: ByteCount, what: string): RangeState {
    const r = checkRange(this.describe(what), offset, size, this.granularity, this.size);
    const first = r.offset / this.granularity;
    const end = first + r.size / this.granularity;
    if (this.map.nextShared(first, end) >= end) return 'discarded';
    if (this.map.nextPrivate(first, end) >= end) return 'populated';
    return 'mixture';
  }

  /**
   * Optional hook called once per valid request, after validation and before
   * any change (also when nothing will change); the place for a trace event.
   */
  protected onRequest?(offset: number, size: number, from: RangeState, populate: boolean): void;

  /** Names this source in error messages for `operation`. */
  protected describe(operation: string): string {
    return `${this.name}: ${operation}`;
  }

  /**
   * Validates and computes a change of [offset, offset + size), traces it
   * (onRequest), and changes nothing yet. For a change to discarded, the
   * listeners that prepare discards are asked now and may refuse it. See
   * {@link PreparedStateChange}.
   *
   * @throws InvalidRangeError, InvalidArgumentError, ReentrancyError;
   *         ListenerVetoError (action `discard`) when a listener refuses.
   */
  protected prepare(offset: ByteCount, size: ByteCount, populate: boolean, operation: string): PreparedStateChange {
    if (this.manager.busy) throw new ReentrancyError(this.describe(operation));
    const g = this.granularity;
    const r = validRange(offset, size, g, this.size) ?? checkRange(this.describe(operation), offset, size, g, this.size);
    const first = r.offset / g;
    const end = first + r.size / g;
    const changed: ByteRange[] = [];
    this.map.forEachRun(first, end, !populate, (p, q) => changed.push({ offset: p * g, size: (q - p) * g }));
    const from: RangeState = changed.length === 0 ? (populate ? 'populated' : 'discarded')
      : changed.length === 1 && changed[0]?.size === r.size ? (populate ? 'discarded' : 'populated')
        : 'mixture';
    this.onRequest?.(r.offset, r.size, from, populate);
    let bytes = 0;
    for (const run of changed) bytes += run.size;
    if (!populate && bytes > 0 && this.manager.hasSource(this)) this.manager.prepareDiscard(this, changed);
    // The change's own apply() and revert() move this on; anything else makes it stale.
    let generation = this.generation;
    let applied = false;
    const attached = (): boolean => this.manager.hasSource(this);
    const fresh = (): void => {
      if (this.generation !== generation) {
        throw new InvalidArgumentError(`${this.describe(operation)}: the prepared change is stale (the source changed since)`);
      }
    };
    return {
      from,
      changed,
      changedBytes: bytes,
      populate,
      notifyDiscard: () => {
        fresh();
        return !populate && bytes > 0 && attached() ? this.manager.notifyDiscard(this, changed) : NO_FAILURES;
      },
      revertDiscardNotice: () => {
        fresh();
        if (!populate && bytes > 0 && attached()) this.manager.notifyPopulate(this, changed);
      },
      apply: () => {
        fresh();
        if (applied) throw new InvalidArgumentError(`${this.describe(operation)}: the prepared change was applied already`);
        if (bytes === 0) return;
        this.applyRuns(changed, populate);
        if (populate && attached()) {
          try {
            this.manager.notifyPopulate(this, changed);
          } catch (error) {
            this.applyRuns(changed, false);
            generation = this.generation;
            throw error;
          }
        }
        generation = this.generation;
        applied = true;
      },
      revert: () => {
        fresh();
        if (!applied) return NO_FAILURES;
        const failures = populate && attached() ? this.manager.notifyDiscard(this, changed) : NO_FAILURES;
        this.applyRuns(changed, !populate);
        generation = this.generation;
        applied = false;
        return failures;
      },
    };
  }

  /** Sets the runs' state in the map and the count (one generation step). */
  private applyRuns(runs: readonly ByteRange[], populate: boolean): void {
    const g = this.granularity;
    let bytes = 0;
    for (const run of runs) {
      this.map.setRange(run.offset / g, (run.offset + run.size) / g, populate);
      bytes += run.size;
    }
    this.populated += populate ? bytes : -bytes;
    this.generation++;
  }

  /**
   * Changes [offset, offset + size) to populated or discarded:
   *
   * 1. validate (alignment, size, wrap-around, bounds) — else throw, nothing changed;
   * 2. find the maximal runs in the opposite state, and call {@link onRequest};
   * 3. nothing to change: return; for a discard, listeners that prepare
   *    discards may refuse it (throws ListenerVetoError, nothing changed);
   * 4. change the map;
   * 5. notify the manager: one notification per run per listener. A populate
   *    veto restores the runs and rethrows the {@link ListenerVetoError}.
   *    A detached source (see {@link detach}) notifies nobody: its state only
   *    matters again when it is added back, which notifies the difference.
   */
  protected change(offset: ByteCount, size: ByteCount, populate: boolean, operation: string): StateChangeResult {
    if (this.manager.busy) throw new ReentrancyError(this.describe(operation));
    const g = this.granularity;
    const r = validRange(offset, size, g, this.size) ?? checkRange(this.describe(operation), offset, size, g, this.size);
    const first = r.offset / g;
    const end = first + r.size / g;
    const map = this.map;

    let changed: ByteRange[];
    let from: RangeState;
    const preparing = !populate && this.manager.preparesDiscards && this.manager.hasSource(this);
    if (end - first === 1 && !preparing) {
      // One granule, the common 4 KiB conversion: check and change in one pass.
      const flipped = map.setPage(first, populate);
      from = flipped === populate ? 'discarded' : 'populated';
      this.onRequest?.(r.offset, r.size, from, populate);
      if (!flipped) return { from, changed: [], changedBytes: 0, discardFailures: NO_FAILURES };
      changed = [r];
    } else {
      // The maximal runs in the opposite state.
      const runs: ByteRange[] = [];
      map.forEachRun(first, end, !populate, (p, q) => runs.push({ offset: p * g, size: (q - p) * g }));
      changed = runs;
      const whole = changed.length === 1 && changed[0]?.size === r.size;
      if (changed.length === 0) from = populate ? 'populated' : 'discarded';
      else if (whole) from = populate ? 'discarded' : 'populated';
      else from = 'mixture';
      this.onRequest?.(r.offset, r.size, from, populate);
      if (changed.length === 0) return { from, changed, changedBytes: 0, discardFailures: NO_FAILURES };
      // Listeners that must prepare a discard may refuse it: before any change.
      if (preparing) this.manager.prepareDiscard(this, changed);
      map.setRange(first, end, populate);
    }

    let bytes = 0;
    for (const run of changed) bytes += run.size;
    this.populated += populate ? bytes : -bytes;
    this.generation++;
    if (!this.manager.hasSource(this)) return { from, changed, changedBytes: bytes, discardFailures: NO_FAILURES };
    if (!populate) {
      const discardFailures = this.manager.notifyDiscard(this, changed);
      return { from, changed, changedBytes: bytes, discardFailures };
    }
    try {
      this.manager.notifyPopulate(this, changed);
    } catch (error) {
      this.applyRuns(changed, false);
      throw error;
    }
    return { from, changed, changedBytes: bytes, discardFailures: NO_FAILURES };
  }
}
