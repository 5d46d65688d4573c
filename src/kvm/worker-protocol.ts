/**
 * Messages between a Vcpu (main thread) and its worker thread, and errors
 * that keep their class and fields across the thread boundary.
 */
import * as errors from '../core/errors.js';
import type { Regs, Sregs } from '../sys/kvm.js';
import type { CpuSetup } from './cpu-setup.js';
import type { ExitResponse, VcpuExit } from './exits.js';

/** What the worker needs to run a vCPU. */
export interface WorkerInit {
  readonly id: number;
  /** The vCPU descriptor (owned by the main thread's KvmVcpu). */
  readonly fd: number;
  /** Address and length of the vCPU's kvm_run mapping. */
  readonly runAddress: bigint;
  readonly runSize: number;
  /** struct kvm_cpuid2 for KVM_SET_CPUID2. */
  readonly cpuid: Uint8Array;
  /** URL of a module whose createExitHandler(options) handles exits inside the worker. */
  readonly handler?: string;
  readonly handlerOptions?: unknown;
}

/** A module that handles some exits inside the vCPU's thread (fast paths such as MMIO devices). */
export interface ExitHandlerModule {
  /**
   * Returns a handler: a response for an exit it handles (the vCPU then runs
   * on without leaving its thread), or undefined to pass the exit to the
   * Vcpu's owner.
   */
  createExitHandler(options: unknown): (exit: VcpuExit) => ExitResponse | undefined;
}

export type WorkerRequest =
  | { readonly type: 'setup'; readonly setup: CpuSetup }
  | { readonly type: 'run'; readonly response?: ExitResponse }
  | { readonly type: 'getRegs' }
  | { readonly type: 'setRegs'; readonly regs: Regs }
  | { readonly type: 'getSregs' }
  | { readonly type: 'setSregs'; readonly sregs: Sregs };

export type WorkerReply =
  | { readonly type: 'ready'; readonly pthread: bigint; readonly tid: number }
  | { readonly type: 'ok'; readonly value?: unknown; readonly handled?: number }
  | { readonly type: 'exit'; readonly exit: VcpuExit; readonly handled: number }
  | { readonly type: 'error'; readonly error: SerializedError };

/** An error as it crosses threads. */
export interface SerializedError {
  readonly className: string;
  readonly message: string;
  readonly stack: string | undefined;
  readonly props: Record<string, unknown>;
}

export function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) {
    const props: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(error)) props[k] = v;
    return { className: error.constructor.name, message: error.message, stack: error.stack, props };
  }
  return { className: 'Error', message: String(error), stack: undefined, props: {} };
}

/** Rebuilds an error: a guestmem error gets its class back (instanceof works), anything else is an Error. */
export function reviveError(serialized: SerializedError): Error {
  const ctor = (errors as Record<string, unknown>)[serialized.className];
  const proto: unknown = typeof ctor === 'function' ? (ctor as { prototype: unknown }).prototype : undefined;
  const base = proto instanceof Error ? proto : Error.prototype;
  const error = Object.create(base) as Error;
  Object.defineProperty(error, 'message', { value: serialized.message, writable: true, configurable: true });
  if (serialized.stack !== undefined) Object.defineProperty(error, 'stack', { value: serialized.stack, writable: true, configurable: true });
  Object.assign(error, serialized.props);
  return error;
}
