/**
 * Shared guest memory in a memfd: 4 KiB pages, transparent huge pages (shmem
 * THP), or hugetlb 2 MiB / 1 GiB pages (MFD_HUGETLB).
 *
 * - 4k: the ledger is per 4 KiB page.
 * - thp: an allocation backs the whole 2 MiB windows it touches (huge pages
 *   where the kernel can; see ledger.ts for why always whole windows); a
 *   discard splits the huge page and frees exactly what it discards.
 * - hugetlb: the ledger's page is the huge page; a 4 KiB discard inside a
 *   huge page zeroes those bytes and frees nothing (stranded) until the whole
 *   page is discarded.
 *
 * The kernel's own accounting, st_blocks, is {@link MemfdStore.kernelBackedBytes}.
 */
import { CapabilityError, InvalidArgumentError } from '../core/errors.js';
import { GiB, KiB, MiB, hex, toSafeByteCount, type ByteCount } from '../core/units.js';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  HOST_PAGE_BYTES,
  MAP_SHARED,
  MFD_CLOEXEC,
  MFD_HUGETLB,
  MFD_HUGE_1GB,
  MFD_HUGE_2MB,
  PROT_READ,
  PROT_WRITE,
  fallocate,
  fstat,
  ftruncate,
  memfdCreate,
  mincore,
  type CallContext,
} from '../sys/libc.js';
import { Mapping } from '../sys/mapping.js';
import { OwnedFd } from '../sys/owned-fd.js';
import { probeHost } from '../sys/probe.js';
import { BaseBackingStore, type BackingKind, type HostMapping } from './backing-store.js';

/** How a memfd store's memory is paged. */
export type MemfdPages = '4k' | 'thp' | 'hugetlb-2m' | 'hugetlb-1g';

/** Options for {@link MemfdStore.create}. */
export interface MemfdStoreOptions {
  /** Name in errors (also the memfd's name). */
  readonly name: string;
  /** Size in bytes: a multiple of the page size. */
  readonly size: ByteCount;
  /** Paging; default `4k`. */
  readonly pages?: MemfdPages;
}

const HUGE: Record<MemfdPages, number> = { '4k': 4 * KiB, thp: 2 * MiB, 'hugetlb-2m': 2 * MiB, 'hugetlb-1g': GiB };

/** A memfd holding shared guest memory. */
export class MemfdStore extends BaseBackingStore {
  /** `memfd`, `memfd-thp` or `hugetlb`, from the paging. */
  readonly kind: BackingKind;
  readonly mappable = true;
  /** The paging the store was created with. */
  readonly pages: MemfdPages;
  private readonly fd: OwnedFd;
  private mapping: Mapping | undefined;
  /** Error contexts, built once (a failing call adds its range). */
  private readonly allocateContext: CallContext;
  private readonly punchContext: CallContext;

  private constructor(name: string, size: number, pages: MemfdPages, fd: OwnedFd) {
    super(name, size, HUGE[pages], HOST_PAGE_BYTES, pages === 'thp' ? 'transparent-huge' : 'huge');
    this.pages = pages;
    this.kind = pages === '4k' ? 'memfd' : pages === 'thp' ? 'memfd-thp' : 'hugetlb';
    this.fd = fd;
    this.punchContext = { target: fd.toString() };
    this.allocateContext = this.kind === 'hugetlb'
      ? { target: fd.toString(), hint: `reserve huge pages: echo N > /sys/kernel/mm/hugepages/hugepages-${this.pageSize / KiB}kB/nr_hugepages` }
      : this.punchContext;
  }

  /**
   * Creates the memfd, sized and empty.
   *
   * @throws CapabilityError for THP when shmem THP is off (shmem_enabled
   *         `never`, `advise` or `deny`); InvalidArgumentError for a size that
   *         is not a multiple of the page size; SystemCallError from the kernel.
   */
  static create(options: MemfdStoreOptions): MemfdStore {
    const pages = options.pages ?? '4k';
    if (!(pages in HUGE)) throw new InvalidArgumentError(`unknown memfd paging ${JSON.stringify(pages)}`);
    const size = toSafeByteCount(options.size, `memfd store '${options.name}': size`);
    if (size === 0 || size % HUGE[pages] !== 0) {
      throw new InvalidArgumentError(`memfd store '${options.name}': size ${hex(size)} must be a non-zero multiple of ${hex(HUGE[pages])}`);
    }
    if (pages === 'thp') {
      const mode = probeHost({ refresh: true }).shmemThp;
      if (mode !== 'always' && mode !== 'within_size' && mode !== 'force') {
        throw new CapabilityError('shmem transparent huge pages',
          `/sys/kernel/mm/transparent_hugepage/shmem_enabled is ${typeof mode === 'string' ? mode : mode.raw}; set it to within_size or always`);
      }
    }
    let flags = MFD_CLOEXEC;
    if (pages === 'hugetlb-2m') flags |= MFD_HUGETLB | MFD_HUGE_2MB;
    if (pages === 'hugetlb-1g') flags |= MFD_HUGETLB | MFD_HUGE_1GB;
    const fd = new OwnedFd(memfdCreate(options.name, flags), `memfd '${options.name}'`);
    try {
      ftruncate(fd.fd, size, { target: fd.toString() });
    } catch (error) {
      fd.close();
      throw error;
    }
    return new MemfdStore(options.name, size, pages, fd);
  }

  /** The memfd's descriptor. */
  get descriptor(): number {
    return this.fd.fd;
  }

  /** What the kernel says the file holds: st_blocks x 512. */
  kernelBackedBytes(): number {
    return fstat(this.fd.fd, { target: this.fd.toString() }).blocks * 512;
  }

  protected kernelAllocate(offset: number, size: number): void {
    fallocate(this.fd.fd, FALLOC_FL_KEEP_SIZE, offset, size, this.allocateContext);
  }

  protected kernelPunch(offset: number, size: number): void {
    fallocate(this.fd.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, size, this.punchContext);
  }

  protected hostMapping(): HostMapping {
    this.mapping ??= Mapping.map(this.size, PROT_READ | PROT_WRITE, MAP_SHARED, this.fd.fd, 0, this.fd.toString());
    const m = this.mapping;
    return { start: m.start, length: m.length, bytes: m.bytes };
  }

  protected kernelResidency(offset: number, size: number): Uint8Array {
    const start = this.hostMapping().start;
    const vec = mincore(start + BigInt(offset), size, this.punchContext);
    for (let i = 0; i < vec.length; i++) vec[i] = (vec[i] ?? 0) & 1;
    return vec;
  }

  protected release(): void {
    this.mapping?.close();
    this.fd.close();
  }
}
