/**
 * An exit handler module for the exit benchmark, loaded into the vCPU's
 * thread: it answers `count` MMIO writes there, then hands the next exit to
 * the main thread (and starts counting again).
 */
import type { ExitResponse, VcpuExit } from '../../src/kvm/exits.js';

export function createExitHandler(options: unknown): (exit: VcpuExit) => ExitResponse | undefined {
  const count = (options as { count: number }).count;
  let left = count;
  return (exit) => {
    if (exit.kind !== 'mmio' || !exit.isWrite) return undefined;
    if (--left > 0) return {};
    left = count;
    return undefined;
  };
}
