import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HOST, TWO_53, m, mapAll, refused } from '../../test/support/dma.js';
import { DmaMapError, InvalidArgumentError } from '../core/errors.js';
import { KiB, MiB } from '../core/units.js';
import type { DmaMapperEvent } from './dma-mapper.js';
import { DEFAULT_DMA_ENTRY_LIMIT, VfioType1Model } from './vfio-type1-model.js';

describe('VfioType1Model', () => {
  describe('map', () => {
    it('maps a page-aligned range and lists it with its host address', () => {
      const mapper = new VfioType1Model({ name: 'vfio0' });
      assert.equal(mapper.kind, 'vfio-type1');
      assert.equal(mapper.name, 'vfio0');
      assert.equal(mapper.pageSize, 4 * KiB);
      mapper.map(0x10_0000, 2 * MiB, HOST);
      assert.deepEqual(mapper.mappings(), [{ iova: 0x10_0000, size: 2 * MiB, vaddr: HOST }]);
      assert.equal(mapper.mappingCount, 1);
    });

    it('refuses a zero size with EINVAL', () => {
      const mapper = new VfioType1Model();
      const error = refused(mapper, 'EINVAL', () => { mapper.map(0, 0, HOST); });
      assert.equal(error.call, 'VFIO_IOMMU_MAP_DMA');
      assert.match(error.message, /^vfio-type1: VFIO_IOMMU_MAP_DMA iova 0x0 size 0x0 failed: EINVAL: /);
    });

    it('refuses an iova, size or vaddr not aligned to the IOMMU page size with EINVAL', () => {
      const mapper = new VfioType1Model();
      mapAll(mapper, [64 * KiB, 4 * KiB]);
      for (const [iova, size, vaddr] of [
        [0x800, 4 * KiB, HOST], // iova
        [0, 6 * KiB, HOST], // size
        [0, 4 * KiB, HOST + 0x200], // vaddr
        [-4 * KiB, 4 * KiB, HOST], // negative
        [4.5 * KiB, 4 * KiB, HOST], // fractional
        [Number.NaN, 4 * KiB, HOST],
      ] as const) {
        refused(mapper, 'EINVAL', () => { mapper.map(iova, size, vaddr); });
      }
    });

    it('refuses a range whose iova or vaddr end would pass 2^53 with EINVAL', () => {
      const mapper = new VfioType1Model();
      // The last page whose end is a safe integer.
      const top = TWO_53 - 8 * KiB;
      mapper.map(top, 4 * KiB, HOST);
      mapper.map(0, 4 * KiB, top);
      const error = refused(mapper, 'EINVAL', () => { mapper.map(top, 16 * KiB, HOST + 4 * KiB); });
      assert.match(error.message, /EINVAL: the range wraps around/, 'it overlaps too: the wrap is found first');
      assert.match(refused(mapper, 'EINVAL', () => { mapper.map(64 * KiB, 16 * KiB, top); }).message, /wraps around/);
    });

    it('refuses any overlap with EEXIST: start inside, end inside, covering, inside, exact', () => {
      const mapper = new VfioType1Model();
      mapAll(mapper, [16 * KiB, 16 * KiB]); // [16K, 32K)
      for (const [iova, size] of [
        [24 * KiB, 16 * KiB], // starts inside
        [8 * KiB, 12 * KiB], // ends inside
        [8 * KiB, 32 * KiB], // covers it
        [20 * KiB, 4 * KiB], // inside it
        [16 * KiB, 16 * KiB], // exactly it
      ] as const) {
        const error = refused(mapper, 'EEXIST', () => { mapper.map(iova, size, HOST + iova); });
        assert.match(error.message, /overlaps the mapping 0x4000\+0x4000/);
      }
      mapAll(mapper, [12 * KiB, 4 * KiB], [32 * KiB, 4 * KiB]); // touching it on either side is no overlap
      assert.equal(mapper.mappingCount, 3);
    });

    it('refuses a map past dma_entry_limit with ENOSPC, naming the limit, and maps again once one is unmapped', () => {
      const mapper = new VfioType1Model({ dmaEntryLimit: 3 });
      assert.equal(mapper.mappingLimit, 3);
      assert.equal(mapper.limitName, 'dma_entry_limit');
      mapAll(mapper, [0, 4 * KiB], [8 * KiB, 4 * KiB], [16 * KiB, 4 * KiB]);
      const error = refused(mapper, 'ENOSPC', () => { mapper.map(24 * KiB, 4 * KiB, HOST); });
      assert.match(error.message, /all 3 mappings of dma_entry_limit are in use \(hint: raise vfio_iommu_type1\.dma_entry_limit/);
      mapper.unmap(8 * KiB, 4 * KiB);
      mapAll(mapper, [24 * KiB, 4 * KiB]);
      assert.equal(mapper.mappingCount, 3);
    });

    it('defaults dma_entry_limit to the kernel default 65535', () => {
      assert.equal(DEFAULT_DMA_ENTRY_LIMIT, 65535);
      assert.equal(new VfioType1Model().mappingLimit, 65535);
    });

    it('refuses a map that would pin past memlockLimit with ENOMEM', () => {
      const mapper = new VfioType1Model({ memlockLimit: 16 * KiB });
      mapAll(mapper, [0, 8 * KiB], [16 * KiB, 8 * KiB]); // exactly the limit: fine
      const error = refused(mapper, 'ENOMEM', () => { mapper.map(32 * KiB, 4 * KiB, HOST); });
      assert.match(error.message, /pinning would lock 20480 bytes, past RLIMIT_MEMLOCK 16384/);
      mapper.unmap(0, 8 * KiB);
      mapAll(mapper, [32 * KiB, 4 * KiB]);
      assert.equal(mapper.stats.pinnedBytes, 12 * KiB);
    });

    it('checks in the documented order: EINVAL, then EEXIST, then ENOSPC, then ENOMEM', () => {
      // At the mapping limit and at the pin limit, with [0, 4K) mapped.
      const mapper = new VfioType1Model({ dmaEntryLimit: 2, memlockLimit: 8 * KiB });
      mapAll(mapper, [0, 4 * KiB], [8 * KiB, 4 * KiB]);
      // Misaligned (vaddr) and overlapping, over both limits.
      refused(mapper, 'EINVAL', () => { mapper.map(0, 4 * KiB, HOST + 0x800); });
      // Zero size at a mapped IOVA.
      refused(mapper, 'EINVAL', () => { mapper.map(0, 0, HOST); });
      // Overlapping, over both limits.
      refused(mapper, 'EEXIST', () => { mapper.map(0, 4 * KiB, HOST); });
      // Over both limits.
      refused(mapper, 'ENOSPC', () => { mapper.map(16 * KiB, 4 * KiB, HOST + 16 * KiB); });
      assert.deepEqual(mapper.stats.failures, { EINVAL: 2, EEXIST: 1, ENOSPC: 1 });
    });

    it('rejects an invalid dmaEntryLimit or pageSize with InvalidArgumentError', () => {
      for (const dmaEntryLimit of [-1, 1.5, 2 ** 32, Number.NaN]) {
        assert.throws(() => new VfioType1Model({ dmaEntryLimit }), InvalidArgumentError, String(dmaEntryLimit));
      }
      for (const pageSize of [0, 3 * KiB, -4 * KiB]) {
        assert.throws(() => new VfioType1Model({ pageSize }), InvalidArgumentError, String(pageSize));
      }
      assert.throws(() => new VfioType1Model({ memlockLimit: -1 }), InvalidArgumentError);
    });

    it('aligns every call to a configured IOMMU page size', () => {
      const mapper = new VfioType1Model({ pageSize: 64 * KiB });
      refused(mapper, 'EINVAL', () => { mapper.map(0, 4 * KiB, HOST); });
      mapAll(mapper, [0, 64 * KiB]);
      refused(mapper, 'EINVAL', () => mapper.unmap(0, 4 * KiB));
    });
  });

  describe('unmap (v2)', () => {
    it('unmaps every whole mapping in the range, gaps and all, and returns their bytes', () => {
      const mapper = new VfioType1Model();
      mapAll(mapper, [4 * KiB, 4 * KiB], [8 * KiB, 8 * KiB], [20 * KiB, 4 * KiB], [64 * KiB, 4 * KiB]);
      // [0, 32K) starts and ends in gaps and holds three mappings.
      assert.equal(mapper.unmap(0, 32 * KiB), 16 * KiB);
      assert.deepEqual(mapper.mappings(), [m(64 * KiB, 4 * KiB)]);
      // Exactly one mapping.
      assert.equal(mapper.unmap(64 * KiB, 4 * KiB), 4 * KiB);
      assert.equal(mapper.mappingCount, 0);
    });

    it('refuses a range that starts inside a mapping with EINVAL, unmapping nothing', () => {
      const mapper = new VfioType1Model();
      mapAll(mapper, [4 * KiB, 8 * KiB], [16 * KiB, 4 * KiB]);
      const error = refused(mapper, 'EINVAL', () => mapper.unmap(8 * KiB, 12 * KiB));
      assert.equal(error.call, 'VFIO_IOMMU_UNMAP_DMA');
      assert.match(error.message, /starts inside the mapping 0x1000\+0x2000, which type1 cannot split/);
    });

    it('refuses a range that ends inside a mapping with EINVAL, keeping the whole mappings before it', () => {
      const mapper = new VfioType1Model();
      mapAll(mapper, [0, 4 * KiB], [4 * KiB, 8 * KiB], [16 * KiB, 8 * KiB]);
      const error = refused(mapper, 'EINVAL', () => mapper.unmap(0, 20 * KiB));
      assert.match(error.message, /ends inside the mapping 0x4000\+0x2000, which type1 cannot split/);
      assert.equal(mapper.mappingCount, 3);
      // Inside a single mapping: both ends split it.
      refused(mapper, 'EINVAL', () => mapper.unmap(20 * KiB, 4 * KiB));
    });

    it('returns 0 for a range holding no mapping, and counts the call', () => {
      const mapper = new VfioType1Model();
      mapAll(mapper, [0, 4 * KiB], [16 * KiB, 4 * KiB]);
      assert.equal(mapper.unmap(4 * KiB, 12 * KiB), 0);
      assert.equal(mapper.unmap(1 * MiB, 1 * MiB), 0);
      assert.equal(mapper.mappingCount, 2);
      assert.equal(mapper.stats.unmapCalls, 2);
      assert.deepEqual(mapper.stats.failures, {});
    });

    it('refuses a zero-size, misaligned or wrapping unmap with EINVAL', () => {
      const mapper = new VfioType1Model();
      mapAll(mapper, [0, 8 * KiB]);
      refused(mapper, 'EINVAL', () => mapper.unmap(0, 0));
      refused(mapper, 'EINVAL', () => mapper.unmap(0x800, 4 * KiB));
      refused(mapper, 'EINVAL', () => mapper.unmap(0, 6 * KiB));
      const error = refused(mapper, 'EINVAL', () => mapper.unmap(TWO_53 - 4 * KiB, 8 * KiB));
      assert.match(error.message, /wraps around/);
      assert.deepEqual(mapper.stats.failures, { EINVAL: 4 });
    });
  });

  describe('cut', () => {
    it('has none: ENOTTY wherever it is asked, changing nothing', () => {
      const mapper = new VfioType1Model();
      assert.equal(mapper.canCut, false);
      mapAll(mapper, [0, 16 * KiB]);
      for (const iova of [8 * KiB, 0, 16 * KiB, 1 * MiB, 0x800]) {
        const error = refused(mapper, 'ENOTTY', () => mapper.cut(iova));
        assert.equal(error.call, 'cut');
        assert.match(error.message, /VFIO type1 has no way to split a mapping/);
      }
      assert.equal(mapper.stats.cutCalls, 0);
      assert.deepEqual(mapper.stats.failures, { ENOTTY: 5 });
    });
  });

  describe('mappings and statistics', () => {
    it('never merges mappings: two adjacent maps stay two, and unmap one at a time', () => {
      const mapper = new VfioType1Model();
      mapAll(mapper, [0, 4 * KiB], [4 * KiB, 4 * KiB], [8 * KiB, 4 * KiB]);
      assert.deepEqual(mapper.mappings(), [m(0, 4 * KiB), m(4 * KiB, 4 * KiB), m(8 * KiB, 4 * KiB)]);
      assert.equal(mapper.stats.peakMappings, 3);
      assert.equal(mapper.unmap(4 * KiB, 4 * KiB), 4 * KiB);
      assert.deepEqual(mapper.mappings(), [m(0, 4 * KiB), m(8 * KiB, 4 * KiB)]);
    });

    it('lists the mappings meeting a range, ascending, including one that starts before it', () => {
      const mapper = new VfioType1Model();
      mapAll(mapper, [32 * KiB, 4 * KiB], [0, 8 * KiB], [16 * KiB, 8 * KiB]);
      assert.deepEqual(mapper.mappings(), [m(0, 8 * KiB), m(16 * KiB, 8 * KiB), m(32 * KiB, 4 * KiB)]);
      assert.deepEqual(mapper.mappings(4 * KiB, 16 * KiB), [m(0, 8 * KiB), m(16 * KiB, 8 * KiB)]);
      assert.deepEqual(mapper.mappings(8 * KiB, 8 * KiB), [], 'the range [8K, 16K) is a gap');
      assert.deepEqual(mapper.mappings(24 * KiB, 8 * KiB), [], 'ends are exclusive');
    });

    it('counts mappings, peaks, pinned bytes, successful calls and failures by errno', () => {
      const mapper = new VfioType1Model({ dmaEntryLimit: 3 });
      assert.deepEqual(mapper.stats, {
        mappings: 0, peakMappings: 0, pinnedBytes: 0, peakPinnedBytes: 0, mapCalls: 0, unmapCalls: 0, cutCalls: 0, failures: {},
      });
      mapAll(mapper, [0, 4 * KiB], [8 * KiB, 8 * KiB], [1 * MiB, 1 * MiB]);
      refused(mapper, 'ENOSPC', () => { mapper.map(4 * MiB, 4 * KiB, HOST); });
      refused(mapper, 'EEXIST', () => { mapper.map(0, 4 * KiB, HOST); });
      refused(mapper, 'EINVAL', () => mapper.unmap(1 * MiB, 4 * KiB));
      assert.equal(mapper.unmap(1 * MiB, 1 * MiB), 1 * MiB);
      assert.equal(mapper.unmap(0, 4 * KiB), 4 * KiB);
      assert.equal(mapper.unmap(2 * MiB, 4 * KiB), 0);
      assert.deepEqual(mapper.stats, {
        mappings: 1, peakMappings: 3, pinnedBytes: 8 * KiB, peakPinnedBytes: 1 * MiB + 12 * KiB,
        mapCalls: 3, unmapCalls: 3, cutCalls: 0, failures: { ENOSPC: 1, EEXIST: 1, EINVAL: 1 },
      });
      assert.equal(mapper.mappingCount, 1);
    });

    it('returns a copy of the failure counts', () => {
      const mapper = new VfioType1Model();
      refused(mapper, 'EINVAL', () => { mapper.map(0, 0, HOST); });
      const { failures } = mapper.stats;
      refused(mapper, 'EINVAL', () => { mapper.map(0, 0, HOST); });
      assert.deepEqual(failures, { EINVAL: 1 });
      assert.deepEqual(mapper.stats.failures, { EINVAL: 2 });
    });
  });

  describe('onChange', () => {
    it('tells observers of every map and unmap, nothing of failed calls, until disposed', () => {
      const mapper = new VfioType1Model();
      const seen: DmaMapperEvent[] = [];
      const other: DmaMapperEvent[] = [];
      const subscription = mapper.onChange((event) => seen.push(event));
      mapper.onChange((event) => other.push(event));
      mapAll(mapper, [0, 4 * KiB], [4 * KiB, 8 * KiB]);
      refused(mapper, 'EEXIST', () => { mapper.map(0, 4 * KiB, HOST); });
      refused(mapper, 'EINVAL', () => mapper.unmap(0, 8 * KiB));
      assert.throws(() => mapper.cut(4 * KiB), DmaMapError);
      mapper.unmap(0, 12 * KiB);
      assert.deepEqual(seen, [
        { kind: 'map', mapping: m(0, 4 * KiB) },
        { kind: 'map', mapping: m(4 * KiB, 8 * KiB) },
        { kind: 'unmap', mapping: m(0, 4 * KiB) },
        { kind: 'unmap', mapping: m(4 * KiB, 8 * KiB) },
      ]);
      subscription.dispose();
      subscription.dispose();
      mapAll(mapper, [0, 4 * KiB]);
      assert.equal(seen.length, 4, 'a disposed observer hears nothing');
      assert.equal(other.length, 5, 'the other observer still hears');
    });

    it('lets an observer dispose itself while an event is delivered', () => {
      const mapper = new VfioType1Model();
      let calls = 0;
      const subscription = mapper.onChange(() => {
        calls++;
        subscription.dispose();
      });
      mapAll(mapper, [0, 4 * KiB], [4 * KiB, 4 * KiB]);
      assert.equal(calls, 1);
    });
  });
});
