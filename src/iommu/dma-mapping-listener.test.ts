import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { instance } from '../../test/support/narrow.js';
import { ramBlock, type TestBlock } from '../../test/support/ram-block.js';
import { thrown } from '../../test/support/thrown.js';
import { DmaMapError, InvalidArgumentError, ListenerVetoError } from '../core/errors.js';
import type { MemoryRegionSection } from '../core/section.js';
import { KiB, MiB } from '../core/units.js';
import { DmaChecker, type DmaCheckReport } from './dma-checker.js';
import type { DmaMapper, DmaMapping } from './dma-mapper.js';
import { DMA_STRATEGIES, DmaMappingListener, type DmaMappingListenerOptions, type DmaStrategy } from './dma-mapping-listener.js';
import { IommufdModel, type CutBehaviour } from './iommufd-model.js';
import { VfioType1Model } from './vfio-type1-model.js';

/** Host virtual address of the region's first byte. */
const HOST = 0x7f00_0000_0000;
/** Where the listener's section sits in the IOVA space (unlike its region offset, 0). */
const IOVA = 0x1_0000_0000;
const SIZE = 8 * MiB;

type Kind = DmaMapper['kind'];
const KINDS: readonly Kind[] = ['vfio-type1', 'iommufd'];

interface MapperOptions {
  /** type1's dma_entry_limit. */
  readonly limit?: number;
  /** iommufd's cut behaviour. */
  readonly cuts?: CutBehaviour;
  /** RLIMIT_MEMLOCK in bytes. */
  readonly memlockLimit?: number;
}

function newMapper(kind: Kind, options: MapperOptions = {}): DmaMapper {
  const memlock = options.memlockLimit === undefined ? {} : { memlockLimit: options.memlockLimit };
  if (kind === 'vfio-type1') return new VfioType1Model({ ...memlock, ...(options.limit === undefined ? {} : { dmaEntryLimit: options.limit }) });
  return new IommufdModel({ ...memlock, ...(options.cuts === undefined ? {} : { cuts: options.cuts }) });
}

interface Fixture extends TestBlock {
  readonly mapper: DmaMapper;
  readonly listener: DmaMappingListener;
  /** The whole region, at IOVA. */
  readonly section: MemoryRegionSection;
}

interface SetupOptions extends MapperOptions {
  /** Region ranges made shared before the listener registers. */
  readonly shared?: readonly (readonly [number, number])[];
  /** Register the listener (default true). */
  readonly register?: boolean;
  /** The listener's host address (default HOST). */
  readonly hostAddress?: number;
}

/** An 8 MiB block, a mapper and a listener registered for the whole region at IOVA. */
function setup(kind: Kind, strategy: DmaStrategy, options: SetupOptions = {}): Fixture {
  const block = ramBlock(SIZE);
  for (const [offset, size] of options.shared ?? []) block.attrs.stateChange(offset, size, 'shared');
  const mapper = newMapper(kind, options);
  const listener = new DmaMappingListener({ mapper, strategy, hostAddress: options.hostAddress ?? HOST });
  const section = block.region.section(0, SIZE, IOVA);
  if (options.register ?? true) block.manager.registerListener(listener, section);
  return { ...block, mapper, listener, section };
}

/** The mapping of region range [offset, offset + size) of the whole-region section. */
function m(offset: number, size: number): DmaMapping {
  return { iova: IOVA + offset, size, vaddr: HOST + offset };
}

/** One 4 KiB mapping per page of region range [offset, offset + size). */
function pages(offset: number, size: number): DmaMapping[] {
  const out: DmaMapping[] = [];
  for (let p = offset; p < offset + size; p += 4 * KiB) out.push(m(p, 4 * KiB));
  return out;
}

/** Shared before registration: a 3 MiB run, two pages, and two pages across the 6 MiB boundary. */
const SHARED = [[0, 3 * MiB], [4 * MiB + 4 * KiB, 8 * KiB], [6 * MiB - 4 * KiB, 8 * KiB]] as const;

