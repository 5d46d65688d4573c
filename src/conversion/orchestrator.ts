/**
 * The conversion orchestrator: carries out each request whole, or not at
 * all (QEMU's kvm_convert_memory, with rollback instead of a stopped VM).
 *
 *   validate  every piece of the range (blocks, holes, granularity), before
 *             anything changes
 *   lock      the blocks the range touches, in gpa order
 *   plan      the tracker change and KVM's change per block (limits checked)
 *   pause     the vCPUs, when the private-memory mechanism needs it
 *   to private: listeners discard -> KVM private -> [preallocate] -> tracker
 *   to shared:  KVM shared -> [preallocate] -> tracker + listeners populate (may veto)
 *   commit    free the side the pages left (punch), expose the other side
 *   verify    no changed page resident on both sides
 *
 * A failure before the commit undoes every step already taken, in reverse,
 * so the tracker, KVM's view, the backings and every listener are as they
 * were; the caller gets a ConversionError naming the reason and the status
 * for the guest. A failure to undo is an InconsistentStateError and stops
 * the VM whatever the policy. A discard that fails at commit is retried,
 * then reported and kept pending (retried before the next conversion of the
 * block, and any conversion overlapping it is refused until it succeeds):
 * memory is never left held twice without a trace.
 */
import { ConversionError, InconsistentStateError, InvalidArgumentError, ListenerVetoError, type DiscardFailure } from '../core/errors.js';
import { toDisposable, type Disposable } from '../core/event.js';
import type { PreparedStateChange } from '../core/page-state-source.js';
import type { RamDiscardListener } from '../core/ram-discard-manager.js';
import type { ByteRange } from '../core/range.js';
import { createSection, type MemoryRegionSection } from '../core/section.js';
import {
  traceBackingDiscard,
  traceConversionRejected,
  traceConversionRollback,
  traceKvmConvertMemory,
} from '../core/trace-events.js';
import { GiB, MiB, hex } from '../core/units.js';
import type { BackingStore } from '../backing/backing-store.js';
import { BlockLocks } from './block-locks.js';
import type { GuestMemory, MemoryPiece, RamBlock } from './guest-memory.js';
import { ConversionMetrics, Laps, type ConversionMetricsSnapshot, type ConversionStep, type StoreHolding } from './metrics.js';
import { NO_CHANGE, type PrivateMemory, type PrivateMemoryChange } from './private-memory.js';
import { conversionError, type ConversionRequest } from './request.js';

/** Alignment every request must have: any 4 KiB, or 2 MiB / 1 GiB. */
export type GranularityPolicy = '4k' | '2m' | '1g';
/** What a failure does to the VM: report it to the guest and go on, or stop the VM as QEMU does. */
export type ErrorPolicy = 'report' | 'stop';

const GRANULE: Readonly<Record<GranularityPolicy, number>> = { '4k': 4096, '2m': 2 * MiB, '1g': GiB };

/** Holds vCPUs out of KVM_RUN (a VmRunner). */
export interface VcpuPauser {
  /** Resolves once no vCPU is in KVM_RUN; they stay out until resume(). Nests. */
  pause(): Promise<void>;
  /** Ends one pause(). */
  resume(): void;
}

/** Options for {@link ConversionOrchestrator}. */
export interface OrchestratorOptions {
  /** The guest's memory. */
  readonly memory: GuestMemory;
  /** The private-memory mechanism (see hostAbilities for the host's). */
  readonly privateMemory: PrivateMemory;
  /** Required alignment of requests. Default `4k`. */
  readonly granularity?: GranularityPolicy;
  /** Default `report`: errors go back to the guest, the VM runs on. */
  readonly onError?: ErrorPolicy;
  /** Back the destination side before the tracker step (as QEMU pre-faults after a conversion). Default false. */
  readonly preallocate?: boolean;
  /** Check after each commit that no changed page is resident on both sides. Default true. */
  readonly verify?: boolean;
  /** Attempts per discard at commit. Default 3. */
  readonly commitAttempts?: number;
}

