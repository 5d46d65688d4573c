#!/usr/bin/env node
// Runs the compiled tests with node:test: the spec reporter for the details,
// then scripts/summary-reporter.js for one summary line (and the reason of
// every skipped test). Arguments narrow the run to files or folders of dist/.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Every *.test.js under the given files or folders, sorted. */
function testFiles(paths) {
  const found = [];
  const walk = (p) => {
    if (statSync(p).isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
    else if (p.endsWith('.test.js')) found.push(p);
  };
  for (const p of paths) walk(p);
  return found.sort();
}

const targets = testFiles(process.argv.length > 2 ? process.argv.slice(2) : ['dist/src', 'dist/test']);
if (targets.length === 0) throw new Error('no *.test.js files found: did the build run?');
const args = [
  '--enable-source-maps',
  '--test',
  '--test-reporter=spec', '--test-reporter-destination=stdout',
  '--test-reporter=./scripts/summary-reporter.js', '--test-reporter-destination=stdout',
  ...targets,
];
const result = spawnSync(process.execPath, args, { stdio: 'inherit' });
if (result.error) throw result.error;
process.exitCode = result.status ?? 1;
