/**
 * The RamDiscardManager protocol: one manager per memory region, fed by one or
 * more sources of page state, telling registered listeners which parts of the
 * region are populated (usable, e.g. DMA-mappable) and which are discarded.
 *
 * Vocabulary. guestmem speaks of shared and private pages; this protocol, like
 * QEMU's, says populated and discarded. For guest_memfd-backed RAM,
 * populated = shared and discarded = private ({@link RamBlockAttributes}).
 *
 * Several sources combine as in QEMU 11.1: a byte is populated when every
 * source says populated, discarded when any source says discarded, and
 * everything is populated while there are no sources. So a virtio-mem-like
 * plug state and the guest_memfd state can share one region.
 *
 * Beyond QEMU:
 * - Transactions. A populate that any listener refuses is undone: every
 *   listener already told is told to discard exactly what it was told, in
 *   reverse order; the source restores its page states; the caller gets a
 *   {@link ListenerVetoError} naming the listener. QEMU keeps its bitmap
 *   changed (10.1) or stops the VM.
 * - Discards cannot be refused. A listener that throws on one is reported
 *   ({@link DiscardFailure}, trace `ram_discard_manager_discard_failed`) and
 *   every other listener is still notified; state stays consistent.
 * - A registration whose replay is refused is rolled back the same way and
 *   leaves nothing registered (QEMU 11.1 only logs and keeps it half-populated).
 * - Discards can be prepared: a listener that must do work that may fail
 *   before a discard (split a DMA mapping) is asked first, before anything
 *   changes, and may refuse the whole operation
 *   ({@link RamDiscardListener.prepareDiscard}).
 * - Re-entrancy is refused: while the manager calls out (a notification or a
 *   replay callback), any call that would change state or listeners throws
 *   {@link ReentrancyError} and changes nothing. Queries (isPopulated, replay)
 *   are allowed from callbacks.
 */
import { InvalidArgumentError, ListenerVetoError, RegistrationError, ReentrancyError, type DiscardFailure } from './errors.js';
import { toDisposable, type Disposable } from './event.js';
import type { ByteRange, RunVisitor } from './range.js';
import { sectionEnd, subSection, type MemoryRegion, type MemoryRegionSection } from './section.js';
import {
  traceRamDiscardManagerDiscardFailed,
  traceRamDiscardManagerDiscardRefused,
  traceRamDiscardManagerRegister,
  traceRamDiscardManagerUnregister,
  traceRamDiscardManagerVeto,
} from './trace-events.js';
import { hex, isPowerOfTwo } from './units.js';

/**
 * Something that must follow which parts of a region are populated, such as
 * the DMA mappings of an assigned device (QEMU's RamDiscardListener).
 *
 * Contract:
 * - Every section it receives lies inside the section it registered with, and
 *   its address-space offset is correct for that part.
 * - Within one operation it receives maximal runs: never two adjacent or
 *   overlapping sections. Sections start and end on the manager's minimum
 *   granularity, except where clipped to the registered section.
 * - It must cope with discards at a different granularity than the populates
 *   (a 2 MiB populate may be discarded 4 KiB at a time, and the reverse).
 * - On unregistration, and on rollback, it may receive a discard for ranges it
 *   never saw populated (QEMU 11.1's rule too).
 */
export interface RamDiscardListener {
  /** Names the listener in errors and traces. */
  readonly name: string;
  /**
   * The section is about to become populated. Throw to refuse (veto): the
   * whole operation is then rolled back. A listener that refuses must leave
   * itself as it was before this call; it is not sent a discard for the
   * section it refused.
   */
  notifyPopulate(section: MemoryRegionSection): void;
  /**
   * The section has been discarded: drop every reference to it (unmap it).
   * Must not throw; if it does, the failure is reported and ignored.
   */
  notifyDiscard(section: MemoryRegionSection): void;
  /**
   * Optional. Called before a state change or a source addition discards
   * `section`, before anything has changed, with the very section
   * {@link notifyDiscard} will receive. Throw to refuse: the whole operation
   * is refused with a {@link ListenerVetoError} (action `discard`) and
   * changes nothing.
   *
   * A listener may prepare here (e.g. split a DMA mapping at the section's
   * ends) but must not change what it maps: a preparation is never undone,
   * and another listener may still refuse the operation, so the discard may
   * never come. Not called for discards that undo a populate (rollback) or
   * end a registration: those cover exactly what the listener was told to
   * populate, or all of it.
   */
  prepareDiscard?(section: MemoryRegionSection): void;
  /**
   * Optional. Called by {@link RamDiscardManager.registerListener} before the
   * replay, with every populated section the replay will deliver (ascending).
   * Throw to refuse the registration: nothing is replayed or registered.
   */
  prepareRegistration?(populated: readonly MemoryRegionSection[]): void;
}

