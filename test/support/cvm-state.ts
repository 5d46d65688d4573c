/**
 * Everything observable about a guest's memory, as one comparable value, so
 * a test can assert that a failed conversion left it exactly as before; and
 * a listener that keeps the set of pages it was told are mapped, checking
 * the order of the conversion steps as it is told.
 */
import assert from 'node:assert/strict';
import type { ByteRange } from '../../src/core/range.js';
import type { RamDiscardListener } from '../../src/core/ram-discard-manager.js';
import type { MemoryRegionSection } from '../../src/core/section.js';
import type { BackingStore } from '../../src/backing/backing-store.js';
import type { CvmMemory } from '../../src/conversion/cvm.js';
import type { RamBlock } from '../../src/conversion/guest-memory.js';
import { MemslotPrivateMemory } from '../../src/conversion/memslot-private-memory.js';
import { SimulatedPrivateMemory } from '../../src/conversion/private-memory.js';

const PAGE = 4096;

/** Ascending 4 KiB page offsets as maximal runs. */
export function pageRuns(pages: Iterable<number>): ByteRange[] {
  const runs: ByteRange[] = [];
  for (const p of pages) {
    const last = runs[runs.length - 1];
    if (last && last.offset + last.size === p) runs[runs.length - 1] = { offset: last.offset, size: last.size + PAGE };
    else runs.push({ offset: p, size: PAGE });
  }
  return runs;
}

/** The shared runs of a block's tracker. */
export function sharedRuns(block: RamBlock): ByteRange[] {
  const runs: ByteRange[] = [];
  block.attributes.forEachRun(0, block.size, true, (a, b) => runs.push({ offset: a, size: b - a }));
  return runs;
}

/** KVM's view of a block as runs of private pages (simulated or memslot mechanisms). */
export function kvmPrivateRuns(cvm: CvmMemory, block: RamBlock): ByteRange[] | string {
  const mech = cvm.privateMemory;
  if (mech instanceof MemslotPrivateMemory) {
    return mech.layoutOf(block).filter((s) => s.private).map((s) => ({ offset: s.start, size: s.end - s.start }));
  }
  if (mech instanceof SimulatedPrivateMemory) {
    const pages: number[] = [];
    for (let p = 0; p < block.size; p += PAGE) if (mech.isPrivate(block, p)) pages.push(p);
    return pageRuns(pages);
  }
  return mech.kind;
}

function storeState(store: BackingStore): unknown {
  const resident = store.residentPages(0, store.size);
  return {
    backed: store.ledger.backedRuns(),
    requested: store.ledger.requestedBytes,
    stranded: store.ledger.strandedBytes,
    resident: resident ? Buffer.from(resident).toString('base64') : 'unknown',
  };
}

/** The state of every block: tracker, KVM's view, both stores (ledger and kernel). */
export function cvmState(cvm: CvmMemory): unknown {
  return cvm.memory.blocks.map((block) => ({
    block: block.name,
    shared: sharedRuns(block),
    kvmPrivate: kvmPrivateRuns(cvm, block),
    sharedStore: storeState(block.shared),
    privateStore: storeState(block.private),
  }));
}

/**
 * A listener that keeps the pages it has been told are populated (mapped)
 * and checks, at each notification, that KVM's view agrees with the
 * protocol's order: a page is unmapped while KVM still has it shared
 * (to private: listeners first), and mapped once KVM has it shared (to
 * shared: KVM first).
 */
export class MappingListener implements RamDiscardListener {
  readonly name: string;
  readonly mapped = new Set<number>();
  readonly errors: string[] = [];
  /** Return true to refuse this populate. */
  refuse: (section: MemoryRegionSection) => boolean = () => false;
  /** Return true to fail this discard (after unmapping: the page is gone either way). */
  failDiscard: (section: MemoryRegionSection) => boolean = () => false;
  private readonly kvmShared: ((offset: number) => boolean) | undefined;

  constructor(name: string, kvmShared?: (offset: number) => boolean) {
    this.name = name;
    this.kvmShared = kvmShared;
  }

  notifyPopulate(section: MemoryRegionSection): void {
    if (this.refuse(section)) throw new Error(`${this.name} refuses ${section.offsetWithinRegion.toString(16)}`);
    for (let p = section.offsetWithinRegion; p < section.offsetWithinRegion + section.size; p += PAGE) {
      if (this.mapped.has(p)) this.errors.push(`populate of mapped page ${p.toString(16)}`);
      if (this.kvmShared && !this.kvmShared(p)) this.errors.push(`populate of ${p.toString(16)} while KVM has it private`);
      this.mapped.add(p);
    }
  }

  notifyDiscard(section: MemoryRegionSection): void {
    for (let p = section.offsetWithinRegion; p < section.offsetWithinRegion + section.size; p += PAGE) {
      if (!this.mapped.has(p)) this.errors.push(`discard of unmapped page ${p.toString(16)}`);
      if (this.kvmShared && !this.kvmShared(p)) this.errors.push(`discard of ${p.toString(16)} after KVM made it private`);
      this.mapped.delete(p);
    }
    if (this.failDiscard(section)) throw new Error(`${this.name} cannot unmap ${section.offsetWithinRegion.toString(16)}`);
  }

  /** Mapped pages as sorted runs. */
  runs(): ByteRange[] {
    return pageRuns([...this.mapped].sort((a, b) => a - b));
  }

  /** Asserts that no notification broke the order, and that the listener maps exactly the block's shared pages. */
  check(block: RamBlock): void {
    assert.deepEqual(this.errors, [], `${this.name}: protocol errors`);
    assert.deepEqual(this.runs(), sharedRuns(block), `${this.name}: mapped pages differ from the shared pages`);
  }
}