/** A discard of the side pages left that did not succeed. */
export interface CommitFailure {
  /** The RAM block. */
  readonly block: string;
  /** The store whose discard failed. */
  readonly store: string;
  /** Block offset of the range. */
  readonly offset: number;
  /** Bytes. */
  readonly size: number;
  /** The last failure. */
  readonly error: Error;
}

/** What a conversion did. */
export interface ConversionResult {
  /** The request carried out. */
  readonly request: ConversionRequest;
  /**
   * Order in which conversions took effect (1, 2, ...): replaying the
   * successful requests in this order gives the same state.
   */
  readonly sequence: number;
  /** Bytes that changed state (0: already in the target state, or an MMIO hole). */
  readonly changedBytes: number;
  /** Kernel calls made to change KVM's view. */
  readonly privateMemoryCalls: number;
  /** Listeners that failed a discard notice (reported, not fatal). */
  readonly discardFailures: readonly DiscardFailure[];
  /** Discards that failed at commit (kept pending, retried later). */
  readonly commitFailures: readonly CommitFailure[];
  /** Bytes resident on both sides among the changed pages after the commit. */
  readonly doubleAllocatedBytes: number;
  /** Nanoseconds per step. */
  readonly timings: Readonly<Partial<Record<ConversionStep, number>>>;
}

/** Why the VM was stopped. */
export interface StopEvent {
  /** The failure that stopped it. */
  readonly error: Error;
}

interface Work {
  readonly piece: Extract<MemoryPiece, { kind: 'ram' }>;
  readonly prepared: PreparedStateChange;
  change: PrivateMemoryChange;
}

interface PendingDiscard {
  readonly block: RamBlock;
  readonly store: BackingStore;
  readonly offset: number;
  readonly size: number;
  error: Error;
}


/** Carries out conversion requests against a guest's memory. */
export class ConversionOrchestrator {
  /** The guest's memory. */
  readonly memory: GuestMemory;
  /** How KVM is told which pages are private. */
  readonly privateMemory: PrivateMemory;
  /** The alignment every request must have. */
  readonly granularity: GranularityPolicy;
  /** What a failure does to the VM. */
  readonly onError: ErrorPolicy;
  /** Counters and latency histograms. */
  readonly metrics = new ConversionMetrics();
  private readonly preallocate: boolean;
  private readonly verify: boolean;
  private readonly commitAttempts: number;
  private readonly locks = new BlockLocks();
  private readonly pending: PendingDiscard[] = [];
  private readonly stopListeners: ((event: StopEvent) => void)[] = [];
  private pauser: VcpuPauser | undefined;
  private sequence = 0;
  private inFlight = 0;
  private stopEvent: StopEvent | undefined;

  /**
   * Takes every block of `memory` into the private-memory mechanism (all
   * private, as the trackers start).
   *
   * @throws InvalidArgumentError for bad options; whatever the mechanism
   *         throws for a block it cannot take (nothing is left taken).
   */
  constructor(options: OrchestratorOptions) {
    this.memory = options.memory;
    this.privateMemory = options.privateMemory;
    this.granularity = oneOf(options.granularity ?? '4k', ['4k', '2m', '1g'] as const, 'granularity');
    this.onError = oneOf(options.onError ?? 'report', ['report', 'stop'] as const, 'onError');
    this.preallocate = options.preallocate ?? false;
    this.verify = options.verify ?? true;
    this.commitAttempts = options.commitAttempts ?? 3;
    if (!Number.isSafeInteger(this.commitAttempts) || this.commitAttempts < 1) throw new InvalidArgumentError(`commitAttempts must be a positive integer, got ${String(this.commitAttempts)}`);
    const added: RamBlock[] = [];
    try {
      for (const block of this.memory.blocks) {
        this.privateMemory.addBlock(block);
        added.push(block);
      }
    } catch (error) {
      for (const block of added) this.privateMemory.removeBlock(block);
      throw error;
    }
  }

