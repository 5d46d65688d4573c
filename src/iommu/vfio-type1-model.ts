/**
 * VFIO's type1 IOMMU backend (VFIO_TYPE1v2_IOMMU), as
 * drivers/vfio/vfio_iommu_type1.c answers VFIO_IOMMU_MAP_DMA and
 * VFIO_IOMMU_UNMAP_DMA:
 *
 * - map: EINVAL for a zero size, a range not aligned to the IOMMU page size,
 *   or one that wraps; EEXIST when it overlaps a mapping; ENOSPC when
 *   dma_entry_limit mappings exist (module parameter, default 65535); ENOMEM
 *   when pinning passes RLIMIT_MEMLOCK. Checked in that order.
 * - unmap (v2): the range must not split a mapping: if a mapping holds the
 *   first byte but starts before it, or holds the last byte but ends after
 *   it, EINVAL and nothing is unmapped. Otherwise every mapping inside goes;
 *   a range holding none succeeds with 0 bytes.
 * - mappings are never split or merged, and there is no cut (ENOTTY).
 */
import { InvalidArgumentError } from '../core/errors.js';
import { hex } from '../core/units.js';
import { DmaMapperModel, type DmaMapperModelOptions } from './dma-mapper.js';

/** The kernel's default dma_entry_limit. */
export const DEFAULT_DMA_ENTRY_LIMIT = 65535;

/** Options for {@link VfioType1Model}. */
export interface VfioType1Options extends DmaMapperModelOptions {
  /** vfio_iommu_type1.dma_entry_limit. Default 65535. */
  readonly dmaEntryLimit?: number;
}

/** A VFIO type1 container's DMA mappings (see the module documentation). */
export class VfioType1Model extends DmaMapperModel {
  override readonly kind = 'vfio-type1';
  override readonly mappingLimit: number;
  override readonly limitName = 'dma_entry_limit';
  override readonly canCut = false;

  constructor(options: VfioType1Options = {}) {
    super('vfio-type1', options);
    const limit = options.dmaEntryLimit ?? DEFAULT_DMA_ENTRY_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 0 || limit > 0xffff_ffff) {
      throw new InvalidArgumentError(`${this.name}: dmaEntryLimit must be a u32, got ${String(limit)}`);
    }
    this.mappingLimit = limit;
  }

  override map(iova: number, size: number, vaddr: number): void {
    const call = 'VFIO_IOMMU_MAP_DMA';
    this.checkMap(call, iova, size, vaddr, 'EINVAL', () => (this.tree.count < this.mappingLimit ? undefined
      : this.fail(call, 'ENOSPC', iova, size, `all ${String(this.mappingLimit)} mappings of dma_entry_limit are in use`,
        'raise vfio_iommu_type1.dma_entry_limit, use iommufd, or map larger ranges')));
    this.added({ iova, size, vaddr });
  }

  override unmap(iova: number, size: number): number {
    const call = 'VFIO_IOMMU_UNMAP_DMA';
    this.checkUnmap(call, iova, size, 'EINVAL');
    const first = this.tree.at(iova);
    if (first && first.iova !== iova) {
      throw this.fail(call, 'EINVAL', iova, size, `the range starts inside the mapping ${hex(first.iova)}+${hex(first.size)}, which type1 cannot split`);
    }
    const last = this.tree.at(iova + size - 1);
    if (last && last.iova + last.size !== iova + size) {
      throw this.fail(call, 'EINVAL', iova, size, `the range ends inside the mapping ${hex(last.iova)}+${hex(last.size)}, which type1 cannot split`);
    }
    let bytes = 0;
    for (const m of this.tree.within(iova, size)) {
      this.removed(m);
      bytes += m.size;
    }
    this.unmapped();
    return bytes;
  }

  override cut(iova: number): boolean {
    throw this.fail('cut', 'ENOTTY', iova, 0, 'VFIO type1 has no way to split a mapping');
  }
}
