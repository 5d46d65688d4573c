import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HOST, TWO_53, m, mapAll, refused } from '../../test/support/dma.js';
import { thrown } from '../../test/support/thrown.js';
import { DmaMapError, InvalidArgumentError } from '../core/errors.js';
import { KiB, MiB } from '../core/units.js';
import type { DmaMapperEvent, DmaMapping } from './dma-mapper.js';
import { IommufdModel, type CutBehaviour } from './iommufd-model.js';

describe('IommufdModel', () => {
  describe('map', () => {
    it('has no limit on the number of areas: 70000 adjacent 4 KiB maps stay 70000 areas', () => {
      const mapper = new IommufdModel();
      assert.equal(mapper.kind, 'iommufd');
      assert.equal(mapper.mappingLimit, Infinity);
      const n = 70_000;
      for (let i = 0; i < n; i++) mapper.map(i * 4 * KiB, 4 * KiB, HOST + i * 4 * KiB);
      assert.equal(mapper.mappingCount, n);
      assert.deepEqual(mapper.mappings(0, 8 * KiB), [m(0, 4 * KiB), m(4 * KiB, 4 * KiB)], 'adjacent areas never merge');
      assert.equal(mapper.unmap(0, n * 4 * KiB), n * 4 * KiB);
      assert.equal(mapper.mappingCount, 0);
      assert.equal(mapper.stats.peakMappings, n);
    });

    it('refuses a zero length or an iova, length or user_va not aligned with EINVAL', () => {
      const mapper = new IommufdModel();
      mapAll(mapper, [64 * KiB, 4 * KiB]);
      for (const [iova, size, vaddr] of [
        [0, 0, HOST],
        [0x800, 4 * KiB, HOST],
        [0, 6 * KiB, HOST],
        [0, 4 * KiB, HOST + 0x200],
        [-4 * KiB, 4 * KiB, HOST],
      ] as const) {
        const error = refused(mapper, 'EINVAL', () => { mapper.map(iova, size, vaddr); });
        assert.equal(error.call, 'IOMMU_IOAS_MAP');
      }
    });

    it('refuses a range whose iova or user_va end would pass 2^53 with EOVERFLOW', () => {
      const mapper = new IommufdModel();
      const top = TWO_53 - 8 * KiB;
      mapper.map(top, 4 * KiB, HOST);
      refused(mapper, 'EOVERFLOW', () => { mapper.map(top, 16 * KiB, HOST); });
      const error = refused(mapper, 'EOVERFLOW', () => { mapper.map(0, 16 * KiB, top); });
      assert.match(error.message, /wraps around/);
    });

    it('refuses any overlap with EEXIST: start inside, end inside, covering, inside, exact', () => {
      const mapper = new IommufdModel();
      mapAll(mapper, [16 * KiB, 16 * KiB]);
      for (const [iova, size] of [
        [24 * KiB, 16 * KiB],
        [8 * KiB, 12 * KiB],
        [8 * KiB, 32 * KiB],
        [20 * KiB, 4 * KiB],
        [16 * KiB, 16 * KiB],
      ] as const) {
        const error = refused(mapper, 'EEXIST', () => { mapper.map(iova, size, HOST + iova); });
        assert.match(error.message, /overlaps the area 0x4000\+0x4000/);
      }
    });

    it('refuses a map that would pin past memlockLimit with ENOMEM, after the overlap check', () => {
      const mapper = new IommufdModel({ memlockLimit: 8 * KiB });
      mapAll(mapper, [0, 8 * KiB]);
      refused(mapper, 'EEXIST', () => { mapper.map(0, 4 * KiB, HOST); });
      const error = refused(mapper, 'ENOMEM', () => { mapper.map(8 * KiB, 4 * KiB, HOST); });
      assert.match(error.message, /past RLIMIT_MEMLOCK 8192/);
      assert.deepEqual(mapper.stats.failures, { EEXIST: 1, ENOMEM: 1 });
    });
  });

  describe('unmap', () => {
    it('unmaps every area wholly inside the range and returns the bytes', () => {
      const mapper = new IommufdModel();
      mapAll(mapper, [4 * KiB, 4 * KiB], [8 * KiB, 8 * KiB], [32 * KiB, 4 * KiB]);
      assert.equal(mapper.unmap(0, 20 * KiB), 12 * KiB);
      assert.deepEqual(mapper.mappings(), [m(32 * KiB, 4 * KiB)]);
      assert.equal(mapper.stats.unmapCalls, 1);
    });

    it('stops with ENOENT at an area the range would split, after unmapping the whole areas before it', () => {
      const mapper = new IommufdModel();
      mapAll(mapper, [0, 4 * KiB], [4 * KiB, 4 * KiB], [8 * KiB, 8 * KiB], [32 * KiB, 4 * KiB]);
      const events: DmaMapperEvent[] = [];
      mapper.onChange((event) => events.push(event));
      const error = thrown(DmaMapError, () => mapper.unmap(0, 12 * KiB));
      assert.equal(error.errnoName, 'ENOENT');
      assert.equal(error.call, 'IOMMU_IOAS_UNMAP');
      assert.match(error.message, /the area 0x2000\+0x2000 is not wholly inside the range; 0x2000 bytes before it were unmapped/);
      // Faithful to the kernel: the two whole areas before it are gone.
      assert.deepEqual(mapper.mappings(), [m(8 * KiB, 8 * KiB), m(32 * KiB, 4 * KiB)]);
      assert.deepEqual(events, [{ kind: 'unmap', mapping: m(0, 4 * KiB) }, { kind: 'unmap', mapping: m(4 * KiB, 4 * KiB) }]);
      assert.equal(mapper.stats.pinnedBytes, 12 * KiB);
      assert.deepEqual(mapper.stats.failures, { ENOENT: 1 });
    });

    it('unmaps nothing when the range starts inside an area (ENOENT, 0 bytes)', () => {
      const mapper = new IommufdModel();
      mapAll(mapper, [0, 8 * KiB], [8 * KiB, 4 * KiB]);
      const error = refused(mapper, 'ENOENT', () => mapper.unmap(4 * KiB, 8 * KiB));
      assert.match(error.message, /the area 0x0\+0x2000 is not wholly inside the range; 0x0 bytes before it were unmapped/);
    });

    it('refuses a range holding no area with ENOENT', () => {
      const mapper = new IommufdModel();
      mapAll(mapper, [0, 4 * KiB], [16 * KiB, 4 * KiB]);
      const error = refused(mapper, 'ENOENT', () => mapper.unmap(4 * KiB, 12 * KiB));
      assert.match(error.message, /no area in the range/);
      refused(mapper, 'ENOENT', () => mapper.unmap(1 * MiB, 4 * KiB));
    });

    it('refuses a zero-length or misaligned unmap with EINVAL, a wrapping one with EOVERFLOW', () => {
      const mapper = new IommufdModel();
      mapAll(mapper, [0, 8 * KiB]);
      refused(mapper, 'EINVAL', () => mapper.unmap(0, 0));
      refused(mapper, 'EINVAL', () => mapper.unmap(0x800, 4 * KiB));
      refused(mapper, 'EINVAL', () => mapper.unmap(0, 6 * KiB));
      refused(mapper, 'EOVERFLOW', () => mapper.unmap(TWO_53 - 4 * KiB, 8 * KiB));
    });
  });

  describe('cut', () => {
    it('splits an area into two adjacent areas, the tail onto the host memory that follows the head', () => {
      const mapper = new IommufdModel();
      assert.equal(mapper.canCut, true);
      mapper.map(16 * KiB, 16 * KiB, HOST + 1 * MiB);
      assert.equal(mapper.cut(24 * KiB), true);
      assert.deepEqual(mapper.mappings(), [
        { iova: 16 * KiB, size: 8 * KiB, vaddr: HOST + 1 * MiB },
        { iova: 24 * KiB, size: 8 * KiB, vaddr: HOST + 1 * MiB + 8 * KiB },
      ]);
      const stats = mapper.stats;
      assert.deepEqual([stats.mappings, stats.peakMappings, stats.pinnedBytes, stats.cutCalls, stats.mapCalls], [2, 2, 16 * KiB, 1, 1]);
    });

    it('returns false, changing nothing, at an area boundary or where nothing is mapped', () => {
      for (const cuts of ['work', 'unsupported', () => true] as const) {
        const mapper = new IommufdModel({ cuts });
        mapAll(mapper, [16 * KiB, 16 * KiB]);
        const before = mapper.mappings();
        for (const iova of [16 * KiB, 32 * KiB, 0, 1 * MiB]) assert.equal(mapper.cut(iova), false, `${String(iova)} with ${String(cuts)}`);
        assert.deepEqual(mapper.mappings(), before);
        assert.deepEqual([mapper.stats.cutCalls, mapper.stats.failures], [0, {}]);
      }
    });

    it('refuses a cut not aligned to the IOVA alignment with EINVAL', () => {
      const mapper = new IommufdModel();
      mapAll(mapper, [0, 16 * KiB]);
      const error = refused(mapper, 'EINVAL', () => mapper.cut(0x1800));
      assert.equal(error.call, 'cut');
      refused(mapper, 'EINVAL', () => mapper.cut(-4 * KiB));
    });

    it('refuses with EOPNOTSUPP when the IOMMU driver cannot split (cuts: unsupported)', () => {
      const mapper = new IommufdModel({ cuts: 'unsupported' });
      mapAll(mapper, [0, 16 * KiB]);
      const error = refused(mapper, 'EOPNOTSUPP', () => mapper.cut(8 * KiB));
      assert.match(error.message, /the IOMMU driver cannot split an area/);
      // The behaviour can change at run time.
      mapper.cuts = 'work';
      assert.equal(mapper.cut(8 * KiB), true);
    });

    it('refuses with ENOMEM the cuts the predicate fails, and makes the others', () => {
      const asked: [number, DmaMapping][] = [];
      const mapper = new IommufdModel({
        cuts: (iova, area) => {
          asked.push([iova, area]);
          return iova === 4 * KiB;
        },
      });
      mapAll(mapper, [0, 16 * KiB]);
      const error = refused(mapper, 'ENOMEM', () => mapper.cut(4 * KiB));
      assert.match(error.message, /could not split the area 0x0\+0x4000/);
      assert.equal(mapper.cut(8 * KiB), true);
      assert.deepEqual(asked, [[4 * KiB, m(0, 16 * KiB)], [8 * KiB, m(0, 16 * KiB)]]);
      assert.deepEqual(mapper.mappings(), [m(0, 8 * KiB), m(8 * KiB, 8 * KiB)]);
      assert.deepEqual(mapper.stats.failures, { ENOMEM: 1 });
    });

    it('lets a middle piece be unmapped alone after two cuts', () => {
      const mapper = new IommufdModel();
      mapAll(mapper, [0, 16 * KiB]);
      refused(mapper, 'ENOENT', () => mapper.unmap(4 * KiB, 8 * KiB));
      assert.equal(mapper.cut(4 * KiB), true);
      assert.equal(mapper.cut(12 * KiB), true);
      assert.deepEqual(mapper.mappings(), [m(0, 4 * KiB), m(4 * KiB, 8 * KiB), m(12 * KiB, 4 * KiB)]);
      assert.equal(mapper.unmap(4 * KiB, 8 * KiB), 8 * KiB);
      assert.deepEqual(mapper.mappings(), [m(0, 4 * KiB), m(12 * KiB, 4 * KiB)]);
      assert.equal(mapper.stats.pinnedBytes, 8 * KiB);
    });

    it('emits a cut event with the cut IOVA and the area it split', () => {
      const mapper = new IommufdModel();
      const events: DmaMapperEvent[] = [];
      mapper.onChange((event) => events.push(event));
      mapAll(mapper, [0, 16 * KiB]);
      mapper.cut(4 * KiB);
      mapper.cut(4 * KiB);
      assert.deepEqual(events, [
        { kind: 'map', mapping: m(0, 16 * KiB) },
        { kind: 'cut', iova: 4 * KiB, from: m(0, 16 * KiB) },
      ]);
    });

    it('rejects a cuts option that is neither work, unsupported nor a function', () => {
      assert.throws(() => new IommufdModel({ cuts: 'sometimes' as unknown as CutBehaviour }), InvalidArgumentError);
    });
  });
});
