/**
 * `npm run bench [-- --json] [--docs] [--only <regexp>]`: runs the benchmarks,
 * prints a table, with --json writes bench/results/latest.json, with --docs
 * rewrites the generated table in docs/benchmarks.md.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { gccVersion, repoRoot } from './lib/native.js';
import { toMarkdown, toTable, type BenchResult } from './lib/result.js';
import { existsSync } from 'node:fs';
import { runCalibration } from './calibration.bench.js';
import { runConversionBench } from './conversion.bench.js';
import { runKvmBench } from './kvm.bench.js';
import { runTrackerBench } from './tracker.bench.js';

const program = new Command('bench')
  .option('--json', 'write bench/results/latest.json')
  .option('--docs', 'rewrite the results table in docs/benchmarks.md')
  .option('--only <regexp>', 'run only the benchmarks whose id matches')
  .parse();
const opts = program.opts<{ json?: boolean; docs?: boolean; only?: string }>();
const only = opts.only === undefined ? undefined : new RegExp(opts.only);
const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

const machine = `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, `
  + `Node ${process.version}, ${gccVersion()}`;
log(`machine: ${machine}`);

const results: BenchResult[] = [
  ...(!only || only.test('calibration.loop') ? runCalibration(log) : []),
  ...runTrackerBench({ ...(only ? { only } : {}), log }),
  ...await runKvmBench({ ...(only ? { only } : {}), log }),
  ...await runConversionBench({ ...(only ? { only } : {}), log, kvm: existsSync('/dev/kvm') }),
];

console.log(toTable(results));
const missed = results.filter((r) => r.met === false);
console.log(missed.length === 0 ? 'every goal met' : `goals not met: ${missed.map((r) => r.id).join(', ')}`);

if (opts.json) {
  const dir = join(repoRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  log('wrote bench/results/latest.json');
}
if (opts.docs) {
  const path = join(repoRoot, 'docs', 'benchmarks.md');
  const doc = readFileSync(path, 'utf8');
  const begin = '<!-- bench:begin -->';
  const end = '<!-- bench:end -->';
  const a = doc.indexOf(begin);
  const b = doc.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${path} has no ${begin} ... ${end} section`);
  const stamp = `Measured ${new Date().toISOString().slice(0, 10)} on: ${machine}.`;
  writeFileSync(path, `${doc.slice(0, a + begin.length)}\n${stamp}\n\n${toMarkdown(results)}\n${doc.slice(b)}`);
  log('updated docs/benchmarks.md');
}
