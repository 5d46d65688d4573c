#!/usr/bin/env node
// Assembles src/guest/*.S with GNU as and writes flat binaries (objcopy -O
// binary) to dist/src/guest/<name>.bin, beside the module that loads them.
// The .inc files there hold macros the programs include.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const src = 'src/guest';
const out = 'dist/src/guest';
mkdirSync(out, { recursive: true });
for (const file of readdirSync(src).filter((f) => f.endsWith('.S')).sort()) {
  const name = file.slice(0, -2);
  const object = join(out, `${name}.o`);
  execFileSync('as', ['--64', '-I', src, '-o', object, join(src, file)], { stdio: 'inherit' });
  execFileSync('objcopy', ['-O', 'binary', '-j', '.text', object, join(out, `${name}.bin`)], { stdio: 'inherit' });
  rmSync(object);
}
