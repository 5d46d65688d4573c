/**
 * Where a running guest's requests enter the conversion path: an exit
 * handler for the VmRunner that takes MAP_GPA_RANGE hypercall exits, the
 * doorbell device's MMIO exits and KVM_EXIT_MEMORY_FAULT exits, decodes
 * them, hands them to the orchestrator and answers the guest. Every other
 * exit goes to the caller's handler.
 *
 *   hypercall MAP_GPA_RANGE ─┐
 *   doorbell COMMAND write  ─┼─> decode ─> orchestrator.convert ─> ret / STATUS
 *   memory fault            ─┘                                  ─> run again (or stop the vCPU)
 *
 * A refused or failed explicit request is answered with its status and the
 * guest runs on. A memory fault has no way to carry a status: when its
 * conversion fails the vCPU would fault again for ever, so that vCPU stops
 * (the reason names the failure).
 */
import { ConversionError } from '../core/errors.js';
import { hex } from '../core/units.js';
import { traceKvmHcMapGpaRange, traceKvmMemoryFault } from '../core/trace-events.js';
import type { HypercallExit, MemoryFaultExit, MmioExit, VcpuExit } from '../kvm/exits.js';
import type { Vcpu } from '../kvm/vcpu.js';
import type { ExitDecision } from '../kvm/vm-runner.js';
import type { ConversionDoorbell } from './doorbell.js';
import type { ConversionOrchestrator, ConversionResult } from './orchestrator.js';
import { KVM_EFAULT, KVM_ENOSYS, decodeMapGpaRange, decodeMemoryFault, type ConversionRequest, type MapGpaRangeArgs } from './request.js';

const KVM_HC_MAP_GPA_RANGE = 12n;

/** One guest request and how it ended. */
export type GuestRequestRecord =
  | { readonly vcpu: number; readonly source: ConversionRequest['source']; readonly result: ConversionResult; readonly status: 0 }
  | { readonly vcpu: number; readonly source: ConversionRequest['source']; readonly error: Error; readonly status: number };

/** What the handler needs of a vCPU: its id. */
export type VcpuRef = Pick<Vcpu, 'id'>;

/** Handles an exit that is not a conversion request. */
export type FallbackHandler = (vcpu: VcpuRef, exit: VcpuExit) => ExitDecision | Promise<ExitDecision>;

/** Options for {@link GuestRequests}. */
export interface GuestRequestsOptions {
  /** The doorbell device, if the guest uses one. */
  readonly doorbell?: ConversionDoorbell;
  /** Handles every exit that is not a conversion request. Default: stop the vCPU, naming the exit. */
  readonly fallback?: FallbackHandler;
  /** Called for every request, in the order they end. */
  readonly onRequest?: (record: GuestRequestRecord) => void;
}

/** The exit handler that feeds guest requests to an orchestrator. */
export class GuestRequests {
  /** Where the requests go. */
  readonly orchestrator: ConversionOrchestrator;
  /** The doorbell device, if any. */
  readonly doorbell: ConversionDoorbell | undefined;
  private readonly fallback: FallbackHandler;
  private readonly onRequest: ((record: GuestRequestRecord) => void) | undefined;

  constructor(orchestrator: ConversionOrchestrator, options: GuestRequestsOptions = {}) {
    this.orchestrator = orchestrator;
    this.doorbell = options.doorbell;
    this.fallback = options.fallback ?? ((_vcpu, exit) => ({ stop: `unhandled ${exit.kind} exit` }));
    this.onRequest = options.onRequest;
  }

  /** The ExitHandler to give a VmRunner. */
  readonly handle = async (vcpu: VcpuRef, exit: VcpuExit): Promise<ExitDecision> => {
    if (exit.kind === 'mmio' && this.doorbell?.claims(exit)) return this.onDoorbell(vcpu, exit, this.doorbell);
    if (exit.kind === 'hypercall') return this.onHypercall(vcpu, exit);
    if (exit.kind === 'memory_fault') return this.onMemoryFault(vcpu, exit);
    return this.fallback(vcpu, exit);
  };

  private async onDoorbell(vcpu: VcpuRef, exit: MmioExit, doorbell: ConversionDoorbell): Promise<ExitDecision> {
    const action = doorbell.access(vcpu.id, exit);
    if (action.kind === 'answer') return action.data === undefined ? {} : { response: { data: action.data } };
    const status = await this.explicit(vcpu, action.args, 'doorbell', 0n);
    doorbell.complete(vcpu.id, status);
    return {};
  }

  private async onHypercall(vcpu: VcpuRef, exit: HypercallExit): Promise<ExitDecision> {
    if (exit.nr !== KVM_HC_MAP_GPA_RANGE || !exit.mapGpaRange) return { response: { ret: -KVM_ENOSYS } };
    const status = await this.explicit(vcpu, exit.mapGpaRange, 'hypercall', exit.longMode ? 1n : 0n);
    return { response: { ret: status } };
  }

  /** Decodes, converts, and returns the guest's status (0 or a negative KVM error). */
  private async explicit(vcpu: VcpuRef, args: MapGpaRangeArgs, source: 'doorbell' | 'hypercall', flags: bigint): Promise<number> {
    traceKvmHcMapGpaRange.emit(args.gpa, BigInt.asUintN(64, args.npages * 4096n), args.attributes, flags);
    const { status } = await this.submit(vcpu, source, args.gpa, args.npages * 4096n, () => decodeMapGpaRange(args, source, vcpu.id));
    return status;
  }

  private async onMemoryFault(vcpu: VcpuRef, exit: MemoryFaultExit): Promise<ExitDecision> {
    traceKvmMemoryFault.emit(exit.gpa, exit.size, exit.flags);
    const { status, error } = await this.submit(vcpu, 'memory-fault', exit.gpa, exit.size, () => decodeMemoryFault(exit, vcpu.id));
    if (status === 0) return {};
    return { stop: `memory fault at ${hex(exit.gpa)} size ${hex(exit.size)} flags ${hex(exit.flags)} could not be converted: ${error?.message ?? 'unknown error'}` };
  }

  /**
   * Decodes a request (a refusal is counted and traced like any), converts
   * it, tells onRequest, and returns the guest's status and the error.
   */
  private async submit(vcpu: VcpuRef, source: ConversionRequest['source'], gpa: bigint, size: bigint, decode: () => ConversionRequest): Promise<{ status: number; error?: Error }> {
    let request: ConversionRequest;
    try {
      request = decode();
    } catch (error) {
      if (error instanceof ConversionError) this.orchestrator.refused(BigInt.asUintN(64, gpa), BigInt.asUintN(64, size), error);
      return this.failed(vcpu, source, error);
    }
    try {
      const result = await this.orchestrator.convert(request);
      this.onRequest?.({ vcpu: vcpu.id, source, result, status: 0 });
      return { status: 0 };
    } catch (error) {
      return this.failed(vcpu, source, error);
    }
  }

  private failed(vcpu: VcpuRef, source: ConversionRequest['source'], error: unknown): { status: number; error: Error } {
    const status = error instanceof ConversionError ? error.guestStatus : -KVM_EFAULT;
    const e = error instanceof Error ? error : new Error(String(error));
    this.onRequest?.({ vcpu: vcpu.id, source, error: e, status });
    return { status, error: e };
  }
}