/**
 * One source of populated/discarded state for a region (QEMU 11.1's
 * RamDiscardSource). Offsets are bytes within the region.
 */
export interface RamDiscardSource {
  /** Names the source in errors and traces. */
  readonly name: string;
  /** The source's own granularity: a power of two dividing the region size. */
  readonly granularity: number;
  /** First populated byte in [from, end), or `end`. */
  nextPopulated(from: number, end: number): number;
  /** First discarded byte in [from, end), or `end`. */
  nextDiscarded(from: number, end: number): number;
  /**
   * Calls `visit(start, end)` for each maximal populated (`populated`) or
   * discarded run of [from, end), ascending, clipped to the range; a visit
   * that returns `false` stops the walk.
   */
  forEachRun(from: number, end: number, populated: boolean, visit: RunVisitor): void;
}

interface Registration {
  readonly listener: RamDiscardListener;
  readonly section: MemoryRegionSection;
}

interface Told {
  readonly listener: RamDiscardListener;
  readonly section: MemoryRegionSection;
}


const NO_SOURCES: readonly RamDiscardSource[] = Object.freeze([]);

/**
 * The discard manager of one memory region: its sources, its listeners, and
 * the protocol between them (see the module documentation above).
 */
export class RamDiscardManager {
  /** The region whose populated/discarded state this manager reports. */
  readonly region: MemoryRegion;
  /** Most recently added first. */
  private sourceList: RamDiscardSource[] = [];
  /** Most recently registered first: the notification order. */
  private registrations: Registration[] = [];
  /** > 0 while calling out to a listener or replay callback. */
  private depth = 0;
  private discardFailureTotal = 0;
  /** Registered listeners that prepare discards: 0 keeps the common path free of the walk. */
  private preparing = 0;

  constructor(region: MemoryRegion) {
    this.region = region;
  }

  /**
   * Smallest granularity of any source, in bytes; 0 while there are no
   * sources (as in QEMU). Notifications are aligned to it.
   */
  get minGranularity(): number {
    let g = 0;
    for (const s of this.sourceList) if (g === 0 || s.granularity < g) g = s.granularity;
    return g;
  }

  /** The sources, most recently added first. */
  get sources(): readonly RamDiscardSource[] {
    return this.sourceList.slice();
  }

  /** True when `source` is one of this manager's sources. */
  hasSource(source: RamDiscardSource): boolean {
    return this.sourceList.includes(source);
  }

  /** The registered listeners with their sections, in notification order. */
  get listeners(): readonly { readonly listener: RamDiscardListener; readonly section: MemoryRegionSection }[] {
    return this.registrations.slice();
  }

  /** True while the manager is calling out (from inside a callback). */
  get busy(): boolean {
    return this.depth > 0;
  }

  /** True when some registered listener prepares discards (see {@link prepareDiscard}). */
  get preparesDiscards(): boolean {
    return this.preparing > 0;
  }

  /** Discard notifications that threw, since creation. */
  get discardFailureCount(): number {
    return this.discardFailureTotal;
  }

  /** @throws ReentrancyError when called from inside a callback. */
  assertIdle(operation: string): void {
    if (this.depth > 0) throw new ReentrancyError(operation);
  }

  // --- queries --------------------------------------------------------------

  /** True when every byte of the section is populated in every source. */
  isPopulated(section: MemoryRegionSection): boolean {
    this.checkSection(section);
    const start = section.offsetWithinRegion;
    const end = sectionEnd(section);
    for (const s of this.sourceList) if (s.nextDiscarded(start, end) < end) return false;
    return true;
  }

  /**
   * Calls `fn` once per maximal populated run of the section, in ascending
   * order, each clipped to the section. Stops at the first call that throws
   * and returns what it threw; returns `undefined` when all calls returned.
   */
  replayPopulated(section: MemoryRegionSection, fn: (section: MemoryRegionSection) => void): unknown {
    return this.replay(section, true, fn);
  }

  /** Like {@link replayPopulated}, for the maximal discarded runs. */
  replayDiscarded(section: MemoryRegionSection, fn: (section: MemoryRegionSection) => void): unknown {
    return this.replay(section, false, fn);
  }

  // --- listeners --------------------------------------------------------------

