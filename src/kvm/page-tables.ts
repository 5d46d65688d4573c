/**
 * Identity page tables for a 64-bit guest: one PML4, one PDPT, and a page
 * directory of 2 MiB pages per GiB mapped. With `user`, every level carries
 * the U/S bit so code at CPL3 may use the whole mapping (what runs natively
 * under PVM).
 *
 *   table + 0x0000  PML4   entry 0 -> PDPT
 *   table + 0x1000  PDPT   entry g -> PD g
 *   table + 0x2000  PD 0   512 x 2 MiB  (GiB 0)
 *   table + 0x3000  PD 1   ...          (GiB 1) ...
 */
import { InvalidArgumentError } from '../core/errors.js';
import { hex } from '../core/units.js';

const PRESENT = 1n;
const WRITABLE = 2n;
const USER = 4n;
const PAGE_SIZE_2M = 0x80n;

/** Bytes of page tables that map `gib` GiB. */
export function pageTableBytes(gib: number): number {
  return (2 + gib) * 4096;
}

/**
 * Writes identity page tables mapping [0, gib GiB) into `memory` at
 * `offset`, where that byte is guest physical address `gpa`; returns the
 * value for CR3.
 */
export function writeIdentityPageTables(memory: Uint8Array, offset: number, gpa: number, gib: number, user: boolean): bigint {
  if (!Number.isInteger(gib) || gib < 1 || gib > 512) throw new InvalidArgumentError(`page tables map 1 to 512 GiB, not ${gib}`);
  if (gpa % 4096 !== 0) throw new InvalidArgumentError(`page tables at ${hex(gpa)} are not 4 KiB aligned`);
  if (offset + pageTableBytes(gib) > memory.length) throw new InvalidArgumentError(`page tables for ${gib} GiB do not fit at offset ${hex(offset)}`);
  const view = new DataView(memory.buffer, memory.byteOffset + offset, pageTableBytes(gib));
  const flags = PRESENT | WRITABLE | (user ? USER : 0n);
  const base = BigInt(gpa);
  view.setBigUint64(0, (base + 0x1000n) | flags, true);
  for (let g = 0; g < gib; g++) {
    const pd = 0x2000 + g * 0x1000;
    view.setBigUint64(0x1000 + g * 8, (base + BigInt(pd)) | flags, true);
    for (let e = 0; e < 512; e++) {
      view.setBigUint64(pd + e * 8, (BigInt(g * 512 + e) << 21n) | flags | PAGE_SIZE_2M, true);
    }
  }
  return base;
}