/** What registration with SHARED maps, by strategy. */
const REPLAYED: Record<DmaStrategy, DmaMapping[]> = {
  'per-granule': [...pages(0, 3 * MiB), ...pages(4 * MiB + 4 * KiB, 8 * KiB), ...pages(6 * MiB - 4 * KiB, 8 * KiB)],
  aligned: [m(0, 2 * MiB), m(2 * MiB, 1 * MiB), m(4 * MiB + 4 * KiB, 8 * KiB), m(6 * MiB - 4 * KiB, 4 * KiB), m(6 * MiB, 4 * KiB)],
  coalesced: [m(0, 3 * MiB), m(4 * MiB + 4 * KiB, 8 * KiB), m(6 * MiB - 4 * KiB, 8 * KiB)],
};

/** The report of a checker that found nothing after `conversions` conversions. */
function cleanReport(conversions: number): DmaCheckReport {
  return { conversions, transientGaps: 0, doubleMapped: 0, stale: 0, missing: 0, wrongAddress: 0, outside: 0, mapperMismatches: 0, violations: [] };
}

describe('DmaMappingListener', () => {
  describe('registration', () => {
    for (const kind of KINDS) {
      for (const strategy of DMA_STRATEGIES) {
        it(`${strategy} on ${kind}: replays the shared state into mappings at the section's IOVA, onto the host address of the region offset`, () => {
          const { mapper, listener } = setup(kind, strategy, { shared: SHARED });
          assert.deepEqual(mapper.mappings(), REPLAYED[strategy]);
          assert.equal(mapper.stats.pinnedBytes, 3 * MiB + 16 * KiB);
          assert.equal(listener.stats.populates, 3, 'one populate per shared run');
        });
      }
    }

    it('measures granule edges in the region and clips mappings to a section that starts inside it', () => {
      const block = ramBlock(SIZE);
      for (const [offset, size] of SHARED) block.attrs.stateChange(offset, size, 'shared');
      const mapper = new IommufdModel();
      const listener = new DmaMappingListener({ mapper, strategy: 'aligned', hostAddress: HOST });
      // Region [1 MiB, 6 MiB) at IOVA: IOVA - 1 MiB + offset is the IOVA of a region offset.
      block.manager.registerListener(listener, block.region.section(1 * MiB, 5 * MiB, IOVA));
      const at = (offset: number, size: number): DmaMapping => ({ iova: IOVA - 1 * MiB + offset, size, vaddr: HOST + offset });
      assert.deepEqual(mapper.mappings(), [
        at(1 * MiB, 1 * MiB), at(2 * MiB, 1 * MiB), at(4 * MiB + 4 * KiB, 8 * KiB), at(6 * MiB - 4 * KiB, 4 * KiB),
      ]);
    });

    it('unregistering unmaps everything the listener mapped', () => {
      for (const kind of KINDS) {
        const { manager, mapper, listener } = setup(kind, 'coalesced', { shared: SHARED });
        assert.deepEqual(manager.unregisterListener(listener), []);
        assert.equal(mapper.mappingCount, 0, kind);
        assert.equal(mapper.stats.pinnedBytes, 0, kind);
      }
    });

    it('refuses a registration whose replay alone needs more than dma_entry_limit: nothing mapped, not registered', () => {
      const { manager, section, mapper, listener } = setup('vfio-type1', 'per-granule', { limit: 8, shared: [[0, 64 * KiB]], register: false });
      const error = thrown(ListenerVetoError, () => manager.registerListener(listener, section));
      assert.equal(error.listener, 'dma:vfio-type1');
      assert.match(error.message, /during listener registration/);
      assert.match(error.message, /the registration replay needs 16 more mappings \(per-granule\); 0 of dma_entry_limit 8 are in use/);
      const cause = instance(error.cause, DmaMapError);
      assert.equal(cause.errnoName, 'ENOSPC');
      assert.equal(mapper.mappingCount, 0);
      assert.deepEqual(mapper.stats.failures, {}, 'refused before any map');
      assert.equal(manager.listeners.length, 0);
      assert.deepEqual(listener.stats, { populates: 0, discards: 0, limitRefusals: 1, cutRefusals: 0, cuts: 0, remaps: 0 });
      // Coalesced, the same state needs one mapping.
      const coalesced = new DmaMappingListener({ mapper, strategy: 'coalesced', hostAddress: HOST });
      manager.registerListener(coalesced, section);
      assert.deepEqual(mapper.mappings(), [m(0, 64 * KiB)]);
    });

    it('accepts a registration that fits exactly in the limit', () => {
      const { mapper, manager } = setup('vfio-type1', 'per-granule', { limit: 16, shared: [[0, 64 * KiB]] });
      assert.equal(mapper.mappingCount, 16);
      assert.equal(manager.listeners.length, 1);
    });
  });

  describe('populate', () => {
    it('maps a change to shared under each strategy, never merging with what is mapped', () => {
      for (const kind of KINDS) {
        const { attrs, mapper } = setup(kind, 'coalesced', { shared: [[0, 8 * KiB]] });
        attrs.stateChange(8 * KiB, 8 * KiB, 'shared');
        assert.deepEqual(mapper.mappings(), [m(0, 8 * KiB), m(8 * KiB, 8 * KiB)], kind);
      }
      const { attrs, mapper } = setup('iommufd', 'aligned');
      attrs.stateChange(2 * MiB - 8 * KiB, 2 * MiB + 16 * KiB, 'shared');
      assert.deepEqual(mapper.mappings(), [m(2 * MiB - 8 * KiB, 8 * KiB), m(2 * MiB, 2 * MiB), m(4 * MiB, 8 * KiB)]);
    });

    it('vetoes a populate that would pass dma_entry_limit, leaving no mapping behind and the state unchanged', () => {
      const { attrs, mapper, listener } = setup('vfio-type1', 'per-granule', { limit: 8, shared: [[0, 16 * KiB]] });
      assert.equal(mapper.mappingCount, 4);
      const before = mapper.mappings();
      const error = thrown(ListenerVetoError, () => attrs.stateChange(64 * KiB, 32 * KiB, 'shared'));
      assert.equal(error.action, 'populate');
      assert.match(error.message, /this populate needs 8 more mappings \(per-granule\); 4 of dma_entry_limit 8 are in use/);
      assert.match(error.message, /hint: raise dma_entry_limit, use iommufd, or convert at 2 MiB with the aligned strategy/);
      assert.equal(attrs.stateOf(64 * KiB, 32 * KiB), 'private');
      assert.deepEqual(mapper.mappings(), before);
      assert.deepEqual(mapper.stats.failures, {});
      assert.equal(listener.stats.limitRefusals, 1);
    });

    it('rolls back the runs of a vetoed populate that had been mapped already', () => {
      // [16K, 20K) shared; making [0, 40K) shared changes two runs: [0, 16K) (4 maps) fits, [20K, 40K) (5) does not.
      const { attrs, mapper, listener } = setup('vfio-type1', 'per-granule', { limit: 6, shared: [[16 * KiB, 4 * KiB]] });
      const error = thrown(ListenerVetoError, () => attrs.stateChange(0, 40 * KiB, 'shared'));
      assert.equal(error.offset, '0x5000');
      assert.match(error.message, /dma_entry_limit/);
      assert.deepEqual(mapper.mappings(), [m(16 * KiB, 4 * KiB)]);
      assert.equal(attrs.stateOf(0, 16 * KiB), 'private');
      assert.equal(attrs.stateOf(20 * KiB, 20 * KiB), 'private');
      assert.equal(mapper.stats.peakMappings, 5, 'the first run was mapped, then taken back');
      assert.deepEqual([listener.stats.populates, listener.stats.discards, listener.stats.limitRefusals], [2, 1, 1]);
    });

    it('takes back the maps of a populate when a later map of it fails, on either model', () => {
      for (const kind of KINDS) {
        // 16 KiB may be pinned: the fifth 4 KiB map of the populate fails with ENOMEM.
        const { attrs, mapper, listener } = setup(kind, 'per-granule', { memlockLimit: 16 * KiB });
        const error = thrown(ListenerVetoError, () => attrs.stateChange(0, 32 * KiB, 'shared'));
        assert.equal(instance(error.cause, DmaMapError).errnoName, 'ENOMEM', kind);
        assert.equal(mapper.mappingCount, 0, kind);
        assert.equal(mapper.stats.peakMappings, 4, kind);
        assert.equal(attrs.stateOf(0, 32 * KiB), 'private', kind);
        assert.deepEqual([listener.stats.populates, listener.stats.discards], [0, 0], kind);
      }
    });

    it('iommufd takes a populate that type1 refuses for its limit', () => {
      const type1 = setup('vfio-type1', 'per-granule', { limit: 4 });
      const iommufd = setup('iommufd', 'per-granule');
      assert.throws(() => type1.attrs.stateChange(0, 32 * KiB, 'shared'), ListenerVetoError);
      iommufd.attrs.stateChange(0, 32 * KiB, 'shared');
      assert.equal(iommufd.mapper.mappingCount, 8);
    });
  });

  describe('discard', () => {
    it('coalesced on iommufd: a to-private change inside a mapping cuts it and unmaps only that part', () => {
      const { attrs, mapper, listener } = setup('iommufd', 'coalesced', { shared: [[0, 4 * MiB]] });
      attrs.stateChange(1 * MiB, 8 * KiB, 'private');
      assert.deepEqual(mapper.mappings(), [m(0, 1 * MiB), m(1 * MiB + 8 * KiB, 3 * MiB - 8 * KiB)]);
      assert.equal(mapper.stats.pinnedBytes, 4 * MiB - 8 * KiB);
      assert.deepEqual(listener.stats, { populates: 1, discards: 1, limitRefusals: 0, cutRefusals: 0, cuts: 2, remaps: 0 });
      // At an end of a mapping only one cut is needed.
      attrs.stateChange(0, 4 * KiB, 'private');
      assert.deepEqual(mapper.mappings(), [m(4 * KiB, 1 * MiB - 4 * KiB), m(1 * MiB + 8 * KiB, 3 * MiB - 8 * KiB)]);
      assert.equal(listener.stats.cuts, 3);
    });

    it('coalesced on type1: a to-private change inside a mapping is refused and nothing changes', () => {
      const { attrs, mapper, listener } = setup('vfio-type1', 'coalesced', { shared: [[0, 4 * MiB]] });
      const before = mapper.mappings();
      const error = thrown(ListenerVetoError, () => attrs.stateChange(1 * MiB, 8 * KiB, 'private'));
      assert.equal(error.action, 'discard');
      assert.equal(error.listener, listener.name);
      assert.match(error.message, /refused discard of offset 0x100000 size 0x2000 during state change; nothing changed/);
      assert.match(error.message, /vfio-type1 cannot split the mapping 0x100000000\+0x400000 at 0x100100000/);
      assert.equal(instance(error.cause, DmaMapError).errnoName, 'EINVAL');
      assert.equal(attrs.stateOf(0, 4 * MiB), 'shared');
      assert.deepEqual(mapper.mappings(), before);
      assert.deepEqual(listener.stats, { populates: 1, discards: 0, limitRefusals: 0, cutRefusals: 1, cuts: 0, remaps: 0 });
      // A change that covers whole mappings needs no cut.
      attrs.stateChange(0, 4 * MiB, 'private');
      assert.equal(mapper.mappingCount, 0);
    });

    it('coalesced on iommufd with cuts unsupported: refused the same way', () => {
      const { attrs, mapper, listener } = setup('iommufd', 'coalesced', { cuts: 'unsupported', shared: [[0, 4 * MiB]] });
      const error = thrown(ListenerVetoError, () => attrs.stateChange(1 * MiB, 8 * KiB, 'private'));
      assert.equal(error.action, 'discard');
      assert.equal(instance(error.cause, DmaMapError).errnoName, 'EOPNOTSUPP');
      assert.equal(attrs.stateOf(0, 4 * MiB), 'shared');
      assert.deepEqual(mapper.mappings(), [m(0, 4 * MiB)]);
      assert.deepEqual([listener.stats.cutRefusals, listener.stats.cuts, listener.stats.discards], [1, 0, 0]);
    });

    it('a cut refused at the far end refuses the change; the near cut stays, every byte still mapped', () => {
      const end = IOVA + 1 * MiB + 8 * KiB;
      const { attrs, mapper, listener } = setup('iommufd', 'coalesced', { cuts: (iova) => iova === end, shared: [[0, 4 * MiB]] });
      const error = thrown(ListenerVetoError, () => attrs.stateChange(1 * MiB, 8 * KiB, 'private'));
      assert.equal(instance(error.cause, DmaMapError).errnoName, 'ENOMEM');
      assert.equal(attrs.stateOf(0, 4 * MiB), 'shared');
      assert.deepEqual(mapper.mappings(), [m(0, 1 * MiB), m(1 * MiB, 3 * MiB)]);
      assert.equal(mapper.stats.pinnedBytes, 4 * MiB);
      assert.deepEqual([listener.stats.cutRefusals, listener.stats.cuts], [1, 1]);
    });

    it('per-granule and aligned on type1 accept discards on their mapping boundaries, and aligned refuses a smaller one', () => {
      const granule = setup('vfio-type1', 'per-granule', { shared: [[0, 64 * KiB]] });
      granule.attrs.stateChange(8 * KiB, 4 * KiB, 'private');
      assert.deepEqual(granule.mapper.mappings(0, IOVA + 16 * KiB), [...pages(0, 8 * KiB), m(12 * KiB, 4 * KiB)]);
      const aligned = setup('vfio-type1', 'aligned', { shared: [[0, 4 * MiB]] });
      aligned.attrs.stateChange(2 * MiB, 2 * MiB, 'private');
      assert.deepEqual(aligned.mapper.mappings(), [m(0, 2 * MiB)]);
      assert.throws(() => aligned.attrs.stateChange(0, 4 * KiB, 'private'), ListenerVetoError);
      assert.deepEqual(aligned.mapper.mappings(), [m(0, 2 * MiB)]);
    });

    it('an unprepared discard that straddles a mapping is cut where it can be, else remapped around: never stale', () => {
      const discarded = (f: Fixture): void => {
        f.listener.notifyDiscard(f.region.section(1 * MiB, 8 * KiB, IOVA + 1 * MiB));
      };
      const expected = [m(0, 1 * MiB), m(1 * MiB + 8 * KiB, 3 * MiB - 8 * KiB)];
      const cut = setup('iommufd', 'coalesced', { shared: [[0, 4 * MiB]] });
      discarded(cut);
      assert.deepEqual(cut.mapper.mappings(), expected);
      assert.deepEqual([cut.listener.stats.cuts, cut.listener.stats.remaps], [2, 0]);
      const type1 = setup('vfio-type1', 'coalesced', { shared: [[0, 4 * MiB]] });
      discarded(type1);
      assert.deepEqual(type1.mapper.mappings(), expected);
      assert.deepEqual([type1.listener.stats.cuts, type1.listener.stats.remaps, type1.listener.stats.cutRefusals], [0, 1, 0]);
      const failing = setup('iommufd', 'coalesced', { cuts: 'unsupported', shared: [[0, 4 * MiB]] });
      discarded(failing);
      assert.deepEqual(failing.mapper.mappings(), expected);
      assert.deepEqual([failing.listener.stats.cuts, failing.listener.stats.remaps, failing.listener.stats.cutRefusals], [0, 1, 1]);
    });
  });

  describe('statistics', () => {
    it('counts populates, discards, refusals, cuts and remaps', () => {
      const { attrs, manager, mapper, listener } = setup('iommufd', 'coalesced', { shared: [[0, 2 * MiB]] });
      attrs.stateChange(4 * MiB, 1 * MiB, 'shared'); // populate 2
      attrs.stateChange(64 * KiB, 4 * KiB, 'private'); // discard 1, cuts 2
      attrs.stateChange(4 * MiB, 1 * MiB, 'private'); // discard 2, no cut
      attrs.stateChange(0, 64 * KiB, 'private'); // discard 3, no cut
      const iommufd = instance(mapper, IommufdModel);
      iommufd.cuts = 'unsupported';
      assert.throws(() => attrs.stateChange(1 * MiB, 4 * KiB, 'private'), ListenerVetoError); // cut refusal 1
      iommufd.cuts = 'work';
      attrs.stateChange(1 * MiB, 4 * KiB, 'private'); // discard 4, cuts 4
      manager.unregisterListener(listener); // discard 5
      assert.deepEqual(listener.stats, { populates: 2, discards: 5, limitRefusals: 0, cutRefusals: 1, cuts: 4, remaps: 0 });
      assert.equal(mapper.mappingCount, 0);
    });
  });

  describe('options', () => {
    it('defaults the granule by strategy and the name by mapper', () => {
      const mapper = new VfioType1Model({ name: 'vfio0' });
      const make = (strategy: DmaStrategy): DmaMappingListener => new DmaMappingListener({ mapper, strategy, hostAddress: HOST });
      assert.deepEqual(DMA_STRATEGIES.map((s) => make(s).granule), [4 * KiB, 0, 2 * MiB]);
      assert.equal(make('coalesced').name, 'dma:vfio0');
      assert.equal(new DmaMappingListener({ mapper, strategy: 'aligned', granule: 1024 * MiB, hostAddress: HOST, name: 'gpu' }).name, 'gpu');
      assert.equal(new DmaMappingListener({ mapper, strategy: 'coalesced', granule: 3, hostAddress: HOST }).granule, 0, 'coalesced ignores the granule');
    });

    it('rejects an unknown strategy, a bad granule, a misaligned host address or no mapper with InvalidArgumentError', () => {
      const mapper = new IommufdModel();
      const good: DmaMappingListenerOptions = { mapper, strategy: 'aligned', hostAddress: HOST };
      const bad: [string, unknown][] = [
        ['unknown strategy', { ...good, strategy: 'greedy' }],
        ['granule not a power of two', { ...good, granule: 3 * MiB }],
        ['granule below the page size', { ...good, strategy: 'per-granule', granule: 2 * KiB }],
        ['granule zero', { ...good, granule: 0 }],
        ['fractional granule', { ...good, granule: 4096.5 }],
        ['misaligned host address', { ...good, hostAddress: HOST + 512 }],
        ['negative host address', { ...good, hostAddress: -4 * KiB }],
        ['no mapper', { strategy: 'coalesced', hostAddress: HOST }],
        ['a mapper that is not one', { ...good, mapper: {} }],
      ];
      for (const [what, options] of bad) {
        assert.throws(() => new DmaMappingListener(options as DmaMappingListenerOptions), InvalidArgumentError, what);
      }
    });
  });
});