  /**
   * Registers a listener for a section of this region and at once replays the
   * populated parts of the section to it. It is notified before every
   * listener registered earlier.
   *
   * If the listener refuses part of the replay, what it accepted is discarded
   * again and it is not registered: the call throws {@link ListenerVetoError}.
   *
   * @returns a disposable that unregisters the listener (if still registered).
   * @throws RegistrationError if the listener is already registered here;
   *         InvalidArgumentError / InvalidRangeError for a bad section;
   *         ReentrancyError from inside a callback.
   */
  registerListener(listener: RamDiscardListener, section: MemoryRegionSection): Disposable {
    this.assertIdle('registerListener');
    this.checkSection(section);
    checkListener(listener);
    if (this.registrations.some((r) => r.listener === listener)) {
      throw new RegistrationError(`listener '${listener.name}' is already registered with region '${this.region.name}'`);
    }
    traceRamDiscardManagerRegister.emit(listener.name, section.offsetWithinRegion, section.size);
    const told: Told[] = [];
    this.depth++;
    try {
      // One walk: the listener may look at the whole replay before it starts.
      const populated: MemoryRegionSection[] = [];
      this.forEachPopulated(section.offsetWithinRegion, sectionEnd(section), this.sourceList, (s, e) => {
        populated.push(subSection(section, s, e));
      });
      try {
        listener.prepareRegistration?.(populated);
      } catch (cause) {
        traceRamDiscardManagerVeto.emit(listener.name, section.offsetWithinRegion, section.size, 'listener registration');
        throw new ListenerVetoError(listener.name, 'listener registration', section.offsetWithinRegion, section.size, cause);
      }
      for (const part of populated) this.populate(listener, part, told, 'listener registration');
    } finally {
      this.depth--;
    }
    const registration = { listener, section };
    this.registrations.unshift(registration);
    if (listener.prepareDiscard) this.preparing++;
    return toDisposable(() => {
      if (this.registrations.includes(registration)) this.unregisterListener(listener);
    });
  }

  /**
   * Unregisters a listener: it receives one discard for its whole section,
   * then is removed (even if that discard throws).
   *
   * @returns the discard failure, if the listener threw.
   * @throws RegistrationError if it is not registered; ReentrancyError from a callback.
   */
  unregisterListener(listener: RamDiscardListener): readonly DiscardFailure[] {
    this.assertIdle('unregisterListener');
    const registration = this.registrations.find((r) => r.listener === listener);
    if (!registration) {
      throw new RegistrationError(`listener '${listener.name}' is not registered with region '${this.region.name}'`);
    }
    traceRamDiscardManagerUnregister.emit(listener.name, registration.section.offsetWithinRegion, registration.section.size);
    const failures: DiscardFailure[] = [];
    this.depth++;
    try {
      this.discard(listener, registration.section, failures);
    } finally {
      this.depth--;
      this.registrations = this.registrations.filter((r) => r !== registration);
      if (listener.prepareDiscard) this.preparing--;
    }
    return failures;
  }

  // --- sources ----------------------------------------------------------------

  /**
   * Adds a source. Listeners are told to discard exactly what stops being
   * populated: the source's discarded parts that were populated before.
   *
   * @returns discard notifications that threw (they are reported, not fatal).
   * @throws RegistrationError if already added; InvalidArgumentError if its
   *         granularity is not a power of two dividing the region size.
   */
  addSource(source: RamDiscardSource): readonly DiscardFailure[] {
    this.assertIdle('addSource');
    if (this.sourceList.includes(source)) {
      throw new RegistrationError(`source '${source.name}' is already added to region '${this.region.name}'`);
    }
    if (!isPowerOfTwo(source.granularity) || this.region.size % source.granularity !== 0) {
      throw new InvalidArgumentError(
        `source '${source.name}': granularity ${hex(source.granularity)} must be a power of two dividing the region size ${hex(this.region.size)}`,
      );
    }
    const failures: DiscardFailure[] = [];
    const existing = this.sourceList;
    const eachDiscard = (fn: (listener: RamDiscardListener, section: MemoryRegionSection) => void): void => {
      for (const { listener, section } of this.registrations) {
        source.forEachRun(section.offsetWithinRegion, sectionEnd(section), false, (ds, de) => {
          this.forEachPopulated(ds, de, existing, (s, e) => {
            fn(listener, subSection(section, s, e));
          });
        });
      }
    };
    this.depth++;
    try {
      if (this.preparing > 0) eachDiscard((l, s) => { this.prepare(l, s, 'source addition'); });
      eachDiscard((l, s) => { this.discard(l, s, failures); });
    } finally {
      this.depth--;
    }
    this.sourceList = [source, ...existing];
    return failures;
  }