  /** Set when the VM was stopped (policy `stop`, or an undo that failed). */
  get stopped(): StopEvent | undefined {
    return this.stopEvent;
  }

  /** Discards that failed at commit and wait for a retry. */
  get pendingDiscards(): readonly Readonly<CommitFailure>[] {
    return this.pending.map((p) => ({ block: p.block.name, store: p.store.name, offset: p.offset, size: p.size, error: p.error }));
  }

  /** Lets the orchestrator hold vCPUs out of KVM_RUN while KVM's view changes. */
  attachPauser(pauser: VcpuPauser): void {
    this.pauser = pauser;
  }

  /** Stops using `pauser` (if it is the one attached); conversions pausing it now still resume it. */
  detachPauser(pauser: VcpuPauser): void {
    if (this.pauser === pauser) this.pauser = undefined;
  }

  /** True while a conversion is between its lock and its answer. */
  get busy(): boolean {
    return this.inFlight > 0;
  }

  /** Calls `listener` when the VM is stopped. */
  onStop(listener: (event: StopEvent) => void): Disposable {
    this.stopListeners.push(listener);
    return toDisposable(() => {
      const i = this.stopListeners.indexOf(listener);
      if (i >= 0) this.stopListeners.splice(i, 1);
    });
  }

  /**
   * Stops the VM: every later request is refused (`stopped`), and the
   * onStop listeners (the vCPU runner) are told.
   */
  stop(error: Error): void {
    if (this.stopEvent) return;
    this.stopEvent = { error };
    for (const listener of [...this.stopListeners]) {
      try {
        listener(this.stopEvent);
      } catch (listenerError) {
        // The VM is stopped either way; a listener's failure must not hide that.
        traceConversionRollback.emit(0, 0, 'stop', `a stop listener failed: ${listenerError instanceof Error ? listenerError.message : String(listenerError)}`);
      }
    }
  }

  /**
   * Carries out `request`.
   *
   * @throws ConversionError when it was refused or failed (everything undone;
   *         `guestStatus` is what to tell the guest); InconsistentStateError
   *         when an undo failed (the VM is stopped); InvalidArgumentError for
   *         a malformed request object.
   */
  async convert(request: ConversionRequest): Promise<ConversionResult> {
    const clock = new Laps();
    traceKvmConvertMemory.emit(request.gpa, request.size, request.to === 'private' ? 'shared_to_private' : 'private_to_shared');
    let pieces: MemoryPiece[];
    try {
      pieces = this.validate(request);
    } catch (error) {
      throw this.fail(request, error, 'validate', false);
    }
    clock.lap('validate');
    const ram = pieces.filter((p): p is Extract<MemoryPiece, { kind: 'ram' }> => p.kind === 'ram');
    if (ram.length === 0) return this.finish(request, clock, [], 0, [], []);
    const blocks = ram.map((p) => p.block);
    this.inFlight++;
    try {
      const release = this.locks.tryAcquire(blocks) ?? await this.locks.acquire(blocks);
      clock.lap('lock-wait');
      try {
        return await this.execute(request, ram, clock);
      } finally {
        release();
      }
    } finally {
      this.inFlight--;
    }
  }

  /**
   * Counts and traces a request refused before it could be decoded (a
   * transport's checks), and applies the error policy to it, as if
   * convert() had refused it.
   */
  refused(gpa: bigint | number, size: bigint | number, error: ConversionError): void {
    this.metrics.reject(error.reason);
    traceConversionRejected.emit(gpa, size, error.reason);
    if (this.onError === 'stop') this.stop(error);
  }

  /**
   * Retries the discards that failed at commit; returns those still failing.
   */
  async retryPendingDiscards(): Promise<readonly Readonly<CommitFailure>[]> {
    const release = await this.locks.acquire(this.memory.blocks);
    try {
      this.retryPending(this.memory.blocks);
    } finally {
      release();
    }
    return this.pendingDiscards;
  }

