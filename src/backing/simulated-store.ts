/**
 * A backing store with the semantics of the real ones and no system calls,
 * for tests and simulations: pages of 4 KiB, 2 MiB or 1 GiB (a huge-page
 * store behaves like hugetlb, whose partial discards strand, or like shmem
 * THP, whose partial discards split the page), data that reads zero
 * after a discard, and failures that can be injected, including an
 * allocation that fails halfway as fallocate can.
 *
 * Its "kernel" (which pages hold memory) is kept apart from the ledger, so
 * the conformance suite can check one against the other as it checks
 * st_blocks on a memfd.
 */
import { InvalidArgumentError, SystemCallError, UnsupportedOperationError } from '../core/errors.js';
import { PageStateMap } from '../core/page-state-map.js';
import { GiB, KiB, MiB, hex, toSafeByteCount, type ByteCount } from '../core/units.js';
import { errnoDescription, errnoNumber } from '../sys/errno.js';
import { BaseBackingStore, type HostMapping } from './backing-store.js';

/** Options for {@link SimulatedStore}. */
export interface SimulatedStoreOptions {
  /** Name in errors and reports. */
  readonly name: string;
  /** Size in bytes: a non-zero multiple of the page size. */
  readonly size: ByteCount;
  /** 4 KiB (default), 2 MiB or 1 GiB pages. */
  readonly pageSize?: number;
  /** Whether map() gives host access (default true; needs size <= 1 GiB). */
  readonly mappable?: boolean;
  /** With huge pages: like hugetlb (`huge`, the default) or like shmem THP (`transparent-huge`). */
  readonly policy?: 'huge' | 'transparent-huge';
}

/** A failure to inject into the next allocate or discard. */
export interface InjectedFailure {
  /** errno name, e.g. `ENOMEM` or `ENOSPC`. */
  readonly errno: string;
  /** For an allocation: bytes from the start of the range backed before failing (a partial allocation). */
  readonly afterBytes?: number;
}

const MAX_MAPPED = GiB;

/** A backing store simulated in memory. */
export class SimulatedStore extends BaseBackingStore {
  /** Always `simulated`. */
  readonly kind = 'simulated' as const;
  readonly mappable: boolean;
  /** The simulated kernel's backed units: whole pages (hugetlb-like), else 4 KiB pages (THP splits). */
  private readonly kernel: PageStateMap;
  private readonly kernelUnit: number;
  private kernelPages = 0;
  private data: Uint8Array | undefined;
  private readonly failures: { op: 'allocate' | 'discard'; failure: InjectedFailure }[] = [];
  private calls = 0;

  constructor(options: SimulatedStoreOptions) {
    const pageSize = options.pageSize ?? 4 * KiB;
    if (pageSize !== 4 * KiB && pageSize !== 2 * MiB && pageSize !== GiB) {
      throw new InvalidArgumentError(`simulated store '${options.name}': page size ${hex(pageSize)} must be 4 KiB, 2 MiB or 1 GiB`);
    }
    const size = toSafeByteCount(options.size, `simulated store '${options.name}': size`);
    if (size === 0 || size % pageSize !== 0) {
      throw new InvalidArgumentError(`simulated store '${options.name}': size ${hex(size)} must be a non-zero multiple of ${hex(pageSize)}`);
    }
    const policy = options.policy ?? 'huge';
    super(options.name, size, pageSize, 4 * KiB, policy);
    this.mappable = (options.mappable ?? true) && size <= MAX_MAPPED;
    this.kernelUnit = policy === 'huge' ? pageSize : 4 * KiB;
    this.kernel = new PageStateMap(size / this.kernelUnit);
  }

  /** What the simulated kernel holds (the analogue of st_blocks x 512). */
  kernelBackedBytes(): number {
    return this.kernelPages * this.kernelUnit;
  }

  /** Calls that reached the simulated kernel (allocations and punches), for tests. */
  get kernelCalls(): number {
    return this.calls;
  }

  /**
   * A guest touching [offset, offset + size): the simulated kernel backs the
   * pages as a fault would (whole huge pages with huge pages), and the ledger
   * does not see it, as with a real store.
   */
  fault(offset: number, size: number): void {
    this.back(offset, size);
  }

  /** Makes the next `op` that reaches the kernel fail with `failure`. */
  failNext(op: 'allocate' | 'discard', failure: InjectedFailure): void {
    this.failures.push({ op, failure });
  }

  /** Drops the injected failures not yet taken. */
  clearFailures(): void {
    this.failures.length = 0;
  }

  protected kernelAllocate(offset: number, size: number): void {
    this.calls++;
    const failure = this.takeFailure('allocate');
    const backed = failure ? Math.min(size, failure.afterBytes ?? 0) : size;
    if (backed > 0) this.back(offset, backed);
    if (failure) throw this.error('fallocate', failure.errno, offset, size);
  }

  protected kernelPunch(offset: number, size: number): void {
    this.calls++;
    const failure = this.takeFailure('discard');
    if (failure) throw this.error('fallocate', failure.errno, offset, size);
    this.data?.fill(0, offset, offset + size);
    const first = Math.ceil(offset / this.kernelUnit);
    const end = Math.floor((offset + size) / this.kernelUnit);
    if (first < end) {
      this.kernelPages -= this.kernel.countShared(first, end);
      this.kernel.setRange(first, end, false);
    }
  }

  protected hostMapping(): HostMapping {
    if (!this.mappable) throw new UnsupportedOperationError(`${this.name}: not mappable`);
    this.data ??= new Uint8Array(this.size);
    return { start: 0n, length: this.size, bytes: this.data };
  }

  protected kernelResidency(offset: number, size: number): Uint8Array {
    const vec = new Uint8Array(size / 4096);
    const per = this.kernelUnit / 4096;
    const first = Math.floor(offset / this.kernelUnit);
    const end = Math.ceil((offset + size) / this.kernelUnit);
    this.kernel.forEachRun(first, end, true, (a, b) => {
      const lo = Math.max(0, a * per - offset / 4096);
      const hi = Math.min(vec.length, b * per - offset / 4096);
      vec.fill(1, lo, hi);
    });
    return vec;
  }

  protected release(): void {
    this.data = undefined;
  }

  private back(offset: number, size: number): void {
    const first = Math.floor(offset / this.kernelUnit);
    const end = Math.ceil((offset + size) / this.kernelUnit);
    this.kernelPages += end - first - this.kernel.countShared(first, end);
    this.kernel.setRange(first, end, true);
  }

  private takeFailure(op: 'allocate' | 'discard'): InjectedFailure | undefined {
    const i = this.failures.findIndex((f) => f.op === op);
    if (i < 0) return undefined;
    const [entry] = this.failures.splice(i, 1);
    return entry?.failure;
  }

  private error(call: string, name: string, offset: number, size: number): SystemCallError {
    const errno = errnoNumber(name);
    return new SystemCallError({
      call, errno, errnoName: name, description: errnoDescription(errno),
      target: `simulated store '${this.name}' (injected)`, range: { offset, size },
    });
  }
}
