/**
 * The page-state tracker against a flat bitmap in C (bench/c/flat-bitmap.c):
 * memory for a 1 TiB block, and the speed of conversions, is-populated and
 * replay. Both sides replay the same operation lists and must end in the same
 * state (checked by a hash of the shared runs) and do the same query work.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PageStateMap } from '../src/core/page-state-map.js';
import { RamBlockAttributes } from '../src/core/ram-block-attributes.js';
import { RamDiscardManager } from '../src/core/ram-discard-manager.js';
import { CountingListener } from '../src/workload/counting-listener.js';
import { MemoryRegion, type MemoryRegionSection } from '../src/core/section.js';
import { GiB, KiB, MiB, TiB } from '../src/core/units.js';
import { buildC, runC } from './lib/native.js';
import { OP_IS_POPULATED, OP_REPLAY_POPULATED, OP_TO_PRIVATE, OP_TO_SHARED, OpList, Rng } from './lib/ops.js';
import { result, round, type BenchResult, type Goal } from './lib/result.js';

const PAGE = 4 * KiB;
const BLOCK = 1 * TiB;
const PAGES = BLOCK / PAGE;
const CHUNK = 2 * MiB;
const CHUNKS = BLOCK / CHUNK;

interface CResult {
  readonly nsPerOp: number;
  readonly minNsPerOp: number;
  readonly notifications: number;
  readonly work: number;
  readonly sharedPages: number;
  readonly stateHash: string;
  readonly bitmapBytes: number;
}

// --- map shapes -------------------------------------------------------------

/** Where the boot pattern puts its 1 GiB SWIOTLB pool: 2 MiB aligned, not 1 GiB aligned. */
const POOL = 37 * GiB + 6 * MiB;

/**
 * A CVM after boot: a 1 GiB SWIOTLB pool converted to shared in 2 MiB
 * requests, then 10,000 scattered 4 KiB pages shared (dma_alloc).
 */
function cvmBoot(ops: OpList, rng: Rng): void {
  for (let o = POOL; o < POOL + GiB; o += CHUNK) ops.push(OP_TO_SHARED, o, CHUNK);
  for (let i = 0; i < 10_000; i++) ops.push(OP_TO_SHARED, rng.below(PAGES) * PAGE, PAGE);
}

/** The boot pattern plus 1% of all pages shared at random: nearly every 2 MiB chunk mixed. */
function sprinkled(ops: OpList, rng: Rng): void {
  cvmBoot(ops, rng);
  for (let i = 0; i < PAGES / 100; i++) ops.push(OP_TO_SHARED, rng.below(PAGES) * PAGE, PAGE);
}

// --- TypeScript side -----------------------------------------------------------

interface TsRun {
  readonly nsPerOp: number;
  readonly notifications: number;
  readonly work: number;
  readonly sharedPages: number;
  readonly stateHash: string;
  readonly attrs: RamBlockAttributes;
}

function build(setup: OpList): { region: MemoryRegion; manager: RamDiscardManager; attrs: RamBlockAttributes; listener: CountingListener } {
  const region = new MemoryRegion('ram', BLOCK);
  const manager = new RamDiscardManager(region);
  const attrs = new RamBlockAttributes(manager);
  const listener = new CountingListener();
  manager.registerListener(listener, region.section());
  for (let i = 0; i < setup.length; i++) {
    attrs.stateChange(setup.offsets[i] ?? 0, setup.sizes[i] ?? 0, setup.kinds[i] === OP_TO_PRIVATE ? 'private' : 'shared');
  }
  return { region, manager, attrs, listener };
}

function runTs(setup: OpList, measure: OpList, repeats: number): TsRun {
  const times: number[] = [];
  let last: TsRun | undefined;
  for (let r = 0; r < repeats; r++) {
    const { region, manager, attrs, listener } = build(setup);
    // Sections are built before timing, as a caller holds its MemoryRegionSection.
    const whole = region.section();
    const sections: MemoryRegionSection[] = [];
    for (let i = 0; i < measure.length; i++) {
      const k = measure.kinds[i];
      sections.push(k === OP_IS_POPULATED || k === OP_REPLAY_POPULATED ? region.section(measure.offsets[i] ?? 0, measure.sizes[i] ?? 0) : whole);
    }
    listener.notifications = 0;
    let populated = 0;
    let replayRuns = 0;
    let replayBytes = 0;
    const onRun = (s: MemoryRegionSection): void => {
      replayRuns++;
      replayBytes += s.size;
    };
    const { kinds, offsets, sizes } = measure;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < measure.length; i++) {
      const k = kinds[i];
      if (k === OP_TO_SHARED) attrs.stateChange(offsets[i] ?? 0, sizes[i] ?? 0, 'shared');
      else if (k === OP_TO_PRIVATE) attrs.stateChange(offsets[i] ?? 0, sizes[i] ?? 0, 'private');
      else if (k === OP_IS_POPULATED) populated += manager.isPopulated(sections[i] ?? whole) ? 1 : 0;
      else manager.replayPopulated(sections[i] ?? whole, onRun);
    }
    const t1 = process.hrtime.bigint();
    times.push(Number(t1 - t0) / Math.max(1, measure.length));
    const { sharedPages, stateHash } = checksum(attrs);
    last = { nsPerOp: 0, notifications: listener.notifications, work: populated + replayRuns * 3 + replayBytes / PAGE, sharedPages, stateHash, attrs };
  }
  times.sort((a, b) => a - b);
  if (!last) throw new Error('no repeats');
  return { ...last, nsPerOp: times[Math.floor(times.length / 2)] ?? 0 };
}

