import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { propertyParameters } from '../../test/support/property.js';
import { ChunkIndex } from './chunk-index.js';

function contents(index: ChunkIndex): Map<number, number> {
  const m = new Map<number, number>();
  index.forEach((c, s) => m.set(c, s));
  return m;
}

describe('ChunkIndex', () => {
  it('uses a hash for few entries in many chunks, and switches to direct when that is smaller', () => {
    const chunks = 1 << 16;
    const index = new ChunkIndex(chunks);
    assert.equal(index.mode, 'hash');
    for (let c = 0; c < 20_000; c++) index.insert(c * 3 % chunks, c);
    assert.equal(index.mode, 'direct');
    assert.equal(index.byteSize, chunks * 4);
    for (let c = 0; c < 19_990; c++) index.delete(c * 3 % chunks);
    assert.equal(index.mode, 'hash');
    assert.equal(index.size, 10);
    assert.ok(index.byteSize < 1024);
    assert.equal(index.get(19_995 * 3 % chunks), 19_995);
  });

  it('starts direct when the block has only a few chunks', () => {
    assert.equal(new ChunkIndex(8).mode, 'direct');
  });

  it('behaves like a Map under random inserts and deletes (both modes, with collisions)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }),
        fc.array(fc.tuple(fc.boolean(), fc.nat()), { maxLength: 400 }),
        (chunks, ops) => {
          const index = new ChunkIndex(chunks);
          const model = new Map<number, number>();
          let slot = 0;
          for (const [insert, at] of ops) {
            const c = at % chunks;
            if (insert && !model.has(c)) {
              index.insert(c, slot);
              model.set(c, slot++);
            } else if (!insert && model.has(c)) {
              index.delete(c);
              model.delete(c);
            }
            assert.equal(index.size, model.size);
          }
          for (let c = 0; c < chunks; c++) assert.equal(index.get(c), model.get(c) ?? -1);
          assert.deepEqual(contents(index), model);
          index.remap((s) => s + 1000);
          for (const [c, s] of model) assert.equal(index.get(c), s + 1000);
        },
      ),
      propertyParameters(300),
    );
  });
});
