/**
 * The kernel's own count of the memory a store holds, to check a ledger
 * against after every operation.
 *
 * - memfd (4 KiB, THP, hugetlb): st_blocks of the file, exact;
 * - guest_memfd: st_blocks stays 0, and memory cgroup counts are batched, so
 *   the system's page-cache count (Cached in /proc/meminfo) is read after
 *   /proc/sys/vm/stat_refresh folds every CPU's pending delta in: exact, but
 *   system-wide, so compare the change across one operation.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/** Reads a byte count the kernel keeps. */
export interface KernelMeter {
  readonly source: string;
  read(): number;
}

export const canReadPageCacheExactly = existsSync('/proc/sys/vm/stat_refresh') && process.getuid?.() === 0;

/** Cached (bytes) from /proc/meminfo after folding per-CPU deltas. */
export function pageCacheMeter(): KernelMeter {
  return {
    source: 'Cached in /proc/meminfo after stat_refresh',
    read(): number {
      writeFileSync('/proc/sys/vm/stat_refresh', '1');
      const m = /^Cached:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
      if (!m) throw new Error('no Cached line in /proc/meminfo');
      return Number(m[1]) * 1024;
    },
  };
}