/** FNV-1a over the shared runs' boundaries (in pages), as the C harness computes it. */
function checksum(attrs: RamBlockAttributes): { sharedPages: number; stateHash: string } {
  const prime = 1099511628211n;
  const mask = (1n << 64n) - 1n;
  let h = 1469598103934665603n;
  let n = 0;
  let p = attrs.nextPopulated(0, BLOCK);
  while (p < BLOCK) {
    const q = attrs.nextDiscarded(p, BLOCK);
    n += (q - p) / PAGE;
    h = ((h ^ BigInt(p / PAGE)) * prime) & mask;
    h = ((h ^ BigInt(q / PAGE)) * prime) & mask;
    p = attrs.nextPopulated(q, BLOCK);
  }
  return { sharedPages: n, stateHash: h.toString(16).padStart(16, '0') };
}

// --- scenarios ----------------------------------------------------------------

interface SpeedScenario {
  readonly id: string;
  readonly metric: string;
  readonly setup: (ops: OpList, rng: Rng) => void;
  readonly measure: (ops: OpList, rng: Rng) => void;
  readonly repeats: number;
  readonly goal?: Goal;
}

const speedScenarios: SpeedScenario[] = [
  {
    id: 'tracker.convert-4k.dma-churn',
    metric: '4 KiB conversion, dma_alloc/free churn at random places (10k slots), 1 TiB',
    setup: cvmBoot,
    measure: (ops, rng) => {
      const slots = new Float64Array(10_000).fill(-1);
      for (let i = 0; i < 1_000_000; i++) {
        const s = rng.below(slots.length);
        const page = slots[s] ?? -1;
        if (page >= 0) {
          ops.push(OP_TO_PRIVATE, page * PAGE, PAGE);
          slots[s] = -1;
        } else {
          const p = rng.below(PAGES);
          ops.push(OP_TO_SHARED, p * PAGE, PAGE);
          slots[s] = p;
        }
      }
    },
    repeats: 5,
    goal: { on: 'ratio', max: 1.0 },
  },
  {
    id: 'tracker.convert-4k.uniform',
    metric: '4 KiB conversion, uniformly random page and direction, 1 TiB',
    setup: cvmBoot,
    measure: (ops, rng) => {
      for (let i = 0; i < 1_000_000; i++) ops.push(rng.below(2) === 0 ? OP_TO_SHARED : OP_TO_PRIVATE, rng.below(PAGES) * PAGE, PAGE);
    },
    repeats: 5,
    goal: { on: 'ratio', max: 1.0 },
  },
  {
    id: 'tracker.convert-2m.fragmented',
    metric: '2 MiB conversion of a random chunk, 1% of pages shared at random',
    setup: sprinkled,
    measure: (ops, rng) => {
      for (let i = 0; i < 100_000; i++) ops.push(rng.below(2) === 0 ? OP_TO_SHARED : OP_TO_PRIVATE, rng.below(CHUNKS) * CHUNK, CHUNK);
    },
    repeats: 3,
    goal: { on: 'ratio', max: 0.1 },
  },
  {
    id: 'tracker.convert-2m.uniform-chunks',
    metric: '2 MiB conversion of a random chunk, boot pattern (chunks mostly uniform)',
    setup: cvmBoot,
    measure: (ops, rng) => {
      for (let i = 0; i < 1_000_000; i++) ops.push(rng.below(2) === 0 ? OP_TO_SHARED : OP_TO_PRIVATE, rng.below(CHUNKS) * CHUNK, CHUNK);
    },
    repeats: 5,
  },
  {
    id: 'tracker.convert-1g.fragmented',
    metric: '1 GiB conversion, 1% of pages shared at random',
    setup: sprinkled,
    measure: (ops, rng) => {
      for (let i = 0; i < 300; i++) ops.push(rng.below(2) === 0 ? OP_TO_SHARED : OP_TO_PRIVATE, rng.below(BLOCK / GiB) * GiB, GiB);
    },
    repeats: 3,
    goal: { on: 'ratio', max: 0.1 },
  },
  {
    id: 'tracker.is-populated.fragmented',
    metric: 'is-populated of 2 MiB and 1 GiB sections, half inside the shared pool, boot pattern',
    setup: cvmBoot,
    measure: (ops, rng) => {
      for (let i = 0; i < 200_000; i++) {
        const size = rng.below(2) === 0 ? CHUNK : GiB;
        const inPool = rng.below(2) === 0;
        const offset = inPool ? POOL + rng.below((GiB - size) / PAGE + 1) * PAGE : rng.below((BLOCK - size) / PAGE + 1) * PAGE;
        ops.push(OP_IS_POPULATED, offset, size);
      }
    },
    repeats: 5,
    goal: { on: 'ratio', max: 0.1 },
  },
  {
    id: 'tracker.replay.fragmented',
    metric: 'replay populated over the whole 1 TiB block, boot pattern (~10k runs)',
    setup: cvmBoot,
    measure: (ops) => {
      for (let i = 0; i < 20; i++) ops.push(OP_REPLAY_POPULATED, 0, BLOCK);
    },
    repeats: 5,
    goal: { on: 'ratio', max: 0.1 },
  },
  {
    id: 'tracker.replay.sprinkled',
    metric: 'replay populated over the whole 1 TiB block, 1% of pages shared (~2.7M runs)',
    setup: sprinkled,
    measure: (ops) => {
      for (let i = 0; i < 3; i++) ops.push(OP_REPLAY_POPULATED, 0, BLOCK);
    },
    repeats: 3,
  },
];

