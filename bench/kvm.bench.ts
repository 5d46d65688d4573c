/**
 * The backing stores and the vCPU run loop against the same system calls made
 * from C (bench/c/store.c, bench/c/kvm-mmio.c).
 */
import { fileURLToPath } from 'node:url';
import { GuestMemfdStore } from '../src/backing/guest-memfd-store.js';
import { MemfdStore } from '../src/backing/memfd-store.js';
import type { BackingStore } from '../src/backing/backing-store.js';
import { bootMmioLoopGuest } from '../src/guest/boot.js';
import { Vm } from '../src/kvm/vm.js';
import { raw } from '../src/sys/ffi.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, MFD_CLOEXEC, ftruncate, memfdCreate } from '../src/sys/libc.js';
import { OwnedFd } from '../src/sys/owned-fd.js';
import { buildC, runC } from './lib/native.js';
import { median, result, round, type BenchResult } from './lib/result.js';

const MiB = 2 ** 20;

/** ns per allocate + discard of `bytes` at offset 0, over one round. */
function timeStore(store: BackingStore, bytes: number, iterations: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    store.allocate(0, bytes);
    store.discard(0, bytes);
  }
  return Number(process.hrtime.bigint() - t0) / iterations;
}

/**
 * `rounds` rounds of each side, interleaved (C, ours, C, ours...): the
 * medians of each, and the median of the per-round ratios (ours over the C
 * round just before it), which drift of the machine's speed disturbs least.
 * One untimed round of ours first warms the JIT up.
 */
function interleaved(rounds: number, ours: () => number, c: () => number): { ours: number; c: number; ratio: number } {
  ours();
  const a: number[] = [];
  const b: number[] = [];
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const cr = c();
    const or = ours();
    b.push(cr);
    a.push(or);
    ratios.push(or / cr);
  }
  return { ours: median(a), c: median(b), ratio: round(median(ratios), 4) };
}