  /**
   * Removes a source. Listeners are told to populate exactly what becomes
   * populated: the source's discarded parts that the remaining sources
   * populate. A veto rolls that back and keeps the source.
   *
   * @throws RegistrationError if absent; ListenerVetoError after rollback.
   */
  removeSource(source: RamDiscardSource): void {
    this.assertIdle('removeSource');
    if (!this.sourceList.includes(source)) {
      throw new RegistrationError(`source '${source.name}' is not added to region '${this.region.name}'`);
    }
    const remaining = this.sourceList.filter((s) => s !== source);
    const told: Told[] = [];
    this.depth++;
    try {
      for (const { listener, section } of this.registrations) {
        source.forEachRun(section.offsetWithinRegion, sectionEnd(section), false, (ds, de) => {
          this.forEachPopulated(ds, de, remaining, (s, e) => {
            this.populate(listener, subSection(section, s, e), told, 'source removal');
          });
        });
      }
    } finally {
      this.depth--;
    }
    this.sourceList = remaining;
  }

  // --- called by sources ------------------------------------------------------

  /**
   * For sources: the runs (ascending, disjoint, byte offsets) have just become
   * populated in `source`. Each listener, most recent first, is told about the
   * parts that every other source populates, clipped to its section.
   *
   * @throws ListenerVetoError after telling every listener already told to
   *         discard again; the source must then restore its own state.
   */
  notifyPopulate(source: RamDiscardSource, runs: readonly ByteRange[]): void {
    const others = this.othersOf(source);
    const told: Told[] = [];
    this.depth++;
    try {
      for (const { listener, section } of this.registrations) {
        this.forEachClipped(section, runs, others, (s) => {
          this.populate(listener, s, told, 'state change');
        });
      }
    } finally {
      this.depth--;
    }
  }

  /**
   * For sources, before the runs become discarded in `source`: asks every
   * listener that prepares discards ({@link RamDiscardListener.prepareDiscard})
   * to prepare the sections it will be told to discard.
   *
   * @throws ListenerVetoError (action `discard`) when one refuses; nothing
   *         changed and the source must not make the change.
   */
  prepareDiscard(source: RamDiscardSource, runs: readonly ByteRange[]): void {
    if (this.preparing === 0) return;
    const others = this.othersOf(source);
    this.depth++;
    try {
      for (const { listener, section } of this.registrations) {
        if (!listener.prepareDiscard) continue;
        this.forEachClipped(section, runs, others, (s) => {
          this.prepare(listener, s, 'state change');
        });
      }
    } finally {
      this.depth--;
    }
  }

  /**
   * For sources: the runs have just become discarded in `source`. Each
   * listener is told about the parts that were populated (every other source
   * populates them). Never throws.
   *
   * @returns the discard notifications that threw.
   */
  notifyDiscard(source: RamDiscardSource, runs: readonly ByteRange[]): readonly DiscardFailure[] {
    const others = this.othersOf(source);
    const failures: DiscardFailure[] = [];
    this.depth++;
    try {
      for (const { listener, section } of this.registrations) {
        this.forEachClipped(section, runs, others, (s) => {
          this.discard(listener, s, failures);
        });
      }
    } finally {
      this.depth--;
    }
    return failures;
  }

  // --- internals --------------------------------------------------------------

  private othersOf(source: RamDiscardSource): readonly RamDiscardSource[] {
    const list = this.sourceList;
    if (list.length === 1 && list[0] === source) return NO_SOURCES;
    if (!list.includes(source)) {
      throw new RegistrationError(`source '${source.name}' is not added to region '${this.region.name}'`);
    }
    return list.filter((s) => s !== source);
  }

  /** Notifies one populate; on refusal rolls back everything in `told` and throws. */
  private populate(listener: RamDiscardListener, section: MemoryRegionSection, told: Told[], operation: string): void {
    try {
      listener.notifyPopulate(section);
    } catch (cause) {
      traceRamDiscardManagerVeto.emit(listener.name, section.offsetWithinRegion, section.size, operation);
      const failures: DiscardFailure[] = [];
      for (let i = told.length - 1; i >= 0; i--) {
        const t = told[i];
        if (t) this.discard(t.listener, t.section, failures);
      }
      throw new ListenerVetoError(listener.name, operation, section.offsetWithinRegion, section.size, cause, failures);
    }
    told.push({ listener, section });
  }

  /** Asks one listener to prepare a discard; a refusal becomes a ListenerVetoError. */
  private prepare(listener: RamDiscardListener, section: MemoryRegionSection, operation: string): void {
    try {
      listener.prepareDiscard?.(section);
    } catch (cause) {
      traceRamDiscardManagerDiscardRefused.emit(listener.name, section.offsetWithinRegion, section.size, operation);
      throw new ListenerVetoError(listener.name, operation, section.offsetWithinRegion, section.size, cause, [], 'discard');
    }
  }

