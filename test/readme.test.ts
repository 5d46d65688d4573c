/** The README's TypeScript example runs as written, against the built library. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('README', () => {
  it('its tour runs', async () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
    assert.equal(blocks.length, 1, 'one TypeScript block');
    const index = pathToFileURL(join(root, 'dist', 'src', 'index.js')).href;
    const source = (blocks[0] ?? '').replace(/from 'guestmem'/g, `from '${index}'`);
    const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
    const dir = mkdtempSync(join(tmpdir(), 'guestmem-readme-'));
    try {
      const file = join(dir, 'tour.mjs');
      writeFileSync(file, outputText);
      await import(pathToFileURL(file).href);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
