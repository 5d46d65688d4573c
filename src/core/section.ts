/**
 * Memory regions and sections, after QEMU's MemoryRegion and
 * MemoryRegionSection: a section is a window onto a region, placed at some
 * address in an address space.
 *
 *   region      0 ............................................ size
 *   section            [offsetWithinRegion, + size)
 *   address space      [offsetWithinAddressSpace, + size)   (e.g. the GPA or IOVA)
 *
 * Every range handed to a listener is a section built by {@link intersectSection}
 * from the listener's own, so its address-space offset is always right (QEMU's
 * aggregated replay leaves it 0; see reference §3.4).
 */
import { InvalidArgumentError, InvalidRangeError } from './errors.js';
import { toSafeByteCount, type ByteCount } from './units.js';

/** A named span of guest RAM that sections refer to. */
export class MemoryRegion {
  /** Name in errors and traces, e.g. `pc.ram`. */
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;

  constructor(name: string, size: ByteCount) {
    if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('a memory region needs a name');
    this.name = name;
    this.size = toSafeByteCount(size, `region '${name}': size`);
    if (this.size === 0) throw new InvalidArgumentError(`region '${name}': size is zero`);
  }

  /**
   * A section of this region; by default the whole region at address-space
   * offset equal to the region offset.
   *
   * @throws InvalidRangeError when the section is empty or leaves the region.
   */
  section(offset: ByteCount = 0, size: ByteCount = this.size - Number(offset), addressSpaceOffset: ByteCount = offset): MemoryRegionSection {
    return createSection(this, offset, size, addressSpaceOffset);
  }
}

/** A window onto a region, placed in an address space. Immutable. */
export interface MemoryRegionSection {
  /** The region the section is a window onto. */
  readonly region: MemoryRegion;
  /** Where the window starts in the region (bytes). */
  readonly offsetWithinRegion: number;
  /** Length of the window in bytes (never zero). */
  readonly size: number;
  /** Where the window's first byte sits in its address space (a GPA, an IOVA). */
  readonly offsetWithinAddressSpace: number;
}

/**
 * Builds a validated section: non-empty, inside the region.
 *
 * @throws InvalidRangeError or InvalidArgumentError.
 */
export function createSection(region: MemoryRegion, offset: ByteCount, size: ByteCount, addressSpaceOffset: ByteCount = offset): MemoryRegionSection {
  const what = `section of region '${region.name}'`;
  const o = toSafeByteCount(offset, `${what}: offset`);
  const s = toSafeByteCount(size, `${what}: size`);
  const a = toSafeByteCount(addressSpaceOffset, `${what}: address-space offset`);
  if (s === 0) throw new InvalidRangeError(what, o, s, 'zero-size', 'size is zero');
  if (o + s > region.size) {
    throw new InvalidRangeError(what, o, s, 'out-of-bounds', `range ends beyond the region size 0x${region.size.toString(16)}`);
  }
  if (!Number.isSafeInteger(a + s)) throw new InvalidRangeError(what, a, s, 'out-of-bounds', 'address-space range ends beyond 2^53');
  return { region, offsetWithinRegion: o, size: s, offsetWithinAddressSpace: a };
}

/**
 * The part of `section` inside region range [start, end), with the
 * address-space offset moved by the same amount; `undefined` when they do not
 * overlap (QEMU's memory_region_section_intersect_range).
 */
export function intersectSection(section: MemoryRegionSection, start: number, end: number): MemoryRegionSection | undefined {
  const s = Math.max(section.offsetWithinRegion, start);
  const e = Math.min(section.offsetWithinRegion + section.size, end);
  if (e <= s) return undefined;
  return subSection(section, s, e);
}

/** The sub-range [start, end) of a section, which must lie inside it. */
export function subSection(section: MemoryRegionSection, start: number, end: number): MemoryRegionSection {
  return {
    region: section.region,
    offsetWithinRegion: start,
    size: end - start,
    offsetWithinAddressSpace: section.offsetWithinAddressSpace + (start - section.offsetWithinRegion),
  };
}

/** End offset (exclusive) of a section within its region. */
export function sectionEnd(section: MemoryRegionSection): number {
  return section.offsetWithinRegion + section.size;
}