describe('DmaChecker', () => {
  /** A fixture whose mapper a checker watches from before the registration. */
  function checked(kind: Kind, strategy: DmaStrategy, listenerHost = HOST): Fixture & { readonly checker: DmaChecker } {
    const f = setup(kind, strategy, { shared: [[0, 2 * MiB]], register: false, hostAddress: listenerHost });
    const checker = new DmaChecker(f.mapper, [{ manager: f.manager, section: f.section, hostAddress: HOST }]);
    f.manager.registerListener(f.listener, f.section);
    return { ...f, checker };
  }

  const combinations: [Kind, DmaStrategy][] = [['vfio-type1', 'per-granule'], ['iommufd', 'per-granule'], ['iommufd', 'coalesced'], ['iommufd', 'aligned']];
  for (const [kind, strategy] of combinations) {
    it(`finds nothing wrong with ${strategy} on ${kind} through conversions both ways`, () => {
      const { attrs, checker } = checked(kind, strategy);
      const toPrivate = (offset: number, size: number): void => {
        checker.begin({ iova: IOVA + offset, size });
        attrs.stateChange(offset, size, 'private');
        checker.end();
      };
      const toShared = (offset: number, size: number): void => {
        checker.begin();
        attrs.stateChange(offset, size, 'shared');
        checker.end();
      };
      toShared(2 * MiB, 1 * MiB);
      toPrivate(1 * MiB, 8 * KiB);
      toShared(1 * MiB, 4 * KiB);
      toPrivate(0, 2 * MiB);
      toShared(4 * MiB - 4 * KiB, 8 * KiB);
      assert.deepEqual(checker.report, cleanReport(5));
      checker.checkAll();
      assert.deepEqual(checker.report, cleanReport(5));
      assert.equal(checker.clean, true);
    });
  }

  it('refuses nested or unmatched conversion windows', () => {
    const { checker } = checked('iommufd', 'coalesced');
    assert.throws(() => { checker.end(); }, InvalidArgumentError);
    checker.begin();
    assert.throws(() => { checker.begin(); }, InvalidArgumentError);
    checker.end();
    assert.equal(checker.report.conversions, 1);
  });

  it('stops watching the mapper once disposed', () => {
    const { manager, section, mapper, checker } = checked('iommufd', 'per-granule');
    checker.dispose();
    // Onto the wrong host page: a watching checker counts that as the map happens.
    mapper.map(IOVA + 4 * MiB, 4 * KiB, HOST);
    assert.equal(checker.report.wrongAddress, 0);
    assert.equal(new DmaChecker(mapper, [{ manager, section, hostAddress: HOST }]).report.wrongAddress, 1, 'a new checker sees it');
  });

  it('counts a page mapped directly while private as stale', () => {
    const { mapper, checker } = checked('iommufd', 'per-granule');
    mapper.map(IOVA + 4 * MiB, 4 * KiB, HOST + 4 * MiB);
    checker.checkAll();
    assert.equal(checker.report.stale, 1);
    assert.equal(checker.clean, false);
    assert.match(checker.report.violations.join('\n'), /1 pages from 0x100400000 are mapped but private/);
  });

  it('counts a shared page unmapped inside a conversion window as a transient gap', () => {
    const { mapper, checker } = checked('vfio-type1', 'per-granule');
    checker.begin();
    mapper.unmap(IOVA + 4 * KiB, 4 * KiB);
    checker.end();
    assert.ok(checker.report.transientGaps > 0, JSON.stringify(checker.report));
    assert.match(checker.report.violations.join('\n'), /0x100001000\+0x1000 stayed shared but was unmapped/);
  });

  it('counts mappings onto the wrong host memory', () => {
    const { checker } = checked('iommufd', 'coalesced', HOST + 2 * MiB);
    assert.ok(checker.report.wrongAddress > 0, JSON.stringify(checker.report));
    assert.match(checker.report.violations.join('\n'), /maps host 0x7f0000200000 at 0x100000000, where the shared page is at 0x7f0000000000/);
  });

  it('counts a shared page unmapped directly as missing', () => {
    const { mapper, checker } = checked('vfio-type1', 'per-granule');
    mapper.unmap(IOVA + 8 * KiB, 4 * KiB);
    checker.checkAll();
    assert.ok(checker.report.missing > 0, JSON.stringify(checker.report));
    assert.match(checker.report.violations.join('\n'), /1 pages from 0x100002000 are shared but not mapped/);
  });
});
