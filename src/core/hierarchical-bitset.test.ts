import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { propertyParameters } from '../../test/support/property.js';
import { HierarchicalBitset } from './hierarchical-bitset.js';

/** The invariant every summary level keeps, checked through the public API. */
function checkAgainst(bits: HierarchicalBitset, model: Uint8Array): void {
  for (let i = 0; i < model.length; i++) assert.equal(bits.get(i), model[i] === 1, `bit ${i}`);
  // nextSet from every position agrees with a linear scan.
  let expected = model.length;
  for (let from = model.length; from >= 0; from--) {
    if (from < model.length && model[from] === 1) expected = from;
    assert.equal(bits.nextSet(from, model.length), expected, `nextSet(${from})`);
  }
}

describe('HierarchicalBitset', () => {
  it('starts all clear or all set', () => {
    for (const size of [0, 1, 31, 32, 33, 1024, 1025, 32 * 1024 + 7]) {
      const clear = new HierarchicalBitset(size, false);
      const set = new HierarchicalBitset(size, true);
      assert.equal(clear.nextSet(0, size), size);
      assert.equal(set.nextSet(0, size), size === 0 ? 0 : 0);
      if (size > 0) assert.equal(set.count(0, size), size);
    }
  });

  it('finds a lone bit far away through three summary levels', () => {
    const size = 40_000_000;
    const bits = new HierarchicalBitset(size, false);
    bits.set(size - 3);
    assert.equal(bits.nextSet(0, size), size - 3);
    assert.equal(bits.nextSet(size - 2, size), size);
    bits.clear(size - 3);
    assert.equal(bits.nextSet(0, size), size);
    bits.setRange(12_345_678, 12_345_999);
    assert.equal(bits.nextSet(5, size), 12_345_678);
    assert.equal(bits.nextSet(12_345_700, size), 12_345_700);
    bits.clearRange(12_345_678, 12_345_990);
    assert.equal(bits.nextSet(0, size), 12_345_990);
    assert.equal(bits.count(0, size), 9);
  });

  it('nextSet respects the end bound', () => {
    const bits = new HierarchicalBitset(100, false);
    bits.set(50);
    assert.equal(bits.nextSet(0, 50), 50);
    assert.equal(bits.nextSet(0, 51), 50);
    assert.equal(bits.nextSet(51, 40), 40);
  });

  it('matches a byte-per-bit model over random range operations', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5000 }),
        fc.boolean(),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 1200 }), fc.constantFrom('set', 'clear', 'setOne', 'clearOne')), { maxLength: 30 }),
        (size, fill, ops) => {
          const bits = new HierarchicalBitset(size, fill);
          const model = new Uint8Array(size).fill(fill ? 1 : 0);
          for (const [at, len, op] of ops) {
            const start = at % size;
            const end = Math.min(size, start + len);
            if (op === 'set') bits.setRange(start, end);
            else if (op === 'clear') bits.clearRange(start, end);
            else if (op === 'setOne') bits.set(start);
            else bits.clear(start);
            if (op === 'set' || op === 'clear') model.fill(op === 'set' ? 1 : 0, start, end);
            else model[start] = op === 'setOne' ? 1 : 0;
          }
          checkAgainst(bits, model);
        },
      ),
      propertyParameters(300),
    );
  });
});
