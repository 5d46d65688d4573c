/**
 * iommufd's IO address space (IOAS), as drivers/iommu/iommufd/io_pagetable.c
 * answers IOMMU_IOAS_MAP (with IOMMU_IOAS_MAP_FIXED_IOVA) and
 * IOMMU_IOAS_UNMAP, plus the proposed cut:
 *
 * - map: EINVAL for a zero length or a range not aligned to the IOVA
 *   alignment; EOVERFLOW when it wraps; EEXIST when it overlaps an area;
 *   ENOMEM when pinning passes RLIMIT_MEMLOCK. No limit on the number of
 *   areas.
 * - unmap: walks the areas meeting the range in IOVA order and unmaps each
 *   that lies wholly inside; at the first that does not, it stops with
 *   ENOENT, the areas before it already gone (the kernel reports the bytes
 *   unmapped so far). A range holding no area is ENOENT too.
 * - cut: splits the area holding an IOVA into two, so that a later unmap can
 *   take one side. Not merged upstream; whether it succeeds depends on the
 *   IOMMU driver (it may have to split a huge IOPTE), so its outcome is an
 *   option here: `work`, `unsupported` (EOPNOTSUPP) or a predicate choosing
 *   which cuts fail (ENOMEM).
 * - areas never merge.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { hex } from '../core/units.js';
import { DmaMapperModel, type DmaMapping, type DmaMapperModelOptions } from './dma-mapper.js';

/** How the driver answers a cut: always, never, or as a predicate says (true = fail). */
export type CutBehaviour = 'work' | 'unsupported' | ((iova: number, area: DmaMapping) => boolean);

/** Options for {@link IommufdModel}. */
export interface IommufdOptions extends DmaMapperModelOptions {
  /** What cuts do. Default `work`. */
  readonly cuts?: CutBehaviour;
}

/** An iommufd IOAS's areas (see the module documentation). */
export class IommufdModel extends DmaMapperModel {
  override readonly kind = 'iommufd';
  override readonly mappingLimit = Infinity;
  override readonly limitName = 'none';
  override readonly canCut = true;
  /** What cuts do; may be changed at any time (tests). */
  cuts: CutBehaviour;

  constructor(options: IommufdOptions = {}) {
    super('iommufd', options);
    const cuts = options.cuts ?? 'work';
    if (cuts !== 'work' && cuts !== 'unsupported' && typeof cuts !== 'function') {
      throw new InvalidArgumentError(`${this.name}: cuts must be 'work', 'unsupported' or a function, got ${JSON.stringify(cuts)}`);
    }
    this.cuts = cuts;
  }

  override map(iova: number, size: number, vaddr: number): void {
    this.checkMap('IOMMU_IOAS_MAP', iova, size, vaddr, 'EOVERFLOW');
    this.added({ iova, size, vaddr });
  }

  override unmap(iova: number, size: number): number {
    const call = 'IOMMU_IOAS_UNMAP';
    this.checkUnmap(call, iova, size, 'EOVERFLOW');
    let bytes = 0;
    for (const m of this.tree.within(iova, size)) {
      if (m.iova < iova || m.iova + m.size > iova + size) {
        if (bytes > 0) this.unmapped();
        throw this.fail(call, 'ENOENT', iova, size,
          `the area ${hex(m.iova)}+${hex(m.size)} is not wholly inside the range; ${hex(bytes)} bytes before it were unmapped`);
      }
      this.removed(m);
      bytes += m.size;
    }
    if (bytes === 0) throw this.fail(call, 'ENOENT', iova, size, 'no area in the range');
    this.unmapped();
    return bytes;
  }

  override cut(iova: number): boolean {
    if (!this.aligned(iova)) throw this.fail('cut', 'EINVAL', iova, 0, `the cut must be at a multiple of the IOVA alignment ${hex(this.pageSize)}`);
    const area = this.tree.at(iova);
    if (!area || area.iova === iova) return false;
    if (this.cuts === 'unsupported') throw this.fail('cut', 'EOPNOTSUPP', iova, 0, 'the IOMMU driver cannot split an area');
    if (this.cuts !== 'work' && this.cuts(iova, area)) {
      throw this.fail('cut', 'ENOMEM', iova, 0, `the IOMMU driver could not split the area ${hex(area.iova)}+${hex(area.size)}`);
    }
    this.split(area, iova);
    return true;
  }
}