// --- memory -----------------------------------------------------------------

function memoryResults(): BenchResult[] {
  const flat = PAGES / 8;
  const baseline = { name: 'flat bitmap', value: flat };
  const results: BenchResult[] = [];
  const empty = new PageStateMap(PAGES);
  results.push(result({
    id: 'tracker.memory.all-private', metric: 'tracker bytes, 1 TiB block of 4 KiB pages, all private',
    value: empty.byteSize, unit: 'bytes', baseline, target: { on: 'value', max: 1 * MiB },
  }));

  const ops = new OpList();
  cvmBoot(ops, new Rng(1));
  const { attrs } = build(ops);
  results.push(result({
    id: 'tracker.memory.cvm-boot', metric: 'tracker bytes after the boot pattern (1 GiB pool + 10,000 scattered 4 KiB pages)',
    value: attrs.stats.byteSize, unit: 'bytes', baseline, target: { on: 'value', max: 1 * MiB },
    note: `${attrs.stats.singletons} singleton chunks, ${attrs.stats.leaves} leaves, index ${attrs.stats.indexMode}`,
  }));

  // Every other page shared: a leaf for every chunk.
  const worst = new PageStateMap(PAGES);
  const before = process.memoryUsage().arrayBuffers;
  for (let p = 0; p < PAGES; p += 2) worst.setRange(p, p + 1, true);
  const measured = process.memoryUsage().arrayBuffers - before;
  results.push(result({
    id: 'tracker.memory.alternating', metric: 'tracker bytes, every other page shared (worst case)',
    value: worst.byteSize, unit: 'bytes', baseline, target: { on: 'ratio', max: 1.1 },
    note: `array buffers grew by ${round(measured / MiB, 2)} MiB while building it`,
  }));
  return results;
}

// --- entry ------------------------------------------------------------------

export function runTrackerBench(options: { readonly only?: RegExp; readonly log: (line: string) => void }): BenchResult[] {
  const results: BenchResult[] = [];
  if (!options.only || options.only.test('tracker.memory')) {
    options.log('tracker: memory');
    results.push(...memoryResults());
  }
  const binary = buildC('flat-bitmap');
  const dir = mkdtempSync(join(tmpdir(), 'guestmem-bench-'));
  try {
    for (const s of speedScenarios) {
      if (options.only && !options.only.test(s.id)) continue;
      options.log(`tracker: ${s.id}`);
      const rng = new Rng(0x5eed);
      const setup = new OpList();
      s.setup(setup, rng);
      const measure = new OpList();
      s.measure(measure, rng);
      setup.writeTo(join(dir, 'setup.ops'));
      measure.writeTo(join(dir, 'measure.ops'));
      const c = runC(binary, [String(PAGES), String(PAGE), join(dir, 'setup.ops'), join(dir, 'measure.ops'), String(s.repeats)]) as unknown as CResult;
      const ts = runTs(setup, measure, s.repeats);
      if (ts.stateHash !== c.stateHash || ts.sharedPages !== c.sharedPages || ts.work !== c.work) {
        throw new Error(`${s.id}: the TypeScript and C runs disagree (state ${ts.stateHash}/${c.stateHash}, `
          + `shared ${ts.sharedPages}/${c.sharedPages}, work ${ts.work}/${c.work})`);
      }
      results.push(result({
        id: s.id, metric: s.metric, value: round(ts.nsPerOp, 1), unit: 'ns/op',
        baseline: { name: 'C flat bitmap', value: round(c.nsPerOp, 1) },
        ...(s.goal ? { target: s.goal } : {}),
        note: `${measure.length} ops; listener notifications: ours ${ts.notifications}, flat bitmap ${c.notifications}; final states identical`,
      }));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}
