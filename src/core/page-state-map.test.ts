import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { propertyParameters } from '../../test/support/property.js';
import { CHUNK_PAGES, PageStateMap } from './page-state-map.js';

/** Page-by-page comparison, plus the representation invariants visible from outside. */
function assertMatches(map: PageStateMap, model: Uint8Array): void {
  const n = model.length;
  let mixed = 0;
  for (let c = 0; c * CHUNK_PAGES < n; c++) {
    const chunk = model.subarray(c * CHUNK_PAGES, Math.min(n, (c + 1) * CHUNK_PAGES));
    if (chunk.includes(0) && chunk.includes(1)) mixed++;
  }
  assert.equal(map.stats.leaves + map.stats.singletons, mixed, 'one entry per mixed chunk, none for uniform ones');
  let nextS = n;
  let nextP = n;
  for (let p = n - 1; p >= 0; p--) {
    if (model[p] === 1) nextS = p;
    else nextP = p;
    assert.equal(map.isShared(p), model[p] === 1, `page ${p}`);
    assert.equal(map.nextShared(p, n), nextS, `nextShared(${p})`);
    assert.equal(map.nextPrivate(p, n), nextP, `nextPrivate(${p})`);
  }
}

const opArb = (pages: number) =>
  fc.tuple(
    // Ranges biased towards chunk boundaries, where the representation changes.
    fc.oneof(fc.nat({ max: pages - 1 }), fc.nat({ max: Math.floor((pages - 1) / CHUNK_PAGES) }).map((c) => c * CHUNK_PAGES)),
    fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 3 }).map((k) => k * CHUNK_PAGES), fc.integer({ min: 1, max: pages })),
    fc.boolean(),
  );

