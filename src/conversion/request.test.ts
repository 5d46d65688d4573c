/**
 * Decoding what a guest sends: every 64-bit MAP_GPA_RANGE argument triple
 * and every memory-fault flag word is either refused with the right reason
 * and status or decoded exactly.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { propertyParameters } from '../../test/support/property.js';
import { ConversionError, InvalidArgumentError } from '../core/errors.js';
import { GiB, MiB } from '../core/units.js';
import { apiRequest, decodeMapGpaRange, decodeMemoryFault, KVM_EINVAL, type MapGpaRangeArgs } from './request.js';

const U64 = 1n << 64n;
const PHYS = 1n << 52n;

/** A u64 that is often interesting: near 0, near 2^52, near 2^64, or aligned to 4 KiB, 2 MiB, 1 GiB. */
const u64 = fc.oneof(
  fc.bigInt({ min: 0n, max: U64 - 1n }),
  fc.bigInt({ min: 0n, max: 1n << 20n }),
  fc.bigInt({ min: 0n, max: 1n << 12n }).map((d) => U64 - 1n - d),
  fc.bigInt({ min: 0n, max: 1n << 32n }).map((d) => PHYS - d),
  fc.bigInt({ min: 0n, max: 1n << 30n }).map((k) => k * 4096n),
  fc.bigInt({ min: 0n, max: 1n << 20n }).map((k) => k * 2097152n),
  fc.bigInt({ min: 0n, max: 1n << 12n }).map((k) => k * 1073741824n),
);
const attributes = fc.oneof(fc.constantFrom(0n, 1n, 2n, 3n, 0x10n, 0x11n, 0x12n, 0x13n), fc.bigInt({ min: 0n, max: U64 - 1n }), fc.integer({ min: 0, max: 63 }).map((b) => 1n << BigInt(b)));

/** The rules, written out once more, plainly: the reason or the decoded request. */
function expected(a: MapGpaRangeArgs): string | { gpa: number; size: number; to: string; pageSize: number } {
  if ((a.attributes & ~0x13n) !== 0n || (a.attributes & 3n) === 3n) return 'invalid-attributes';
  if (a.npages === 0n) return 'zero-size';
  if (a.gpa % 4096n !== 0n) return 'unaligned';
  const end = a.gpa + a.npages * 4096n;
  if (end > U64) return 'wrap-around';
  if (end > PHYS) return 'outside-ram';
  const page = (a.attributes & 1n) !== 0n ? 2097152n : (a.attributes & 2n) !== 0n ? 1073741824n : 4096n;
  if (a.gpa % page !== 0n || (a.npages * 4096n) % page !== 0n) return 'granularity';
  return { gpa: Number(a.gpa), size: Number(a.npages * 4096n), to: (a.attributes & 0x10n) !== 0n ? 'private' : 'shared', pageSize: Number(page) };
}

describe('MAP_GPA_RANGE decoding', () => {
  it('decodes the ordinary requests', () => {
    assert.deepEqual(decodeMapGpaRange({ gpa: 0x4000_0000n, npages: 1n, attributes: 0x10n }, 'hypercall', 3),
      { gpa: 0x4000_0000, size: 4096, to: 'private', source: 'hypercall', pageSize: 4096, vcpu: 3 });
    assert.deepEqual(decodeMapGpaRange({ gpa: 0x4020_0000n, npages: 512n, attributes: 0x1n }, 'doorbell'),
      { gpa: 0x4020_0000, size: 2 * MiB, to: 'shared', source: 'doorbell', pageSize: 2 * MiB });
    assert.equal(decodeMapGpaRange({ gpa: BigInt(GiB), npages: 262144n, attributes: 0x12n }, 'doorbell').pageSize, GiB);
  });

  it('refuses each malformed request with its reason and -KVM_EINVAL', () => {
    const cases: [MapGpaRangeArgs, string][] = [
      [{ gpa: 0n, npages: 1n, attributes: 0x20n }, 'invalid-attributes'],
      [{ gpa: 0n, npages: 1n, attributes: 0x3n }, 'invalid-attributes'],
      [{ gpa: 0n, npages: 0n, attributes: 0n }, 'zero-size'],
      [{ gpa: 0x1001n, npages: 1n, attributes: 0n }, 'unaligned'],
      [{ gpa: U64 - 4096n, npages: 2n, attributes: 0n }, 'wrap-around'],
      [{ gpa: 0n, npages: U64 - 1n, attributes: 0n }, 'wrap-around'],
      [{ gpa: PHYS - 4096n, npages: 2n, attributes: 0n }, 'outside-ram'],
      [{ gpa: 0x1000n, npages: 512n, attributes: 0x1n }, 'granularity'],
      [{ gpa: 0n, npages: 1n, attributes: 0x2n }, 'granularity'],
    ];
    for (const [args, reason] of cases) {
      assert.throws(() => decodeMapGpaRange(args, 'hypercall'), (e: unknown) => e instanceof ConversionError && e.reason === reason && e.guestStatus === -KVM_EINVAL, reason);
    }
  });

  it('decodes or refuses every argument triple exactly as the rules say', () => {
    fc.assert(fc.property(u64, u64, attributes, (gpa, npages, attrs) => {
      const args = { gpa, npages, attributes: attrs };
      const want = expected(args);
      try {
        const got = decodeMapGpaRange(args, 'doorbell');
        assert.deepEqual({ gpa: got.gpa, size: got.size, to: got.to, pageSize: got.pageSize }, want);
      } catch (error) {
        if (!(error instanceof ConversionError)) throw error;
        assert.equal(error.reason, want);
        assert.equal(error.guestStatus, -KVM_EINVAL);
      }
    }), propertyParameters(3000));
  });
});

describe('memory fault decoding', () => {
  it('takes the private flag and refuses every other bit', () => {
    assert.equal(decodeMemoryFault({ gpa: 0x1000n, size: 0x1000n, flags: 8n }).to, 'private');
    assert.equal(decodeMemoryFault({ gpa: 0x1000n, size: 0x1000n, flags: 0n }).to, 'shared');
    for (let bit = 0n; bit < 64n; bit++) {
      if (bit === 3n) continue;
      assert.throws(() => decodeMemoryFault({ gpa: 0x1000n, size: 0x1000n, flags: 1n << bit }), (e: unknown) => e instanceof ConversionError && e.reason === 'invalid-flags');
    }
    assert.throws(() => decodeMemoryFault({ gpa: 0x1000n, size: 0n, flags: 8n }), ConversionError);
  });
});

describe('API requests', () => {
  it('takes numbers and bigints, refuses what is not a byte count or a state', () => {
    assert.equal(apiRequest(0x1000n, 0x2000, 'shared').size, 0x2000);
    assert.throws(() => apiRequest(-1, 0x1000, 'shared'), InvalidArgumentError);
    assert.throws(() => apiRequest(0, 0x1000, 'both' as 'shared'), InvalidArgumentError);
    assert.throws(() => apiRequest(2 ** 60, 0x1000, 'shared'), (e: unknown) => e instanceof ConversionError && e.reason === 'outside-ram');
  });
});