  /** Notifies one discard; a throw is recorded, never propagated. */
  private discard(listener: RamDiscardListener, section: MemoryRegionSection, failures: DiscardFailure[]): void {
    try {
      listener.notifyDiscard(section);
    } catch (error) {
      this.discardFailureTotal++;
      failures.push({ listener: listener.name, offset: section.offsetWithinRegion, size: section.size, error });
      traceRamDiscardManagerDiscardFailed.emit(listener.name, section.offsetWithinRegion, section.size,
        error instanceof Error ? error.message : String(error));
    }
  }

  /**
   * Calls `fn` with each part of `runs` inside the listener's section that
   * every one of `others` populates, as sections of the listener's section.
   */
  private forEachClipped(section: MemoryRegionSection, runs: readonly ByteRange[], others: readonly RamDiscardSource[],
    fn: (section: MemoryRegionSection) => void): void {
    const lo = section.offsetWithinRegion;
    const hi = lo + section.size;
    for (const run of runs) {
      if (run.offset >= hi) break;
      const s = Math.max(lo, run.offset);
      const e = Math.min(hi, run.offset + run.size);
      if (s >= e) continue;
      if (others.length === 0) {
        // The calling source is the only one: the clipped run is the change.
        fn(subSection(section, s, e));
      } else {
        this.forEachPopulated(s, e, others, (a, b) => {
          fn(subSection(section, a, b));
        });
      }
    }
  }

  /**
   * Calls `visit` for each maximal run of [start, end) populated in every one
   * of `sources` (the whole range when there are none); `false` stops.
   */
  private forEachPopulated(start: number, end: number, sources: readonly RamDiscardSource[], visit: RunVisitor): void {
    if (start >= end) return;
    if (sources.length === 0) {
      visit(start, end);
      return;
    }
    const only = sources.length === 1 ? sources[0] : undefined;
    if (only) {
      only.forEachRun(start, end, true, visit);
      return;
    }
    // Several sources: intersect their populated runs.
    let p = start;
    while (p < end) {
      // Advance p until every source populates it.
      let moved = true;
      while (moved && p < end) {
        moved = false;
        for (const s of sources) {
          const q = s.nextPopulated(p, end);
          if (q > p) {
            p = q;
            moved = true;
          }
        }
      }
      if (p >= end) return;
      let e = end;
      for (const s of sources) e = s.nextDiscarded(p, e);
      if (visit(p, e) === false) return;
      p = e;
    }
  }

  private replay(section: MemoryRegionSection, populated: boolean, fn: (section: MemoryRegionSection) => void): unknown {
    this.checkSection(section);
    const start = section.offsetWithinRegion;
    const end = sectionEnd(section);
    let error: unknown;
    const call = (s: number, e: number): boolean => {
      try {
        fn(subSection(section, s, e));
        return true;
      } catch (thrown) {
        error = thrown;
        return false;
      }
    };
    this.depth++;
    try {
      const only = this.sourceList.length === 1 ? this.sourceList[0] : undefined;
      if (populated) {
        this.forEachPopulated(start, end, this.sourceList, call);
      } else if (only) {
        only.forEachRun(start, end, false, call);
      } else {
        // Discarded runs are the gaps between populated ones.
        let p = start;
        this.forEachPopulated(start, end, this.sourceList, (s, e) => {
          const going = s <= p || call(p, s);
          p = e;
          return going;
        });
        if (error === undefined && p < end) call(p, end);
      }
    } finally {
      this.depth--;
    }
    return error;
  }

  private checkSection(section: MemoryRegionSection): void {
    if (section.region !== this.region) {
      throw new InvalidArgumentError(
        `section belongs to region '${section.region.name}', not to '${this.region.name}' whose manager this is`,
      );
    }
  }
}

function checkListener(listener: RamDiscardListener): void {
  if (typeof listener.notifyPopulate !== 'function' || typeof listener.notifyDiscard !== 'function' || typeof listener.name !== 'string') {
    throw new InvalidArgumentError('a RamDiscardListener needs a name, notifyPopulate() and notifyDiscard()');
  }
  for (const hook of ['prepareDiscard', 'prepareRegistration'] as const) {
    if (listener[hook] !== undefined && typeof listener[hook] !== 'function') {
      throw new InvalidArgumentError(`listener '${listener.name}': ${hook} must be a function when present`);
    }
  }
}