describe('PageStateMap', () => {
  it('starts all private (or all shared) with no leaves', () => {
    const map = new PageStateMap(1000);
    assert.equal(map.nextShared(0, 1000), 1000);
    assert.equal(map.nextPrivate(0, 1000), 0);
    assert.equal(map.stats.leaves, 0);
    const shared = new PageStateMap(1000, { initial: 'shared' });
    assert.equal(shared.nextPrivate(0, 1000), 1000);
    assert.equal(shared.countShared(0, 1000), 1000);
  });

  it('needs no leaf for chunk-aligned changes or a single odd page, one for two', () => {
    const map = new PageStateMap(64 * CHUNK_PAGES);
    map.setRange(2 * CHUNK_PAGES, 10 * CHUNK_PAGES, true);
    assert.deepEqual([map.stats.leaves, map.stats.singletons], [0, 0]);
    assert.equal(map.countShared(0, map.pages), 8 * CHUNK_PAGES);
    const p = 20 * CHUNK_PAGES + 7;
    assert.equal(map.setPage(p, true), true);
    assert.equal(map.setPage(p, true), false);
    assert.deepEqual([map.stats.leaves, map.stats.singletons], [0, 1]);
    assert.equal(map.isShared(p), true);
    assert.equal(map.nextShared(10 * CHUNK_PAGES, 20 * CHUNK_PAGES + 100), p);
    map.setPage(p + 300, true);
    assert.deepEqual([map.stats.leaves, map.stats.singletons], [1, 0], 'a second odd page makes a leaf');
    map.setRange(p, p + 1, false);
    map.setRange(p + 300, p + 301, false);
    assert.deepEqual([map.stats.leaves, map.stats.singletons], [0, 0], 'a leaf that becomes uniform is freed');
    map.setPage(3 * CHUNK_PAGES + 9, false);
    assert.equal(map.nextPrivate(2 * CHUNK_PAGES, 10 * CHUNK_PAGES), 3 * CHUNK_PAGES + 9, 'a private odd page in a shared chunk');
    assert.equal(map.nextShared(3 * CHUNK_PAGES + 9, 10 * CHUNK_PAGES), 3 * CHUNK_PAGES + 10);
  });

  it('a 1 TiB block of 4 KiB pages costs about 130 KiB all private', () => {
    const map = new PageStateMap(2 ** 28);
    assert.ok(map.byteSize < 140 * 1024, `${map.byteSize} bytes`);
    map.setRange(2 ** 27, 2 ** 27 + 2 ** 18, true); // 1 GiB shared
    assert.ok(map.byteSize < 140 * 1024, `${map.byteSize} bytes`);
    assert.equal(map.nextShared(0, map.pages), 2 ** 27);
    assert.equal(map.nextPrivate(2 ** 27, map.pages), 2 ** 27 + 2 ** 18);
  });

  it('handles a short last chunk', () => {
    const pages = 3 * CHUNK_PAGES + 5;
    const map = new PageStateMap(pages);
    map.setRange(3 * CHUNK_PAGES, pages, true);
    assert.equal(map.stats.leaves, 0, 'the whole short chunk is uniform');
    map.setRange(3 * CHUNK_PAGES + 3, pages, false);
    assert.equal(map.stats.leaves, 1);
    assert.equal(map.nextShared(3 * CHUNK_PAGES + 4, pages), pages);
    map.setRange(0, pages, true);
    assert.equal(map.stats.leaves, 0);
    assert.equal(map.nextPrivate(0, pages), pages);
  });

  it('drops a singleton whose second odd page empties a two-page last chunk', () => {
    // Found by the property below (seed -1960989731).
    const map = new PageStateMap(2);
    map.setRange(0, 2, true);
    map.setPage(0, false);
    map.setPage(1, false);
    assert.deepEqual([map.stats.leaves, map.stats.singletons], [0, 0]);
    assert.equal(map.nextShared(0, 2), 2);
  });

  it('matches a page-by-page model under random range changes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 * CHUNK_PAGES + 100 }).chain((pages) =>
          fc.tuple(fc.constant(pages), fc.boolean(), fc.array(opArb(pages), { maxLength: 25 }))),
        ([pages, startShared, ops]) => {
          const map = new PageStateMap(pages, { initial: startShared ? 'shared' : 'private', slabLeaves: 2 });
          const model = new Uint8Array(pages).fill(startShared ? 1 : 0);
          for (const [first, len, shared] of ops) {
            const end = Math.min(pages, first + len);
            if (end - first === 1 && len % 2 === 1) {
              // Single pages go through setPage too, which reports a change.
              assert.equal(map.setPage(first, shared), model[first] !== (shared ? 1 : 0));
            } else {
              map.setRange(first, end, shared);
            }
            model.fill(shared ? 1 : 0, first, end);
          }
          assertMatches(map, model);
          assert.equal(map.countShared(0, pages), model.reduce((a, b) => a + b, 0));
        },
      ),
      propertyParameters(600),
    );
  });

  it('walks maximal runs like the model, within any window, and stops when asked', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 * CHUNK_PAGES + 77 }).chain((pages) =>
          fc.tuple(fc.constant(pages), fc.array(opArb(pages), { maxLength: 20 }), fc.nat({ max: pages - 1 }), fc.nat({ max: pages }), fc.integer({ min: 1, max: 4 }))),
        ([pages, ops, at, len, stopAfter]) => {
          const map = new PageStateMap(pages, { slabLeaves: 2 });
          const model = new Uint8Array(pages);
          for (const [first, n, shared] of ops) {
            const end = Math.min(pages, first + n);
            map.setRange(first, end, shared);
            model.fill(shared ? 1 : 0, first, end);
          }
          const a = at;
          const b = Math.min(pages, at + len);
          for (const shared of [true, false]) {
            const want: string[] = [];
            for (let p = a; p < b;) {
              if ((model[p] === 1) !== shared) {
                p++;
                continue;
              }
              let q = p;
              while (q < b && (model[q] === 1) === shared) q++;
              want.push(`${p}-${q}`);
              p = q;
            }
            const got: string[] = [];
            map.forEachRun(a, b, shared, (s, e) => got.push(`${s}-${e}`));
            assert.deepEqual(got, want, `${shared ? 'shared' : 'private'} runs in [${a}, ${b})`);
            const stopped: string[] = [];
            map.forEachRun(a, b, shared, (s, e) => stopped.push(`${s}-${e}`) < stopAfter);
            assert.deepEqual(stopped, want.slice(0, stopAfter));
          }
        },
      ),
      propertyParameters(600),
    );
  });

  it('reuses and compacts leaf slabs without losing a leaf', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: 63 }), fc.nat({ max: CHUNK_PAGES - 1 }), fc.boolean()), { maxLength: 300 }), (ops) => {
        const pages = 64 * CHUNK_PAGES;
        const map = new PageStateMap(pages, { slabLeaves: 4 });
        const model = new Uint8Array(pages);
        for (const [c, bit, shared] of ops) {
          const p = c * CHUNK_PAGES + bit;
          map.setRange(p, p + 1, shared);
          model[p] = shared ? 1 : 0;
        }
        assertMatches(map, model);
        const { leaves, slabs } = map.stats;
        // Slabs in use stay within 4x of what the leaves need (compaction bound).
        assert.ok(slabs <= 1 || (slabs - 1) * 4 < 4 * leaves, `slabs ${slabs} for ${leaves} leaves`);
        // Clear everything: the slabs compact down to one.
        map.setRange(0, pages, false);
        assert.equal(map.stats.leaves, 0);
        assert.ok(map.stats.slabs <= 1);
      }),
      propertyParameters(300),
    );
  });
});
