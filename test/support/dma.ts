/** Helpers for tests of the DMA mapping models. */
import assert from 'node:assert/strict';
import { DmaMapError } from '../../src/core/errors.js';
import type { DmaMapper, DmaMapping } from '../../src/iommu/dma-mapper.js';
import { thrown } from './thrown.js';

/** Host address of IOVA 0 in these tests: every mapping is iova -> HOST + iova. */
export const HOST = 0x7f00_0000_0000;
/** 2^53, the first IOVA past the safe integers. */
export const TWO_53 = 2 ** 53;

/** A mapping of [iova, iova + size) onto HOST + iova. */
export function m(iova: number, size: number): DmaMapping {
  return { iova, size, vaddr: HOST + iova };
}

/** Maps each [iova, size) onto HOST + iova. */
export function mapAll(mapper: DmaMapper, ...ranges: (readonly [number, number])[]): void {
  for (const [iova, size] of ranges) mapper.map(iova, size, HOST + iova);
}

/**
 * Runs a call that must fail with `errnoName` and change nothing (mappings,
 * pinned bytes, successful call counts); returns the error.
 */
export function refused(mapper: DmaMapper, errnoName: string, fn: () => unknown): DmaMapError {
  const before = mapper.mappings();
  const { pinnedBytes, mapCalls, unmapCalls, cutCalls } = mapper.stats;
  const error = thrown(DmaMapError, fn);
  assert.equal(error.errnoName, errnoName, error.message);
  assert.equal(error.code, 'ERR_DMA_MAP');
  assert.deepEqual(mapper.mappings(), before, `a failed call (${errnoName}) changes no mapping`);
  const after = mapper.stats;
  assert.deepEqual([after.pinnedBytes, after.mapCalls, after.unmapCalls, after.cutCalls], [pinnedBytes, mapCalls, unmapCalls, cutCalls]);
  return error;
}
