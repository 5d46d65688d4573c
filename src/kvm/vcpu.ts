/**
 * A vCPU, run from its own worker thread (KVM_RUN is synchronous and blocks
 * its thread). The main thread's Vcpu sends requests and receives exits:
 *
 *   let exit = await vcpu.run();
 *   while (...) exit = await vcpu.run(answerTo(exit));
 *
 * Exits an in-thread handler module answers (see ExitHandlerModule) never
 * leave the worker. kick() makes KVM_RUN return soon: it sets
 * kvm_run.immediate_exit and signals the worker thread (SIGUSR2, for which
 * guestmem installs an empty handler), and the run ends with an
 * `interrupted` exit.
 */
import { Worker } from 'node:worker_threads';
import { ResourceClosedError } from '../core/errors.js';
import type { KvmVcpu, Regs, Sregs } from '../sys/kvm.js';
import { KVM_RUN_OFFSETS } from '../sys/kvm-uapi.js';
import { SIGUSR2, pthreadKill } from '../sys/libc.js';
import type { CpuSetup } from './cpu-setup.js';
import type { ExitResponse, VcpuExit } from './exits.js';
import { reviveError, type WorkerInit, type WorkerReply, type WorkerRequest } from './worker-protocol.js';

let kickHandlerInstalled = false;

/** Options of {@link Vcpu.start}. */
export interface VcpuOptions {
  /** URL of an ExitHandlerModule to load in the vCPU's thread. */
  readonly handler?: URL;
  /** Passed to the module's createExitHandler. */
  readonly handlerOptions?: unknown;
}

/** A running vCPU thread. */
export class Vcpu {
  /** The vCPU's KVM objects (fd and kvm_run mapping), owned here. */
  readonly kvmVcpu: KvmVcpu;
  private readonly worker: Worker;
  private readonly pthread: bigint;
  /** Kernel thread id of the vCPU's thread. */
  readonly tid: number;
  private pending: { resolve: (reply: WorkerReply) => void; reject: (error: Error) => void } | undefined;
  private closed = false;
  /** Exits answered inside the vCPU's thread since it started. */
  handledInThread = 0;

  private constructor(kvmVcpu: KvmVcpu, worker: Worker, ready: Extract<WorkerReply, { type: 'ready' }>) {
    this.kvmVcpu = kvmVcpu;
    this.worker = worker;
    this.pthread = ready.pthread;
    this.tid = ready.tid;
    worker.on('message', (reply: WorkerReply) => {
      const p = this.pending;
      this.pending = undefined;
      p?.resolve(reply);
    });
    worker.on('error', (error) => {
      const p = this.pending;
      this.pending = undefined;
      p?.reject(error);
    });
  }

  /**
   * Starts the thread of `kvmVcpu` (which this Vcpu then owns and closes).
   * `cpuid` is the struct kvm_cpuid2 to give it.
   */
  static async start(kvmVcpu: KvmVcpu, cpuid: Uint8Array, options: VcpuOptions = {}): Promise<Vcpu> {
    if (!kickHandlerInstalled) {
      // The signal only needs to interrupt KVM_RUN in the vCPU's thread.
      process.on('SIGUSR2', () => undefined);
      kickHandlerInstalled = true;
    }
    const init: WorkerInit = {
      id: kvmVcpu.id,
      fd: kvmVcpu.fd.fd,
      runAddress: kvmVcpu.run.start,
      runSize: kvmVcpu.run.length,
      cpuid,
      ...(options.handler ? { handler: options.handler.href, handlerOptions: options.handlerOptions } : {}),
    };
    const worker = new Worker(new URL('./vcpu-worker.js', import.meta.url), { workerData: init });
    const ready = await new Promise<WorkerReply>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    if (ready.type !== 'ready') throw new Error(`vCPU ${kvmVcpu.id}: the worker did not start (${ready.type})`);
    return new Vcpu(kvmVcpu, worker, ready);
  }

  /** The vCPU id. */
  get id(): number {
    return this.kvmVcpu.id;
  }

  /** Sets CPUID, special and general registers for `setup`. */
  async setup(setup: CpuSetup): Promise<void> {
    await this.request({ type: 'setup', setup });
  }

  /**
   * Runs the vCPU (answering the previous exit with `response`) until an exit
   * its thread does not handle, and returns that exit.
   */
  async run(response?: ExitResponse): Promise<VcpuExit> {
    const reply = await this.request(response === undefined ? { type: 'run' } : { type: 'run', response });
    if (reply.type !== 'exit') throw new Error(`vCPU ${this.id}: unexpected reply ${reply.type} to run`);
    this.handledInThread += reply.handled;
    return reply.exit;
  }

  /** Makes the current (or next) KVM_RUN return with an `interrupted` exit. */
  kick(): void {
    if (this.closed) throw new ResourceClosedError(`vCPU ${this.id}`);
    this.kvmVcpu.run.dataView.setUint8(KVM_RUN_OFFSETS.immediate_exit, 1);
    pthreadKill(this.pthread, SIGUSR2);
  }

  /** KVM_GET_REGS, from the vCPU's thread. */
  async getRegs(): Promise<Regs> {
    return (await this.value({ type: 'getRegs' })) as Regs;
  }

  /** KVM_SET_REGS, from the vCPU's thread. */
  async setRegs(regs: Regs): Promise<void> {
    await this.request({ type: 'setRegs', regs });
  }

  /** KVM_GET_SREGS, from the vCPU's thread. */
  async getSregs(): Promise<Sregs> {
    return (await this.value({ type: 'getSregs' })) as Sregs;
  }

  /** KVM_SET_SREGS, from the vCPU's thread. */
  async setSregs(sregs: Sregs): Promise<void> {
    await this.request({ type: 'setSregs', sregs });
  }

  /** Stops the thread and closes the vCPU. A run in progress is kicked first. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.pending) {
      this.kick();
      await new Promise<void>((resolve) => {
        const check = (): void => {
          if (this.pending) setTimeout(check, 1);
          else resolve();
        };
        check();
      });
    }
    this.closed = true;
    await this.worker.terminate();
    this.kvmVcpu.close();
  }

  private async value(request: WorkerRequest): Promise<unknown> {
    const reply = await this.request(request);
    return reply.type === 'ok' ? reply.value : undefined;
  }

  private async request(request: WorkerRequest): Promise<WorkerReply> {
    if (this.closed) throw new ResourceClosedError(`vCPU ${this.id}`);
    if (this.pending) throw new Error(`vCPU ${this.id}: a request is already in progress (one at a time)`);
    const reply = await new Promise<WorkerReply>((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(request);
    });
    if (reply.type === 'error') throw reviveError(reply.error);
    return reply;
  }
}
