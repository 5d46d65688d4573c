/**
 * How KVM is told which guest pages are private: one interface, three
 * mechanisms (see docs/conversion.md):
 *
 * - attributes: KVM_SET_MEMORY_ATTRIBUTES on a VM with private memory;
 * - memslots: private ranges are memslots over the guest_memfd, shared
 *   ranges memslots over the shared memory (memslot-private-memory.ts);
 * - simulated: KVM's view kept in a page-state map, for tests and
 *   simulations, with failures that can be injected.
 *
 * A change is planned first (limits are checked, nothing happens), then
 * applied all or nothing, and can be reverted after it was applied when a
 * later step of the conversion fails.
 */
import { InconsistentStateError, InvalidArgumentError, SystemCallError } from '../core/errors.js';
import { PageStateMap } from '../core/page-state-map.js';
import type { ByteRange } from '../core/range.js';
import { hex } from '../core/units.js';
import type { KvmVm } from '../sys/kvm.js';
import { errnoDescription, errnoNumber } from '../sys/errno.js';
import type { RamBlock } from './guest-memory.js';

/** The mechanism behind a {@link PrivateMemory}. */
export type PrivateMemoryKind = 'attributes' | 'memslots' | 'simulated';

/** A planned change of KVM's view of one block. */
export interface PrivateMemoryChange {
  /** Kernel calls apply() will make. */
  readonly calls: number;
  /**
   * Makes the change. All or nothing: on failure whatever it did is undone
   * before it throws (SystemCallError, MemslotError), or, if that undo fails
   * too, it throws InconsistentStateError.
   */
  apply(): void;
  /** Undoes an applied change. @throws InconsistentStateError when it cannot. */
  revert(): void;
}

/** KVM's view of which pages are private. */
export interface PrivateMemory {
  /** The mechanism. */
  readonly kind: PrivateMemoryKind;
  /** True when vCPUs must be out of KVM_RUN while a change is applied (memslots). */
  readonly needsPause: boolean;
  /** Memslots this mechanism holds right now (0 when it uses none of its own). */
  readonly memslotsInUse: number;
  /** Takes a block into KVM's view, all private (the state a new block's tracker has). */
  addBlock(block: RamBlock): void;
  /** Drops a block from KVM's view. */
  removeBlock(block: RamBlock): void;
  /**
   * Plans making `runs` (block offsets, inside `range`, the maximal runs that
   * change) private or shared.
   *
   * @throws ConversionError (`memslot-limit`) when the change cannot be made
   *         within the mechanism's limits; nothing has changed.
   */
  plan(block: RamBlock, range: ByteRange, runs: readonly ByteRange[], toPrivate: boolean): PrivateMemoryChange;
}

/** The change that changes nothing (no changed runs, or a layout already right). */
export const NO_CHANGE: PrivateMemoryChange = Object.freeze({ calls: 0, apply: () => undefined, revert: () => undefined });

/** A failure to inject into a later kernel call of the simulated mechanism. */
export interface InjectedKernelFailure {
  /** errno name, e.g. `ENOMEM`. */
  readonly errno: string;
  /** Calls to let through first (counting every call, reverts included). Default 0. */
  readonly after?: number;
}

/**
 * KVM's view simulated: one page-state map per block, one "call" per changed
 * run, and failures that can be injected at any call, of a change (the calls
 * before it are undone, as a real mechanism undoes them) or of a revert
 * (which then cannot restore the view: InconsistentStateError).
 */
export class SimulatedPrivateMemory implements PrivateMemory {
  /** Always `simulated`. */
  readonly kind = 'simulated' as const;
  readonly needsPause = false;
  readonly memslotsInUse = 0;
  private readonly views = new Map<RamBlock, PageStateMap>();
  private failure: { errno: string; countdown: number } | undefined;
  private count = 0;

  /** Calls made so far (including undo calls). */
  get calls(): number {
    return this.count;
  }

  /** Makes a later call fail (replacing a failure not yet taken). */
  failNext(failure: InjectedKernelFailure): void {
    this.failure = { errno: failure.errno, countdown: failure.after ?? 0 };
  }

  /** Drops a failure not yet taken. */
  clearFailure(): void {
    this.failure = undefined;
  }

  addBlock(block: RamBlock): void {
    if (this.views.has(block)) throw new InvalidArgumentError(`simulated private memory: block '${block.name}' added twice`);
    this.views.set(block, new PageStateMap(block.size / 4096, { initial: 'private' }));
  }

  removeBlock(block: RamBlock): void {
    this.views.delete(block);
  }

  /** KVM's view of a page: true when private. */
  isPrivate(block: RamBlock, offset: number): boolean {
    return !this.view(block).isShared(Math.floor(offset / 4096));
  }


