/**
 * fast-check settings shared by the property tests.
 *
 * - GUESTMEM_PROPERTY_RUNS scales every property's run count (a factor, e.g.
 *   `0.1` for a quick local pass or `10` for a long soak). Default 1.
 * - GUESTMEM_SEED (with GUESTMEM_PATH) replays a failure: fast-check prints
 *   both in the error message of a failing property.
 */
import type fc from 'fast-check';

function scale(): number {
  const raw = process.env['GUESTMEM_PROPERTY_RUNS'];
  if (raw === undefined || raw === '') return 1;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`GUESTMEM_PROPERTY_RUNS must be a positive number, got ${raw}`);
  return n;
}

/** Parameters for `fc.assert`: run count (scaled), and the replay seed if given. */
export function propertyParameters<T>(numRuns: number): fc.Parameters<T> {
  const runs = Math.max(1, Math.round(numRuns * scale()));
  const seed = process.env['GUESTMEM_SEED'];
  const path = process.env['GUESTMEM_PATH'];
  return {
    numRuns: runs,
    ...(seed !== undefined && seed !== '' ? { seed: Number(seed) } : {}),
    ...(path !== undefined && path !== '' ? { path } : {}),
  };
}