  /**
   * Registers `listener` with a block's discard manager, between
   * conversions (never in the middle of one). The listener is told what is
   * shared now (a replay), then every change.
   */
  async registerListener(block: RamBlock, listener: RamDiscardListener, section?: MemoryRegionSection): Promise<Disposable> {
    this.checkBlock(block);
    const release = await this.locks.acquire([block]);
    try {
      const registration = block.manager.registerListener(listener, section ?? createSection(block.region, 0, block.size, block.gpa));
      return registration;
    } finally {
      release();
    }
  }

  /** Unregisters `listener` from a block's manager, between conversions. */
  async unregisterListener(block: RamBlock, listener: RamDiscardListener): Promise<readonly DiscardFailure[]> {
    this.checkBlock(block);
    const release = await this.locks.acquire([block]);
    try {
      return block.manager.unregisterListener(listener);
    } finally {
      release();
    }
  }

  /**
   * Measures what the backings hold now (between conversions): per store
   * the ledger and the kernel's residency, and the bytes resident on both
   * sides of a block (double allocation), which also updates the peak.
   */
  async audit(): Promise<{ readonly doubleAllocatedBytes: number; readonly stores: readonly StoreHolding[] }> {
    const release = await this.locks.acquire(this.memory.blocks);
    try {
      let double = 0;
      const stores: StoreHolding[] = [];
      for (const block of this.memory.blocks) {
        const shared = block.shared.residentPages(0, block.size);
        const priv = block.private.residentPages(0, block.size);
        if (shared && priv) double += bothResident(shared, priv) * 4096;
        stores.push(holding(block.shared, shared), holding(block.private, priv));
      }
      this.metrics.doubleAllocated.current = double;
      this.metrics.doubleAllocated.peak = Math.max(this.metrics.doubleAllocated.peak, double);
      return { doubleAllocatedBytes: double, stores };
    } finally {
      release();
    }
  }

  /** The metrics, with a fresh audit of the backings. */
  async snapshot(): Promise<ConversionMetricsSnapshot> {
    const { stores } = await this.audit();
    const m = this.metrics;
    const steps = {} as Record<ConversionStep, ReturnType<ConversionMetrics['summary']>>;
    for (const step of Object.keys(m.steps) as ConversionStep[]) steps[step] = m.summary(step);
    return {
      conversions: { private: { ...m.conversions.private }, shared: { ...m.conversions.shared } },
      pagesConverted: { ...m.pagesConverted },
      noChange: m.noChange,
      rejected: { ...m.rejected },
      steps,
      privateMemoryCalls: m.privateMemoryCalls,
      memslotsInUse: this.privateMemory.memslotsInUse,
      commitFailures: m.commitFailures,
      pendingDiscards: this.pending.length,
      doubleAllocatedAfterCommit: m.doubleAllocatedAfterCommit,
      doubleAllocated: { ...m.doubleAllocated },
      stores,
    };
  }

  /** Checks the request and splits it into pieces; throws before anything changes. */
  private validate(request: ConversionRequest): MemoryPiece[] {
    const { gpa, size } = request;
    const to = oneOf(request.to, ['private', 'shared'] as const, 'conversion target');
    if (!Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(size) || size < 0) {
      throw new InvalidArgumentError(`conversion gpa and size must be non-negative safe integers, got ${String(gpa)} and ${String(size)}`);
    }
    this.refuseIfStopped();
    const what = (): string => `${hex(gpa)}+${hex(size)} to ${to}`;
    if (size === 0) throw conversionError('zero-size', `${what()}: the range is empty`);
    if (gpa % 4096 !== 0 || size % 4096 !== 0) throw conversionError('unaligned', `${what()}: not 4 KiB aligned`);
    const granule = GRANULE[this.granularity];
    if (gpa % granule !== 0 || size % granule !== 0) {
      throw conversionError('granularity', `${what()}: the policy requires ${this.granularity} alignment`);
    }
    const pieces = this.memory.resolve(gpa, size);
    for (const piece of pieces) {
      if (piece.kind === 'unmapped') {
        throw conversionError('outside-ram', `${what()}: ${hex(piece.gpa)}+${hex(piece.size)} is not guest memory`);
      }
      if (piece.kind === 'hole' && to === 'private') {
        throw conversionError('outside-ram', `${what()}: ${hex(piece.gpa)}+${hex(piece.size)} is the MMIO hole '${piece.hole.name}', which cannot be private`);
      }
    }
    return pieces;
  }