  plan(block: RamBlock, _range: ByteRange, runs: readonly ByteRange[], toPrivate: boolean): PrivateMemoryChange {
    const view = this.view(block);
    if (runs.length === 0) return NO_CHANGE;
    /** One kernel call; `checked` calls may hit an injected failure. */
    const set = (run: ByteRange, priv: boolean, checked: boolean): void => {
      this.count++;
      if (checked && this.failure) {
        if (this.failure.countdown === 0) {
          const errno = this.failure.errno;
          this.failure = undefined;
          throw injected(errno, block, run);
        }
        this.failure.countdown--;
      }
      view.setRange(run.offset / 4096, (run.offset + run.size) / 4096, !priv);
    };
    return {
      calls: runs.length,
      apply: () => {
        const done: ByteRange[] = [];
        for (const run of runs) {
          try {
            set(run, toPrivate, true);
            done.push(run);
          } catch (error) {
            for (const d of done.reverse()) set(d, !toPrivate, false);
            throw error;
          }
        }
      },
      revert: () => {
        try {
          for (const run of runs) set(run, !toPrivate, true);
        } catch (error) {
          throw new InconsistentStateError(`simulated private memory: block '${block.name}' could not be set back`, error);
        }
      },
    };
  }

  private view(block: RamBlock): PageStateMap {
    const view = this.views.get(block);
    if (!view) throw new InvalidArgumentError(`simulated private memory: unknown block '${block.name}'`);
    return view;
  }
}

function injected(name: string, block: RamBlock, run: ByteRange): SystemCallError {
  const errno = errnoNumber(name);
  return new SystemCallError({
    call: 'KVM_SET_MEMORY_ATTRIBUTES', errno, errnoName: name, description: errnoDescription(errno),
    target: `simulated private memory, block '${block.name}' (injected)`, range: { offset: run.offset, size: run.size },
  });
}

/** What the attributes mechanism needs of a VM (a sys KvmVm is one; tests pass a fake). */
export type AttributesVm = Pick<KvmVm, 'setMemoryAttributes'>;

/** KVM_MEMORY_ATTRIBUTE_PRIVATE. */
const ATTRIBUTE_PRIVATE = 8;

/**
 * KVM_SET_MEMORY_ATTRIBUTES on a VM with private memory (SW_PROTECTED,
 * SEV-SNP, TDX): the block's memslot binds both its shared memory and its
 * guest_memfd, and the attribute picks one per page. A change is one ioctl
 * over the request's range (as QEMU makes it); a revert sets each changed
 * run back. The caller creates the memslot; a new block's pages are made
 * private here, as guestmem's tracker starts private (KVM starts shared).
 */
export class AttributesPrivateMemory implements PrivateMemory {
  /** Always `attributes`. */
  readonly kind = 'attributes' as const;
  readonly needsPause = false;
  readonly memslotsInUse = 0;
  private readonly vm: AttributesVm;

  constructor(vm: AttributesVm) {
    this.vm = vm;
  }

  addBlock(block: RamBlock): void {
    this.vm.setMemoryAttributes(BigInt(block.gpa), block.size, ATTRIBUTE_PRIVATE);
  }

  removeBlock(): void {
    // The caller deletes the block's memslot; KVM drops its attributes with it.
  }

  plan(block: RamBlock, range: ByteRange, runs: readonly ByteRange[], toPrivate: boolean): PrivateMemoryChange {
    if (runs.length === 0) return NO_CHANGE;
    const attributes = toPrivate ? ATTRIBUTE_PRIVATE : 0;
    return {
      calls: 1,
      apply: () => {
        // One ioctl: it fails as a whole (the kernel sets nothing on a bad argument,
        // and on ENOMEM mid-way only pages already in the target state, which
        // reverting the changed runs covers).
        try {
          this.vm.setMemoryAttributes(BigInt(block.gpa + range.offset), range.size, attributes);
        } catch (error) {
          if (error instanceof SystemCallError && error.errnoName === 'ENOMEM') this.restore(block, runs, toPrivate, error);
          throw error;
        }
      },
      revert: () => {
        this.restore(block, runs, toPrivate, undefined);
      },
    };
  }

  private restore(block: RamBlock, runs: readonly ByteRange[], toPrivate: boolean, cause: unknown): void {
    try {
      for (const run of runs) this.vm.setMemoryAttributes(BigInt(block.gpa + run.offset), run.size, toPrivate ? 0 : ATTRIBUTE_PRIVATE);
    } catch (error) {
      throw new InconsistentStateError(
        `block '${block.name}': KVM's memory attributes could not be set back for ${runs.map((r) => `${hex(r.offset)}+${hex(r.size)}`).join(', ')}`,
        cause ?? error,
      );
    }
  }
}
