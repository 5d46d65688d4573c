/**
 * Builds the C baselines of bench/c with the machine's gcc (once per source
 * change) and runs them.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (this file runs from dist/bench/lib). */
export const repoRoot = resolve(here, '..', '..', '..');
const sourceDir = join(repoRoot, 'bench', 'c');
const buildDir = join(repoRoot, 'dist', 'bench-c');

/** Compiles bench/c/<name>.c with -O2 -march=native unless up to date; returns the binary's path. */
export function buildC(name: string, extraFlags: string[] = []): string {
  const source = join(sourceDir, `${name}.c`);
  const binary = join(buildDir, name);
  mkdirSync(buildDir, { recursive: true });
  if (!existsSync(binary) || statSync(binary).mtimeMs < statSync(source).mtimeMs) {
    execFileSync('gcc', ['-O2', '-march=native', '-Wall', '-Wextra', '-Werror', '-o', binary, source, ...extraFlags], { stdio: 'inherit' });
  }
  return binary;
}

/** Runs a baseline and parses the one JSON object it prints. */
export function runC(binary: string, args: string[]): Record<string, unknown> {
  const out = execFileSync(binary, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  const parsed: unknown = JSON.parse(out);
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`${binary} printed ${out}`);
  return parsed as Record<string, unknown>;
}

/** gcc's version line, for the report. */
export function gccVersion(): string {
  return execFileSync('gcc', ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? 'gcc';
}
