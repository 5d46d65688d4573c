/**
 * One lock per RAM block, taken in guest-physical order so that two
 * requests spanning the same blocks cannot deadlock. Conversions of one
 * block run one after another, in arrival order; conversions of different
 * blocks do not wait for each other. Listener registration takes the same
 * lock, so it never interleaves with a conversion's steps.
 */
import type { RamBlock } from './guest-memory.js';

/** A FIFO lock for code that awaits while holding it. */
class FifoLock {
  private tail: Promise<void> = Promise.resolve();
  private holders = 0;

  /** The release function if nobody holds or waits for the lock (taken without waiting); else undefined. */
  tryAcquire(): (() => void) | undefined {
    return this.holders > 0 ? undefined : this.enqueue().release;
  }

  /** Resolves with the release function once every earlier holder has released. */
  acquire(): Promise<() => void> {
    const { previous, release } = this.enqueue();
    return previous.then(() => release);
  }

  /**
   * Joins the queue: the next acquirer waits for this one's release. Returns
   * what this one waits for and its release function (idempotent).
   */
  private enqueue(): { previous: Promise<void>; release: () => void } {
    let resolve!: () => void;
    const previous = this.tail;
    this.tail = new Promise<void>((r) => {
      resolve = r;
    });
    this.holders++;
    let done = false;
    return {
      previous,
      release: () => {
        if (done) return;
        done = true;
        this.holders--;
        resolve();
      },
    };
  }

  /** Holders and waiters. */
  get queued(): number {
    return this.holders;
  }
}

/** The locks of a guest's blocks. */
export class BlockLocks {
  private readonly locks = new Map<RamBlock, FifoLock>();

  /**
   * Takes the locks of `blocks` at once when all are free (no wait, no
   * promise); otherwise takes none and returns undefined.
   */
  tryAcquire(blocks: readonly RamBlock[]): (() => void) | undefined {
    const releases: (() => void)[] = [];
    for (const block of blocks) {
      const release = this.lockOf(block).tryAcquire();
      if (!release) {
        for (const r of releases) r();
        return undefined;
      }
      releases.push(release);
    }
    return () => {
      for (let i = releases.length - 1; i >= 0; i--) releases[i]?.();
    };
  }

  /** Takes the locks of `blocks` in gpa order; resolves with a function that releases them all. */
  async acquire(blocks: readonly RamBlock[]): Promise<() => void> {
    const ordered = [...new Set(blocks)].sort((a, b) => a.gpa - b.gpa);
    const releases: (() => void)[] = [];
    for (const block of ordered) releases.push(await this.lockOf(block).acquire());
    return () => {
      for (let i = releases.length - 1; i >= 0; i--) releases[i]?.();
    };
  }

  private lockOf(block: RamBlock): FifoLock {
    let lock = this.locks.get(block);
    if (!lock) {
      lock = new FifoLock();
      this.locks.set(block, lock);
    }
    return lock;
  }

  /** Requests holding or waiting for the lock of `block`. */
  queued(block: RamBlock): number {
    return this.locks.get(block)?.queued ?? 0;
  }
}
