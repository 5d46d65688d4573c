/** The guestmem command, run as a user runs it. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const main = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'main.js');

function guestmem(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('guestmem CLI', () => {
  it('runs the demo on its default and prints the table', () => {
    const r = guestmem('demo');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /guest RAM 64 GiB/);
    for (const phase of ['swiotlb', 'boot dma', 'runtime', 'kexec']) assert.match(r.stdout, new RegExp(`│ ${phase}`));
    assert.match(r.stdout, /ram_block_attributes_state_change offset 0x/);
  });

  it('prints the demo report as JSON', () => {
    const r = guestmem('demo', '--ram', '2G', '--churn', '100', '--json');
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { ramSize: number; phases: unknown[] };
    assert.equal(report.ramSize, 2 ** 31);
    assert.equal(report.phases.length, 4);
  });

  it('shows an assigned device\'s DMA mappings per API and strategy, checked', () => {
    const r = guestmem('dma', '--ram', '1G', '--runtime', '400', '--limit', '20000');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /1 GiB guest, 6% SWIOTLB pool, runtime conversions at 4 KiB: 430 conversions/);
    for (const api of ['vfio-type1', 'iommufd']) for (const s of ['per-granule', 'coalesced', 'aligned']) assert.match(r.stdout, new RegExp(`│ ${api}\\s+│ ${s}`));
    assert.equal((r.stdout.match(/clean \(430 conversions\)/g) ?? []).length, 6);
    const json = guestmem('dma', '--ram', '256M', '--runtime', '10', '--granularity', '2m', '--json');
    assert.equal(json.status, 0, json.stderr);
    const rows = JSON.parse(json.stdout) as { strategy: string; mappings: number; sharedBytes: number }[];
    assert.equal(rows.length, 6);
    for (const row of rows.filter((x) => x.strategy === 'aligned')) assert.equal(row.mappings, row.sharedBytes / 2 ** 21);
  });

  it('rejects a bad size with a message and a non-zero status', () => {
    const r = guestmem('demo', '--ram', 'lots');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /not a size: "lots"/);
    const odd = guestmem('demo', '--ram', '3M');
    assert.equal(odd.status, 1);
    assert.match(odd.stderr, /^guestmem: ramSize 0x300000 must be a non-zero multiple of 2 MiB/);
  });

  it('probes the host, as a table with plain words and as JSON', () => {
    const r = guestmem('probe');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /private memory: (attributes|memslots|simulated) - /);
    assert.match(r.stdout, /backing stores:\n {2}(yes|no ) guest_memfd/);
    const json = guestmem('probe', '--json');
    const parsed = JSON.parse(json.stdout) as { probe: { hostPageSize: number }; abilities: { privateMemory: { mechanism: string } } };
    assert.equal(parsed.probe.hostPageSize, 4096);
    assert.ok(['attributes', 'memslots', 'simulated'].includes(parsed.abilities.privateMemory.mechanism));
  });

  it("lists its trace points in QEMU's trace-events syntax", () => {
    const r = guestmem('trace-events');
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^ram_block_attributes_state_change\(uint64_t offset, uint64_t size, const char \*from, const char \*to\) "offset 0x%"PRIx64/m);
  });
});
