#!/usr/bin/env node
/**
 * The `guestmem` command. Wiring only: every command calls the library and a
 * report formatter.
 */
import { readFileSync } from 'node:fs';
import { Command, Option, InvalidArgumentError as CommanderArgumentError } from 'commander';
import { GuestmemError } from '../core/errors.js';
import { trace } from '../core/trace.js';
import '../core/trace-events.js';
import { parseByteSize } from '../core/units.js';
import { formatDmaScenario } from '../report/dma-table.js';
import { formatProbe } from '../report/probe-report.js';
import { formatTrackerDemo } from '../report/tracker-demo-table.js';
import { hostAbilities, probeHost } from '../sys/probe.js';
import { cvmBootScenario } from '../workload/cvm-boot.js';
import { DMA_STRATEGIES } from '../iommu/dma-mapping-listener.js';
import { describeBoot, dmaBootRequests, runDmaScenario, type DmaScenarioResult } from '../workload/dma-scenario.js';
import { runTrackerDemo } from '../workload/tracker-demo.js';

function version(): string {
  const pkg: unknown = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
  return typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string' ? pkg.version : '0.0.0';
}

function size(text: string): number {
  try {
    return parseByteSize(text);
  } catch (error) {
    throw new CommanderArgumentError(error instanceof Error ? error.message : String(error));
  }
}

function integer(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new CommanderArgumentError(`not a non-negative integer: ${text}`);
  return n;
}

const program = new Command('guestmem')
  .description('Host side of confidential-VM memory conversion: page-state tracking, listeners, backing, KVM')
  .version(version())
  .showHelpAfterError();

program
  .command('demo')
  .description('simulate a confidential VM booting and converting memory, and show what the tracker did')
  .addOption(new Option('--ram <size>', 'guest RAM, e.g. 64G or 1T').argParser(size).default(64 * 2 ** 30, '64G'))
  .option('--seed <n>', 'seed of the request stream', integer, 1)
  .option('--churn <n>', 'runtime dma_alloc/free operations', integer, 20_000)
  .option('--json', 'print the report as JSON')
  .action((opts: { ram: number; seed: number; churn: number; json?: boolean }) => {
    const phases = cvmBootScenario({ ramSize: opts.ram, seed: opts.seed, churn: opts.churn });
    const report = runTrackerDemo(opts.ram, phases);
    console.log(opts.json ? JSON.stringify(report, null, 2) : formatTrackerDemo(report, process.stdout.isTTY));
  });

program
  .command('dma')
  .description('simulate a confidential VM with an assigned device: DMA mappings per strategy, on VFIO type1 and iommufd')
  .addOption(new Option('--ram <size>', 'guest RAM, e.g. 16G').argParser(size).default(16 * 2 ** 30, '16G'))
  .option('--pool <percent>', 'SWIOTLB pool, percent of RAM', integer, 6)
  .option('--runtime <n>', 'runtime dma_alloc/free conversions', integer, 10_000)
  .addOption(new Option('--granularity <g>', 'what the guest converts at runtime').choices(['4k', '2m']).default('4k'))
  .option('--limit <n>', "type1's dma_entry_limit", integer, 65535)
  .option('--seed <n>', 'seed of the request stream', integer, 1)
  .option('--json', 'print the results as JSON')
  .action(async (opts: { ram: number; pool: number; runtime: number; granularity: '4k' | '2m'; limit: number; seed: number; json?: boolean }) => {
    const boot = { ramSize: opts.ram, swiotlbFraction: opts.pool / 100, runtime: opts.runtime, dmaGranule: opts.granularity === '4k' ? 4096 : 2 ** 21, seed: opts.seed };
    const requests = dmaBootRequests(boot);
    const results: DmaScenarioResult[] = [];
    for (const model of ['vfio-type1', 'iommufd'] as const) {
      for (const strategy of DMA_STRATEGIES) {
        results.push(await runDmaScenario({ ramSize: opts.ram, requests, granularity: opts.granularity, model, strategy, dmaEntryLimit: opts.limit }));
      }
    }
    console.log(opts.json ? JSON.stringify(results, null, 2) : formatDmaScenario(`${describeBoot(boot)}: ${String(requests.length)} conversions`, results, process.stdout.isTTY));
  });

program
  .command('probe')
  .description('probe this host: KVM capabilities, huge pages, THP; and what guestmem can do here')
  .option('--json', 'print the probe as JSON')
  .action((opts: { json?: boolean }) => {
    const probe = probeHost();
    const abilities = hostAbilities(probe);
    console.log(opts.json
      ? JSON.stringify({ probe, abilities }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)
      : formatProbe(probe, abilities, process.stdout.isTTY));
  });

program
  .command('trace-events')
  .description("print every trace point guestmem emits, in QEMU's trace-events syntax")
  .action(() => {
    process.stdout.write(trace.toTraceEvents());
  });

try {
  await program.parseAsync();
} catch (error) {
  if (error instanceof GuestmemError) {
    console.error(`guestmem: ${error.message}`);
    process.exitCode = 1;
  } else {
    throw error;
  }
}
