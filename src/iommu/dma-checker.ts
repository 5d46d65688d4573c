/**
 * An independent check of a device's DMA mappings against the guest's
 * shared memory. It watches a mapper's every change and keeps its own count
 * of mappings per 4 KiB page, and asks the discard managers (not the
 * listeners) what is shared. After every conversion ({@link DmaChecker.end})
 * it checks, over what the conversion touched:
 *
 * - every mapped page is shared, and mapped onto its own host page
 *   (the region's host mapping at the same offset): never stale, never
 *   aliased to other memory;
 * - every shared page is mapped;
 * - no page is mapped twice;
 * - no page that stayed shared lost its mapping, even for an instant: an
 *   unmap of a page that is shared again (or still) when the conversion
 *   ends is a transient gap, unless the conversion asked for that page to
 *   go private (then the unmap is the conversion itself, or its rollback).
 *
 * {@link DmaChecker.checkAll} compares everything, and the mapper's own
 * counts too.
 */
import { InvalidArgumentError } from '../core/errors.js';
import type { Disposable } from '../core/event.js';
import type { RamDiscardManager } from '../core/ram-discard-manager.js';
import { sectionEnd, subSection, type MemoryRegionSection } from '../core/section.js';
import { hex } from '../core/units.js';
import type { DmaMapper, DmaMapperEvent, DmaMapping } from './dma-mapper.js';

const PAGE = 4096;
/** Violations described in full; the rest are only counted. */
const DESCRIBED = 20;

/** One region the mappings must follow. */
export interface DmaCheckTarget {
  /** The manager whose populated (shared) state the mappings must equal. */
  readonly manager: RamDiscardManager;
  /** The section the listener registered (its address-space offset is the IOVA). */
  readonly section: MemoryRegionSection;
  /** Host virtual address of the region's first byte. */
  readonly hostAddress: number;
}

/** What the checker found. Every count but `conversions` must be 0. */
export interface DmaCheckReport {
  /** Conversions checked (begin/end windows). */
  readonly conversions: number;
  /** Pages that stayed shared yet were unmapped at some instant. */
  readonly transientGaps: number;
  /** Pages mapped while already mapped. */
  readonly doubleMapped: number;
  /** Pages found mapped but not shared, at checks. */
  readonly stale: number;
  /** Pages found shared but not mapped, at checks. */
  readonly missing: number;
  /** Mappings onto the wrong host memory. */
  readonly wrongAddress: number;
  /** Pages mapped outside every target. */
  readonly outside: number;
  /** The mapper's counts disagree with what it was seen doing. */
  readonly mapperMismatches: number;
  /** The first violations, described. */
  readonly violations: readonly string[];
}

interface Mirror {
  readonly target: DmaCheckTarget;
  /** First IOVA of the section. */
  readonly iova: number;
  readonly end: number;
  /** Mappings per page of the section. */
  readonly count: Uint8Array;
}

interface Range {
  readonly iova: number;
  readonly end: number;
}

/** Everything a report found: the sum of its counts but `conversions`. */
export function violationCount(report: Omit<DmaCheckReport, 'violations'>): number {
  const c = report;
  return c.transientGaps + c.doubleMapped + c.stale + c.missing + c.wrongAddress + c.outside + c.mapperMismatches;
}

/** Checks a mapper's mappings against shared memory (see the module documentation). */
export class DmaChecker implements Disposable {
  private readonly mirrors: Mirror[];
  private readonly subscription: Disposable;
  private window: { leaving: Range | undefined; unmapped: Range[]; touched: Range[] } | undefined;
  private counts = { conversions: 0, transientGaps: 0, doubleMapped: 0, stale: 0, missing: 0, wrongAddress: 0, outside: 0, mapperMismatches: 0 };
  private readonly violations: string[] = [];
  private readonly mapper: DmaMapper;

  /** Starts watching `mapper`; call before the listeners map anything. */
  constructor(mapper: DmaMapper, targets: readonly DmaCheckTarget[]) {
    this.mapper = mapper;
    this.mirrors = targets.map((t) => {
      const s = t.section;
      if (s.offsetWithinAddressSpace % PAGE !== 0 || s.size % PAGE !== 0 || s.offsetWithinRegion % PAGE !== 0) {
        throw new InvalidArgumentError(`check target '${s.region.name}': the section must be 4 KiB aligned`);
      }
      return { target: t, iova: s.offsetWithinAddressSpace, end: s.offsetWithinAddressSpace + s.size, count: new Uint8Array(s.size / PAGE) };
    });
    for (const m of mapper.mappings()) this.mapped(m);
    this.subscription = mapper.onChange((event) => {
      this.observe(event);
    });
  }