function storeResults(log: (line: string) => void): BenchResult[] {
  const binary = buildC('store');
  const out: BenchResult[] = [];
  const vm = Vm.create();
  try {
    const cases: [id: string, kind: 'guest_memfd' | 'memfd', bytes: number, iterations: number, goal: number][] = [
      ['store.guest-memfd.4k', 'guest_memfd', 4096, 20_000, 1.15],
      ['store.guest-memfd.2m', 'guest_memfd', 2 * MiB, 500, 1.05],
      ['store.memfd.4k', 'memfd', 4096, 20_000, 1.15],
      ['store.memfd.2m', 'memfd', 2 * MiB, 500, 1.05],
    ];
    for (const [id, kind, bytes, iterations, goal] of cases) {
      log(`kvm: ${id}`);
      const store = kind === 'guest_memfd'
        ? GuestMemfdStore.create(vm.fd, { name: 'bench', size: 64 * MiB })
        : MemfdStore.create({ name: 'bench', size: 64 * MiB });
      try {
        const m = interleaved(15, () => timeStore(store, bytes, iterations),
          () => Number(runC(binary, [kind, String(bytes), String(iterations), '1'])['nsPerPair']));
        out.push(result({
          id, metric: `${kind} allocate + discard of ${bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / 1024} KiB`} (fallocate KEEP_SIZE, then PUNCH_HOLE)`,
          value: round(m.ours, 1), unit: 'ns/op', baseline: { name: 'C, same system calls', value: round(m.c, 1) },
          target: { on: 'ratio', max: goal }, pairedRatio: m.ratio,
          note: 'ours includes range validation and the ledger update; ratio: median of per-round ratios of 15 interleaved rounds',
        }));
      } finally {
        store.close();
      }
    }
    // Where a 4 KiB gap comes from: the same two calls through koffi, without the store.
    log('kvm: store.ffi-only.4k');
    using fd = new OwnedFd(memfdCreate('bench-ffi', MFD_CLOEXEC), 'memfd bench-ffi');
    ftruncate(fd.fd, 64 * MiB);
    const n = fd.fd;
    const m = interleaved(15, () => {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < 20_000; i++) {
        raw.fallocate(n, FALLOC_FL_KEEP_SIZE, 0, 4096);
        raw.fallocate(n, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096);
      }
      return Number(process.hrtime.bigint() - t0) / 20_000;
    }, () => Number(runC(binary, ['memfd', '4096', '20000', '1'])['nsPerPair']));
    out.push(result({
      id: 'store.ffi-only.4k', metric: 'the two fallocate calls of a memfd 4 KiB allocate + discard, through koffi alone (no store)',
      value: round(m.ours, 1), unit: 'ns/op', baseline: { name: 'C, same system calls', value: round(m.c, 1) }, pairedRatio: m.ratio,
      note: 'the part of store.memfd.4k that the FFI costs',
    }));
  } finally {
    void vm.close();
  }
  return out;
}

async function exitResults(log: (line: string) => void): Promise<BenchResult[]> {
  log('kvm: exit round trip');
  const program = fileURLToPath(new URL('../src/guest/mmio-loop.bin', import.meta.url));
  const binary = buildC('kvm-mmio');
  const count = 20_000;
  const vm = Vm.create();
  const vm2 = Vm.create();
  try {
    const guest = await bootMmioLoopGuest(vm, { vcpu: { handler: new URL('./lib/mmio-counter.js', import.meta.url), handlerOptions: { count } } });
    const guest2 = await bootMmioLoopGuest(vm2);
    try {
      // Rounds of 20,000 exits answered in the vCPU's thread, interleaved with the C loop.
      const inThread: number[] = [];
      const c: number[] = [];
      const mainThread: number[] = [];
      const ratios: number[] = [];
      const mainRatios: number[] = [];
      await guest.vcpu.run(); // warm-up
      for (let r = 0; r < 11; r++) {
        const cr = Number(runC(binary, [program, String(count), '1'])['nsPerExit']);
        c.push(cr);
        const t0 = process.hrtime.bigint();
        const exit = await guest.vcpu.run();
        const ns = Number(process.hrtime.bigint() - t0) / count;
        inThread.push(ns);
        ratios.push(ns / cr);
        if (exit.kind !== 'mmio') throw new Error(`unexpected exit ${exit.kind}`);
        // The same exits handed to the main thread one by one.
        const t1 = process.hrtime.bigint();
        for (let i = 0; i < 1000; i++) await guest2.vcpu.run();
        const mns = Number(process.hrtime.bigint() - t1) / 1000;
        mainThread.push(mns);
        mainRatios.push(mns / cr);
      }
      const baseline = { name: 'C, KVM_RUN loop', value: round(median(c), 1) };
      return [
        result({
          id: 'kvm.mmio-exit.in-thread', metric: 'KVM_RUN MMIO exit round trip, exit answered in the vCPU thread',
          value: round(median(inThread), 1), unit: 'ns/exit', baseline, target: { on: 'ratio', max: 1.05 },
          note: 'guest: mmio-loop.S at CPL3; 20,000 exits per round, answered by an exit handler module in the worker',
        }),
        result({
          id: 'kvm.mmio-exit.main-thread', metric: 'KVM_RUN MMIO exit round trip, exit answered on the main thread',
          value: round(median(mainThread), 1), unit: 'ns/exit', baseline, pairedRatio: round(median(mainRatios), 4),
          note: 'each exit crosses to the main thread and back (postMessage): the path for exits that need shared state',
        }),
      ];
    } finally {
      await guest.close();
      await guest2.close();
    }
  } finally {
    await vm.close();
    await vm2.close();
  }
}

export async function runKvmBench(options: { readonly only?: RegExp; readonly log: (line: string) => void }): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  if (!options.only || options.only.test('store.')) results.push(...storeResults(options.log));
  if (!options.only || options.only.test('kvm.mmio-exit')) results.push(...await exitResults(options.log));
  return results;
}
