/**
 * How fast this machine runs plain JavaScript against plain C: the same
 * trivial loop on both sides. Read the ratios of the other benchmarks against
 * this one.
 */
import { buildC, runC } from './lib/native.js';
import { result, round, type BenchResult } from './lib/result.js';

function sum(a: Int32Array, passes: number): number {
  let s = 0;
  for (let k = 0; k < passes; k++) {
    // eslint-disable-next-line @typescript-eslint/prefer-for-of -- the same indexed loop as the C side
    for (let i = 0; i < a.length; i++) s = (s + (a[i] ?? 0)) | 0;
  }
  return s;
}

export function runCalibration(log: (line: string) => void): BenchResult[] {
  log('calibration: loop');
  const a = new Int32Array(1 << 20).map((_, i) => i);
  let best = Infinity;
  let sink = 0;
  for (let r = 0; r < 8; r++) {
    const t0 = process.hrtime.bigint();
    sink ^= sum(a, 100);
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / (a.length * 100));
  }
  const c = runC(buildC('calibrate'), []);
  return [result({
    id: 'calibration.loop', metric: 'one iteration of a summing loop over an Int32Array (no vectorisation in C)',
    value: round(best, 2), unit: 'ns', baseline: { name: 'C', value: round(Number(c['nsPerElement']), 2) },
    note: `checksum ${sink}`,
  })];
}
