/**
 * What a test needs from the host. When the host lacks it, the test is
 * skipped with the reason; with GUESTMEM_REQUIRE_KVM=1 (set by CI on the
 * project's machines, which have /dev/kvm, root and huge pages) the lack is a
 * failure instead, so nothing the machine should offer is silently skipped.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { CapabilityError } from '../../src/core/errors.js';
import { Kvm } from '../../src/sys/kvm.js';

export const requireHost = process.env['GUESTMEM_REQUIRE_KVM'] === '1';

/**
 * Returns true when `available`; otherwise skips the test with `reason`
 * (returns false), or fails it under GUESTMEM_REQUIRE_KVM=1.
 */
export function need(t: TestContext, available: boolean, reason: string): boolean {
  if (available) return true;
  if (requireHost) assert.fail(`required by GUESTMEM_REQUIRE_KVM=1: ${reason}`);
  t.skip(reason);
  return false;
}

/** /dev/kvm, opened; undefined (test skipped) when there is none. */
export function openKvm(t: TestContext): Kvm | undefined {
  try {
    return Kvm.open();
  } catch (error) {
    if (error instanceof CapabilityError) {
      need(t, false, error.message);
      return undefined;
    }
    throw error;
  }
}

export const isRoot = process.getuid?.() === 0;

const hugeDir = (size: number): string => `/sys/kernel/mm/hugepages/hugepages-${size / 1024}kB`;

/**
 * Makes `count` free huge pages of `size` available while `fn` runs, by
 * raising nr_hugepages (as root), and gives them back afterwards. Skips (or
 * fails) when they cannot be had.
 */
export async function withHugePages(t: TestContext, size: number, count: number, fn: () => Promise<void> | void): Promise<void> {
  const dir = hugeDir(size);
  if (!need(t, existsSync(dir), `no ${size / 2 ** 20} MiB huge page pool (${dir})`)) return;
  const read = (f: string): number => Number(readFileSync(`${dir}/${f}`, 'utf8').trim());
  const before = read('nr_hugepages');
  const missing = Math.max(0, count - read('free_hugepages'));
  if (missing > 0) {
    if (!need(t, isRoot, `needs root to reserve ${count} huge pages of ${size / 2 ** 20} MiB`)) return;
    writeFileSync(`${dir}/nr_hugepages`, String(before + missing));
  }
  try {
    if (!need(t, read('free_hugepages') >= count, `could not reserve ${count} huge pages of ${size / 2 ** 20} MiB (memory too fragmented?)`)) return;
    await fn();
  } finally {
    if (missing > 0) writeFileSync(`${dir}/nr_hugepages`, String(before));
  }
}

const SHMEM_THP = '/sys/kernel/mm/transparent_hugepage/shmem_enabled';

/** Runs `fn` with shmem THP set to `mode` (as root), restoring the previous mode afterwards. */
export async function withShmemThp(t: TestContext, mode: string, fn: () => Promise<void> | void): Promise<void> {
  if (!need(t, existsSync(SHMEM_THP), 'no shmem THP control')) return;
  const previous = /\[(\w+)\]/.exec(readFileSync(SHMEM_THP, 'utf8'))?.[1] ?? 'never';
  if (previous !== mode && !need(t, isRoot, `needs root to set shmem THP to ${mode}`)) return;
  writeFileSync(SHMEM_THP, mode);
  try {
    await fn();
  } finally {
    writeFileSync(SHMEM_THP, previous);
  }
}