  private async execute(request: ConversionRequest, ram: readonly Work['piece'][], clock: Laps): Promise<ConversionResult> {
    const toPrivate = request.to === 'private';
    const work: Work[] = [];
    try {
      // The VM may have stopped while this request waited for its lock.
      this.refuseIfStopped();
      this.retryPending(ram.map((p) => p.block));
      this.refuseOverPending(request, ram);
      for (const piece of ram) {
        const prepared = piece.block.attributes.prepareStateChange(piece.offset, piece.size, request.to);
        work.push({ piece, prepared, change: NO_CHANGE });
      }
      for (const w of work) {
        w.change = this.privateMemory.plan(w.piece.block, { offset: w.piece.offset, size: w.piece.size }, w.prepared.changed, toPrivate);
      }
    } catch (error) {
      throw this.fail(request, error, 'validate', false);
    }
    clock.lap('validate');
    const changedBytes = work.reduce((n, w) => n + w.prepared.changedBytes, 0);
    if (changedBytes === 0) return this.finish(request, clock, work, 0, [], []);

    // The pauser paused is the one resumed, whatever is attached meanwhile.
    const pauser = this.privateMemory.needsPause ? this.pauser : undefined;
    if (pauser) {
      await pauser.pause();
      clock.lap('pause');
      // Or while it waited for the vCPUs (a stop ends their loops, which ends the wait).
      if (this.stopEvent) {
        pauser.resume();
        throw this.fail(request, conversionError('stopped', `the VM stopped: ${this.stopEvent.error.message}`, this.stopEvent.error), 'pause', false);
      }
    }
    const undo: (() => void)[] = [];
    const discardFailures: DiscardFailure[] = [];
    let step: ConversionStep = 'listeners-discard';
    try {
      for (const w of work) {
        if (w.prepared.changedBytes === 0) continue;
        const block = w.piece.block;
        if (toPrivate) {
          step = 'listeners-discard';
          discardFailures.push(...w.prepared.notifyDiscard());
          undo.push(() => {
            w.prepared.revertDiscardNotice();
          });
          clock.lap(step);
        }
        step = 'private-memory';
        w.change.apply();
        undo.push(() => {
          w.change.revert();
        });
        clock.lap(step);
        if (this.preallocate) {
          step = 'preallocate';
          const destination = toPrivate ? block.private : block.shared;
          for (const run of w.prepared.changed) {
            // With huge pages an allocation backs whole pages: the undo frees all it backed.
            const fresh = destination.ledger.unbackedRuns(destination.ledger.allocationSpan(run.offset, run.size));
            destination.allocate(run.offset, run.size);
            undo.push(() => {
              destination.discard(run.offset, run.size);
              for (const f of fresh) destination.discard(f.offset, f.size);
            });
          }
          clock.lap(step);
        }
        step = 'tracker';
        w.prepared.apply();
        undo.push(() => {
          discardFailures.push(...w.prepared.revert());
        });
        clock.lap(step);
      }
    } catch (error) {
      try {
        for (let i = undo.length - 1; i >= 0; i--) undo[i]?.();
      } catch (undoError) {
        const why = error instanceof Error ? error.message : String(error);
        throw this.fail(request, new InconsistentStateError(`conversion ${hex(request.gpa)}+${hex(request.size)} to ${request.to} failed at ${step} (${why}) and could not be undone`, undoError), step, true);
      } finally {
        pauser?.resume();
      }
      throw this.fail(request, error, step, true);
    }
    // From here on the conversion has happened: nothing may throw.
    if (pauser) {
      pauser.resume();
      clock.lap('pause');
    }
    const commitFailures = this.commit(work, toPrivate);
    clock.lap('commit');
    return this.finish(request, clock, work, changedBytes, discardFailures, commitFailures);
  }

