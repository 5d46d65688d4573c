import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../core/errors.js';
import { GiB, KiB, MiB } from '../core/units.js';
import { cvmBootScenario } from './cvm-boot.js';
import { runTrackerDemo } from './tracker-demo.js';

describe('cvmBootScenario', () => {
  it('shares a 2 MiB-aligned pool of 6% of RAM (capped at 1 GiB), then scattered pages, then churns', () => {
    const phases = cvmBootScenario({ ramSize: 8 * GiB, seed: 3, churn: 1000 });
    assert.deepEqual(phases.map((p) => p.name), ['swiotlb', 'boot dma', 'runtime', 'kexec']);
    const [pool, dma, runtime, kexec] = phases.map((p) => p.requests);
    assert.ok(pool && dma && runtime && kexec);
    const poolBytes = pool.reduce((n, r) => n + r.size, 0);
    assert.equal(poolBytes, Math.floor((8 * GiB * 0.06) / (2 * MiB)) * 2 * MiB);
    for (const r of pool) assert.ok(r.offset % (2 * MiB) === 0 && r.size === 2 * MiB && r.to === 'shared');
    assert.equal(dma.length, 10_000);
    assert.equal(runtime.length, 1000);
    for (const r of [...dma, ...runtime]) assert.ok(r.size === 4 * KiB && r.offset % (4 * KiB) === 0 && r.offset + r.size <= 8 * GiB);
    assert.equal(kexec.length, 8);
    assert.ok(kexec.every((r) => r.to === 'private'));
    assert.equal(cvmBootScenario({ ramSize: 64 * GiB }).at(0)?.requests.length, 512, 'capped at 1 GiB');
  });

  it('is reproducible from its seed', () => {
    assert.deepEqual(cvmBootScenario({ ramSize: GiB, seed: 9, churn: 50 }), cvmBootScenario({ ramSize: GiB, seed: 9, churn: 50 }));
    assert.notDeepEqual(cvmBootScenario({ ramSize: GiB, seed: 9, churn: 50 }), cvmBootScenario({ ramSize: GiB, seed: 10, churn: 50 }));
  });

  it('rejects impossible parameters', () => {
    assert.throws(() => cvmBootScenario({ ramSize: 3 * MiB }), InvalidArgumentError);
    assert.throws(() => cvmBootScenario({ ramSize: GiB, swiotlbFraction: 1.5 }), InvalidArgumentError);
  });
});

describe('runTrackerDemo', () => {
  it('accounts for every phase and ends with everything private after kexec', () => {
    const report = runTrackerDemo(4 * GiB, cvmBootScenario({ ramSize: 4 * GiB, churn: 2000, seed: 5 }), 2);
    assert.equal(report.phases.length, 4);
    const [pool, , , kexec] = report.phases;
    assert.ok(pool && kexec);
    assert.equal(pool.pagesChanged * 4096, pool.sharedBytes);
    assert.equal(kexec.sharedBytes, 0);
    // kexec converts mixed 1 GiB ranges: far fewer notifications than QEMU's per-page walk.
    assert.ok(kexec.notifications * 5 < kexec.qemuNotifications, `${kexec.notifications} vs ${kexec.qemuNotifications}`);
    assert.equal(report.traceSample.length, 8);
    assert.match(report.traceSample[0] ?? '', /^ram_block_attributes_state_change offset 0x[0-9a-f]+ size 0x200000 from 'discarded' to 'populated'$/);
  });
});