  /** What was found so far. */
  get report(): DmaCheckReport {
    return { ...this.counts, violations: this.violations.slice() };
  }

  /** True when nothing was found. */
  get clean(): boolean {
    return violationCount(this.counts) === 0;
  }

  /**
   * A conversion starts. `leaving`: the IOVA range it asks to make private
   * (its pages may lose their mappings); none for a conversion to shared.
   */
  begin(leaving?: { readonly iova: number; readonly size: number }): void {
    if (this.window) throw new InvalidArgumentError('DmaChecker.begin: a conversion is already being checked');
    const range = leaving ? { iova: leaving.iova, end: leaving.iova + leaving.size } : undefined;
    this.window = { leaving: range, unmapped: [], touched: range ? [range] : [] };
  }

  /** The conversion ended (done or refused): checks what it touched. */
  end(): void {
    const w = this.window;
    if (!w) throw new InvalidArgumentError('DmaChecker.end: no conversion is being checked');
    this.window = undefined;
    this.counts.conversions++;
    for (const r of w.unmapped) {
      const parts = w.leaving ? outside(r, w.leaving) : [r];
      for (const p of parts) this.countGaps(p);
    }
    for (const r of merged(w.touched)) this.compare(r.iova, r.end);
  }

  /** Runs `convert` between {@link begin} and {@link end}. */
  async around<T>(request: { readonly gpa: number; readonly size: number; readonly to: 'private' | 'shared' }, convert: () => Promise<T>): Promise<T> {
    this.begin(request.to === 'private' ? { iova: request.gpa, size: request.size } : undefined);
    try {
      return await convert();
    } finally {
      this.end();
    }
  }

  /** Compares every target whole, and the mapper's own counts. */
  checkAll(): void {
    let pages = 0;
    for (const m of this.mirrors) {
      this.compare(m.iova, m.end);
      for (const c of m.count) pages += c;
    }
    const stats = this.mapper.stats;
    if (stats.pinnedBytes !== pages * PAGE && this.counts.outside === 0) {
      this.counts.mapperMismatches++;
      this.note(`the mapper pins ${hex(stats.pinnedBytes)} bytes but ${hex(pages * PAGE)} were seen mapped`);
    }
    const listed = this.mapper.mappings().length;
    if (stats.mappings !== listed) {
      this.counts.mapperMismatches++;
      this.note(`the mapper counts ${String(stats.mappings)} mappings but lists ${String(listed)}`);
    }
  }

  /** Stops watching the mapper. */
  dispose(): void {
    this.subscription.dispose();
  }

  /** The same as {@link dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  // --- internals --------------------------------------------------------------

  private observe(event: DmaMapperEvent): void {
    if (event.kind === 'cut') {
      this.touch({ iova: event.iova, end: event.iova + PAGE });
      return;
    }
    const m = event.mapping;
    if (event.kind === 'map') {
      this.mapped(m);
    } else {
      this.forEachPage(m, (mirror, i) => {
        const c = mirror.count[i] ?? 0;
        if (c === 0) {
          this.counts.mapperMismatches++;
          this.note(`${hex(mirror.iova + i * PAGE)} was unmapped but never seen mapped`);
        } else {
          mirror.count[i] = c - 1;
        }
      });
      const r = { iova: m.iova, end: m.iova + m.size };
      if (this.window) this.window.unmapped.push(r);
      else this.countGaps(r);
    }
    this.touch({ iova: m.iova, end: m.iova + m.size });
  }

  private mapped(m: DmaMapping): void {
    let checkedAddress = false;
    this.forEachPage(m, (mirror, i) => {
      const c = mirror.count[i] ?? 0;
      if (c > 0) {
        this.counts.doubleMapped++;
        this.note(`${hex(mirror.iova + i * PAGE)} mapped twice`);
      }
      mirror.count[i] = Math.min(255, c + 1);
      if (!checkedAddress) {
        // Both sides advance together, so the first page settles the whole mapping (within this target).
        checkedAddress = true;
        const t = mirror.target;
        const iova = mirror.iova + i * PAGE;
        const expected = t.hostAddress + t.section.offsetWithinRegion + (iova - mirror.iova);
        const actual = m.vaddr + (iova - m.iova);
        if (actual !== expected) {
          this.counts.wrongAddress++;
          this.note(`${hex(m.iova)}+${hex(m.size)} maps host ${hex(actual)} at ${hex(iova)}, where the shared page is at ${hex(expected)}`);
        }
      }
    }, (iova) => {
      this.counts.outside++;
      this.note(`${hex(iova)} is mapped but is no RAM the checker follows`);
    });
  }

  /** Pages of [r.iova, r.end) shared now: unmapped while staying shared. */
  private countGaps(r: Range): void {
    this.forEachShared(r, (_mirror, a, b) => {
      this.counts.transientGaps += (b - a) / PAGE;
      this.note(`${hex(a)}+${hex(b - a)} stayed shared but was unmapped at some instant`);
    });
  }

