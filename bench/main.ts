/**
 * `npm run bench [-- --json] [--docs] [--only <regexp>]`: runs the benchmarks,
 * prints a table, with --json writes bench/results/latest.json, with --docs
 * rewrites the generated table in docs/benchmarks.md (and the IOMMU matrix in
 * docs/iommu.md). A partial run (--only) keeps the other saved figures.
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
import { iommuMarkdown, runIommuBench } from './iommu.bench.js';
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
const iommu = !only || only.test('iommu') ? await runIommuBench({ ...(only ? { only } : {}), log }) : undefined;
if (iommu) results.push(...iommu.results);

console.log(toTable(results));
const missed = results.filter((r) => r.met === false);
console.log(missed.length === 0 ? 'every goal met' : `goals not met: ${missed.map((r) => r.id).join(', ')}`);

// A partial run (--only) replaces its own figures in the saved ones and keeps the rest.
const latest = join(repoRoot, 'bench', 'results', 'latest.json');
const saved: BenchResult[] = only && existsSync(latest) ? JSON.parse(readFileSync(latest, 'utf8')) as BenchResult[] : [];
const merged = [...saved.map((r) => results.find((n) => n.id === r.id) ?? r), ...results.filter((n) => !saved.some((r) => r.id === n.id))];

if (opts.json) {
  mkdirSync(join(repoRoot, 'bench', 'results'), { recursive: true });
  writeFileSync(latest, `${JSON.stringify(merged, null, 2)}\n`);
  log('wrote bench/results/latest.json');
}
/** Rewrites the part of a doc between two markers. */
function rewriteBetween(file: string, begin: string, end: string, content: string): void {
  const path = join(repoRoot, 'docs', file);
  const doc = readFileSync(path, 'utf8');
  const a = doc.indexOf(begin);
  const b = doc.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${path} has no ${begin} ... ${end} section`);
  writeFileSync(path, `${doc.slice(0, a + begin.length)}\n${content}\n${doc.slice(b)}`);
  log(`updated docs/${file}`);
}

if (opts.docs) {
  const date = new Date().toISOString().slice(0, 10);
  const partial = only ? ` (last run: \`--only ${String(opts.only)}\`; the other rows are from the run before)` : '';
  rewriteBetween('benchmarks.md', '<!-- bench:begin -->', '<!-- bench:end -->', `Measured ${date} on: ${machine}${partial}.\n\n${toMarkdown(merged)}`);
  if (iommu && iommu.rows.length > 0) {
    rewriteBetween('iommu.md', '<!-- iommu:begin -->', '<!-- iommu:end -->',
      `Measured ${date} on: ${machine}, with \`npm run bench -- --only iommu --docs\`.\n${iommuMarkdown(iommu.rows)}\n`);
  }
}
