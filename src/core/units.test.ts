import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from './errors.js';
import { formatBytes, GiB, hex, isPowerOfTwo, KiB, MiB, parseByteSize, TiB, toByteCount } from './units.js';

describe('units', () => {
  it('parses sizes as people write them', () => {
    assert.equal(parseByteSize('4096'), 4096);
    assert.equal(parseByteSize('0x1000'), 4096);
    assert.equal(parseByteSize('64K'), 64 * KiB);
    assert.equal(parseByteSize('2m'), 2 * MiB);
    assert.equal(parseByteSize(' 16GiB '), 16 * GiB);
    assert.equal(parseByteSize('1T'), TiB);
    assert.equal(parseByteSize('1.5G'), 1.5 * GiB);
    for (const bad of ['', 'G', '12Q', '-1', '1.3', '9007199254740993', '64 K B']) assert.throws(() => parseByteSize(bad), InvalidArgumentError, bad);
  });

  it('prints hex like QEMU and bytes for people', () => {
    assert.equal(hex(0), '0x0');
    assert.equal(hex(0x200000), '0x200000');
    assert.equal(hex(0xffff_ffff_ffff_f000n), '0xfffffffffffff000');
    assert.equal(formatBytes(4096), '4 KiB');
    assert.equal(formatBytes(1.5 * GiB), '1.50 GiB');
    assert.equal(formatBytes(100), '100 B');
  });

  it('accepts only non-negative integers as byte counts', () => {
    assert.equal(toByteCount(5, 'x'), 5);
    assert.equal(toByteCount(5n, 'x'), 5);
    assert.equal(toByteCount(2n ** 60n, 'x'), undefined);
    assert.equal(toByteCount(2 ** 60, 'x'), undefined);
    for (const bad of [-1, 0.5, Number.NaN, '5', null, -1n]) assert.throws(() => toByteCount(bad, 'x'), InvalidArgumentError);
  });

  it('knows powers of two', () => {
    assert.deepEqual([1, 2, 4096, 2 ** 52].map(isPowerOfTwo), [true, true, true, true]);
    assert.deepEqual([0, 3, 4095, -4, 0.5].map(isPowerOfTwo), [false, false, false, false, false]);
  });
});