  /** Mirror against the managers over [lo, hi): stale and missing pages. */
  private compare(lo: number, hi: number): void {
    for (const mirror of this.mirrors) {
      const a = Math.max(lo, mirror.iova);
      const b = Math.min(hi, mirror.end);
      if (a >= b) continue;
      let p = a;
      this.forEachShared({ iova: a, end: b }, (_m, s, e) => {
        this.expect(mirror, p, s, 0);
        this.expect(mirror, s, e, 1);
        p = e;
      });
      this.expect(mirror, p, b, 0);
    }
  }

  /** Pages of [a, b) must be mapped `want` times (0 or 1; more is counted at map time). */
  private expect(mirror: Mirror, a: number, b: number, want: 0 | 1): void {
    const first = Math.floor((a - mirror.iova) / PAGE);
    const end = Math.ceil((b - mirror.iova) / PAGE);
    let bad = 0;
    let firstBad = -1;
    for (let i = first; i < end; i++) {
      const c = mirror.count[i] ?? 0;
      if ((want === 0 && c !== 0) || (want === 1 && c === 0)) {
        bad++;
        if (firstBad < 0) firstBad = i;
      }
    }
    if (bad === 0) return;
    if (want === 0) this.counts.stale += bad;
    else this.counts.missing += bad;
    this.note(`${String(bad)} pages from ${hex(mirror.iova + firstBad * PAGE)} are ${want === 0 ? 'mapped but private' : 'shared but not mapped'}`);
  }

  /** Calls `fn(mirror, start, end)` (IOVAs) for each shared run inside `r`. */
  private forEachShared(r: Range, fn: (mirror: Mirror, start: number, end: number) => void): void {
    for (const mirror of this.mirrors) {
      const a = Math.max(r.iova, mirror.iova);
      const b = Math.min(r.end, mirror.end);
      if (a >= b) continue;
      const s = mirror.target.section;
      const start = s.offsetWithinRegion + (a - mirror.iova);
      const piece = subSection(s, start, Math.min(sectionEnd(s), start + (b - a)));
      const error = mirror.target.manager.replayPopulated(piece, (run) => {
        fn(mirror, run.offsetWithinAddressSpace, run.offsetWithinAddressSpace + run.size);
      });
      if (error instanceof Error) throw error;
      if (error !== undefined) throw new Error(`a replay callback threw ${typeof error}`);
    }
  }

  /** Calls `fn` for each page of the mapping inside a target, `outsideFn` for each outside. */
  private forEachPage(m: DmaMapping, fn: (mirror: Mirror, index: number) => void, outsideFn?: (iova: number) => void): void {
    let p = m.iova;
    const end = m.iova + m.size;
    while (p < end) {
      const mirror = this.mirrors.find((x) => p >= x.iova && p < x.end);
      if (!mirror) {
        const next = Math.min(end, ...this.mirrors.filter((x) => x.iova > p).map((x) => x.iova));
        for (let q = p; q < next; q += PAGE) outsideFn?.(q);
        p = next;
        continue;
      }
      const stop = Math.min(end, mirror.end);
      for (let i = (p - mirror.iova) / PAGE, n = (stop - mirror.iova) / PAGE; i < n; i++) fn(mirror, i);
      p = stop;
    }
  }

  private touch(r: Range): void {
    this.window?.touched.push(r);
  }

  private note(what: string): void {
    if (this.violations.length < DESCRIBED) this.violations.push(what);
  }
}

/** The parts of `r` outside `cut`. */
function outside(r: Range, cut: Range): Range[] {
  const parts: Range[] = [];
  if (r.iova < cut.iova) parts.push({ iova: r.iova, end: Math.min(r.end, cut.iova) });
  if (r.end > cut.end) parts.push({ iova: Math.max(r.iova, cut.end), end: r.end });
  return parts;
}

/** The ranges sorted, with overlapping and adjacent ones joined. */
function merged(ranges: readonly Range[]): Range[] {
  const sorted = ranges.slice().sort((x, y) => x.iova - y.iova);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.iova <= last.end) out[out.length - 1] = { iova: last.iova, end: Math.max(last.end, r.end) };
    else out.push(r);
  }
  return out;
}