  /** Frees the side the pages left and exposes the side they joined. */
  private commit(work: readonly Work[], toPrivate: boolean): CommitFailure[] {
    const failures: CommitFailure[] = [];
    for (const w of work) {
      const block = w.piece.block;
      const from = toPrivate ? block.shared : block.private;
      const into = toPrivate ? block.private : block.shared;
      for (const run of w.prepared.changed) {
        const failure = this.discard(block, from, run);
        if (failure) failures.push(failure);
        try {
          into.expose(run.offset, run.size);
        } catch (error) {
          // Only the ledger's view of the side joined: reported, nothing held twice.
          const e = error instanceof Error ? error : new Error(String(error));
          traceConversionRollback.emit(block.gpa + run.offset, run.size, 'commit', `expose of '${into.name}' failed: ${e.message}`);
          failures.push({ block: block.name, store: into.name, offset: run.offset, size: run.size, error: e });
        }
      }
    }
    if (failures.length > 0) {
      this.metrics.commitFailures += failures.length;
      if (this.onError === 'stop') this.stop(failures[0]?.error ?? new Error('commit failed'));
    }
    return failures;
  }

  /** One discard with retries; a failure is kept pending. */
  private discard(block: RamBlock, store: BackingStore, run: ByteRange): CommitFailure | undefined {
    let last: Error | undefined;
    for (let attempt = 0; attempt < this.commitAttempts; attempt++) {
      try {
        store.discard(run.offset, run.size);
        traceBackingDiscard.emit(store.name, run.offset, run.size, store.ledger.strandedBytes);
        return undefined;
      } catch (error) {
        last = error instanceof Error ? error : new Error(String(error));
      }
    }
    const error = last ?? new Error('discard failed');
    this.pending.push({ block, store, offset: run.offset, size: run.size, error });
    traceConversionRollback.emit(block.gpa + run.offset, run.size, 'commit', `discard of '${store.name}' failed, kept pending: ${error.message}`);
    return { block: block.name, store: store.name, offset: run.offset, size: run.size, error };
  }

  private retryPending(blocks: readonly RamBlock[]): void {
    const still = this.pending.filter((p) => {
      if (!blocks.includes(p.block)) return true;
      try {
        p.store.discard(p.offset, p.size);
        traceBackingDiscard.emit(p.store.name, p.offset, p.size, p.store.ledger.strandedBytes);
        return false;
      } catch (error) {
        p.error = error instanceof Error ? error : new Error(String(error));
        return true;
      }
    });
    this.pending.splice(0, this.pending.length, ...still);
  }

  private refuseOverPending(request: ConversionRequest, ram: readonly Work['piece'][]): void {
    for (const p of this.pending) {
      for (const piece of ram) {
        if (p.block === piece.block && p.offset < piece.offset + piece.size && piece.offset < p.offset + p.size) {
          throw conversionError('kernel-error',
            `${hex(request.gpa)}+${hex(request.size)}: the discard of '${p.store.name}' ${hex(p.offset)}+${hex(p.size)} from an earlier conversion is still pending (${p.error.message})`,
            p.error);
        }
      }
    }
  }

