/**
 * Operation lists shared by the TypeScript and C sides of a benchmark: built
 * once from a seeded generator, written in the C harness's record format
 * ({ u8 kind; u8 pad[7]; u64 offset; u64 size; }), replayed by both.
 */
import { writeFileSync } from 'node:fs';

export const OP_TO_SHARED = 0;
export const OP_TO_PRIVATE = 1;
export const OP_IS_POPULATED = 2;
export const OP_REPLAY_POPULATED = 3;

/** A growable list of operations in struct-of-arrays form. */
export class OpList {
  kinds = new Uint8Array(1024);
  offsets = new Float64Array(1024);
  sizes = new Float64Array(1024);
  length = 0;

  push(kind: number, offset: number, size: number): void {
    if (this.length === this.kinds.length) {
      const grow = <T extends Uint8Array | Float64Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.kinds = grow(this.kinds, (n) => new Uint8Array(n));
      this.offsets = grow(this.offsets, (n) => new Float64Array(n));
      this.sizes = grow(this.sizes, (n) => new Float64Array(n));
    }
    this.kinds[this.length] = kind;
    this.offsets[this.length] = offset;
    this.sizes[this.length] = size;
    this.length++;
  }

  /** Writes the C record format. */
  writeTo(path: string): void {
    const buf = Buffer.alloc(this.length * 24);
    for (let i = 0; i < this.length; i++) {
      buf.writeUInt8(this.kinds[i] ?? 0, i * 24);
      buf.writeBigUInt64LE(BigInt(this.offsets[i] ?? 0), i * 24 + 8);
      buf.writeBigUInt64LE(BigInt(this.sizes[i] ?? 0), i * 24 + 16);
    }
    writeFileSync(path, buf);
  }
}

export { Rng } from '../../src/workload/rng.js';
