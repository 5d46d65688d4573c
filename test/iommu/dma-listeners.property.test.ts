/**
 * Random conversion streams through the orchestrator on simulated memory
 * with an assigned device, for every strategy on both mapping APIs, with
 * the independent checker watching every mapper call. Faults are injected
 * at random: another listener's veto (the device's populates are rolled
 * back), a KVM failure (a to-private conversion's discards are undone by
 * populating again), a cut the driver refuses, and a small type1
 * dma_entry_limit. After every step:
 *
 * - the checker is clean: every mapped page shared and mapped onto its own
 *   host page, every shared page mapped, nothing mapped twice, and no page
 *   that stayed shared ever lost its mapping;
 * - no conversion failed in its middle: refusals only (ConversionError),
 *   no discard failure, no inconsistent state, the VM running;
 * - the mapping count is what the strategy promises: one per granule for
 *   per-granule and aligned, at least the maximal shared runs for coalesced.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MappingListener } from '../support/cvm-state.js';
import { defined } from '../support/narrow.js';
import { propertyParameters } from '../support/property.js';
import { ConversionError } from '../../src/core/errors.js';
import { MiB } from '../../src/core/units.js';
import { createSimulatedCvmMemory } from '../../src/conversion/cvm.js';
import type { RamBlock } from '../../src/conversion/guest-memory.js';
import { SimulatedPrivateMemory } from '../../src/conversion/private-memory.js';
import { DMA_STRATEGIES, type DmaStrategy } from '../../src/iommu/dma-mapping-listener.js';
import { IommufdModel } from '../../src/iommu/iommufd-model.js';
import { VfioType1Model } from '../../src/iommu/vfio-type1-model.js';
import { attachDmaDevice } from '../../src/workload/dma-device.js';

const PAGE = 4096;
//   a: 8 MiB | hole 2 MiB | b: 4 MiB
const LAYOUT = [
  { name: 'a', gpa: 0, size: 8 * MiB },
  { name: 'b', gpa: 10 * MiB, size: 4 * MiB },
];
const HOLE = { name: 'mmio', gpa: 8 * MiB, size: 2 * MiB };
const SPAN = 14 * MiB;

type Fault = 'none' | 'veto' | 'kvm' | 'cut';

interface Convert {
  readonly unit: number;
  readonly units: number;
  readonly to: 'private' | 'shared';
  readonly fault: Fault;
  readonly at: number;
}

function commands(granule: number): fc.Arbitrary<Convert[]> {
  const convert = fc.record({
    unit: fc.integer({ min: 0, max: SPAN / granule - 1 }),
    units: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: granule === PAGE ? 600 : 6 })),
    to: fc.constantFrom('private' as const, 'shared' as const),
    fault: fc.constantFrom<Fault>('none', 'none', 'none', 'veto', 'kvm', 'cut'),
    at: fc.integer({ min: 0, max: 2 }),
  });
  return fc.array(convert, { minLength: 1, maxLength: 40 });
}

/** Maximal shared runs of every block. */
function sharedRuns(blocks: readonly RamBlock[]): number {
  let n = 0;
  for (const b of blocks) b.manager.replayPopulated(b.region.section(), () => { n++; });
  return n;
}

describe('DMA mapping listeners under random conversions', () => {
  for (const policy of ['4k', '2m'] as const) {
    const granule = policy === '4k' ? PAGE : 2 * MiB;
    for (const model of ['vfio-type1', 'iommufd'] as const) {
      for (const strategy of DMA_STRATEGIES) {
        it(`${strategy} on ${model}, ${policy} conversions: never stale, never a gap, never a mid-conversion failure`, async () => {
          await fc.assert(fc.asyncProperty(commands(granule), fc.integer({ min: 8, max: 2500 }), async (stream, limit) => {
            await run(policy, granule, model, strategy, stream, limit);
          }), propertyParameters(25));
        });
      }
    }
  }
});

async function run(policy: '4k' | '2m', granule: number, model: 'vfio-type1' | 'iommufd', strategy: DmaStrategy, stream: readonly Convert[], limit: number): Promise<void> {
  const kvm = new SimulatedPrivateMemory();
  const cvm = createSimulatedCvmMemory({ ram: LAYOUT, holes: [HOLE], privateMemory: kvm, granularity: policy });
  // Registered first, so notified after the device: its refusals roll the device back.
  const others = new Map(cvm.memory.blocks.map((b) => [b, new MappingListener(`other-${b.name}`)]));
  for (const [block, other] of others) await cvm.orchestrator.registerListener(block, other);
  const iommufd = new IommufdModel({ name: 'ioas' });
  const mapper = model === 'iommufd' ? iommufd : new VfioType1Model({ name: 'vfio', dmaEntryLimit: limit });
  const device = await attachDmaDevice(cvm, { mapper, strategy, check: true, ...(strategy === 'aligned' ? { granule } : {}) });
  const checker = defined(device.checker, 'checker');
  for (const c of stream) {
    const gpa = c.unit * granule;
    const size = Math.min(c.units * granule, SPAN - gpa);
    let n = 0;
    if (c.fault === 'veto') for (const other of others.values()) other.refuse = () => n++ === c.at;
    // The apply fails; its undo (the next call) must go through, or the VM stops by design.
    if (c.fault === 'kvm') kvm.failNext({ errno: 'ENOMEM' });
    if (c.fault === 'cut') iommufd.cuts = () => true;
    const what = `${c.to} ${gpa.toString(16)}+${size.toString(16)} (${c.fault})`;
    try {
      const result = await checker.around({ gpa, size, to: c.to }, () => cvm.orchestrator.convert({ gpa, size, to: c.to, source: 'api', pageSize: PAGE }));
      assert.deepEqual(result.discardFailures, [], `${what}: a discard failed`);
    } catch (error) {
      assert.ok(error instanceof ConversionError, `${what}: not a clean refusal: ${String(error)}`);
    }
    kvm.clearFailure();
    iommufd.cuts = 'work';
    for (const other of others.values()) other.refuse = () => false;
    assert.equal(cvm.orchestrator.stopped, undefined, `${what}: the VM stopped`);
    checker.checkAll();
    assert.deepEqual(checker.report.violations, [], `${what}: checker`);
    assert.ok(checker.clean, `${what}: ${JSON.stringify(checker.report)}`);
    const shared = cvm.memory.blocks.reduce((s, b) => s + b.attributes.sharedBytes, 0);
    if (strategy === 'coalesced') {
      assert.ok(mapper.mappingCount >= sharedRuns(cvm.memory.blocks), `${what}: fewer mappings than runs`);
    } else {
      const g = strategy === 'aligned' ? granule : PAGE;
      assert.equal(mapper.mappingCount, shared / g, `${what}: one mapping per ${g.toString(16)} granule`);
    }
    for (const l of device.listeners) assert.equal(l.stats.remaps, 0, `${what}: a discard was not prepared`);
  }
  await device.detach();
  assert.equal(mapper.mappingCount, 0, 'detaching unmaps everything');
  cvm.close();
}