  private finish(request: ConversionRequest, clock: Laps, work: readonly Work[],
    changedBytes: number, discardFailures: readonly DiscardFailure[], commitFailures: readonly CommitFailure[]): ConversionResult {
    let double = 0;
    if (this.verify && changedBytes > 0) {
      for (const w of work) {
        for (const run of w.prepared.changed) {
          try {
            const a = w.piece.block.shared.residentPages(run.offset, run.size);
            const b = w.piece.block.private.residentPages(run.offset, run.size);
            if (a && b) double += bothResident(a, b) * 4096;
          } catch (error) {
            // A check, after the fact: its failure is traced, the conversion stands.
            traceConversionRollback.emit(w.piece.block.gpa + run.offset, run.size, 'verify', error instanceof Error ? error.message : String(error));
          }
        }
      }
      clock.lap('verify');
      this.metrics.doubleAllocatedAfterCommit += double;
    }
    const calls = work.reduce((n, w) => n + (w.prepared.changedBytes > 0 ? w.change.calls : 0), 0);
    this.metrics.privateMemoryCalls += calls;
    this.metrics.done(request.to, request.size, changedBytes);
    const timings = clock.end();
    this.metrics.timeAll(timings);
    return { request, sequence: ++this.sequence, changedBytes, privateMemoryCalls: calls, discardFailures, commitFailures, doubleAllocatedBytes: double, timings };
  }

  /**
   * Turns a failure into what the caller gets: a ConversionError (or the
   * InconsistentStateError), counted, traced, and stopping the VM when the
   * policy says so.
   */
  private fail(request: ConversionRequest, error: unknown, step: ConversionStep, afterSideEffects: boolean): Error {
    if (error instanceof InvalidArgumentError && !afterSideEffects) return error;
    let result: Error;
    if (error instanceof ConversionError || error instanceof InconsistentStateError) result = error;
    else if (error instanceof ListenerVetoError) result = conversionError('listener-veto', `${describe(request)}: ${error.message}`, error);
    else result = conversionError('kernel-error', `${describe(request)} failed at ${step}: ${error instanceof Error ? error.message : String(error)}`, error);
    const reason = result instanceof ConversionError ? result.reason : 'inconsistent';
    if (result instanceof ConversionError) this.metrics.reject(result.reason);
    if (afterSideEffects) traceConversionRollback.emit(request.gpa, request.size, step, reason);
    else traceConversionRejected.emit(request.gpa, request.size, reason);
    if (result instanceof InconsistentStateError || (this.onError === 'stop' && !(result instanceof ConversionError && result.reason === 'stopped'))) {
      this.stop(result);
    }
    return result;
  }

  private refuseIfStopped(): void {
    if (this.stopEvent) throw conversionError('stopped', `the VM is stopped: ${this.stopEvent.error.message}`, this.stopEvent.error);
  }

  private checkBlock(block: RamBlock): void {
    if (!this.memory.blocks.includes(block)) throw new InvalidArgumentError(`RAM block '${String((block as Partial<RamBlock> | undefined)?.name)}' is not part of this guest's memory`);
  }
}


/** `value` if it is one of `options` (checked at run time: callers may be JavaScript). */
function oneOf<const T extends string>(value: unknown, options: readonly T[], what: string): T {
  if (typeof value === 'string' && (options as readonly string[]).includes(value)) return value as T;
  throw new InvalidArgumentError(`${what} must be one of ${options.join(', ')}, got ${JSON.stringify(value)}`);
}

function describe(request: ConversionRequest): string {
  return `conversion ${hex(request.gpa)}+${hex(request.size)} to ${request.to}`;
}

function bothResident(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) n += (a[i] ?? 0) & (b[i] ?? 0);
  return n;
}

function holding(store: BackingStore, resident: Uint8Array | undefined): StoreHolding {
  let count = 0;
  if (resident) for (const r of resident) count += r;
  return {
    store: store.name, kind: store.kind, ledgerBytes: store.ledger.backedBytes,
    residentBytes: resident ? count * 4096 : undefined, strandedBytes: store.ledger.strandedBytes,
  };
}
