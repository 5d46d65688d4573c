/**
 * Runs a VM's vCPUs: one loop per vCPU on the main thread, each awaiting
 * its vCPU's KVM_RUN (in the vCPU's worker thread), handing every exit to
 * one handler and running again with the handler's answer. Loops run
 * concurrently: while one vCPU's exit is being handled (a conversion, say),
 * the others keep running.
 *
 * pause() holds every vCPU out of KVM_RUN (the ones inside are kicked and
 * park at their next exit; a vCPU whose exit is being handled is already
 * out) until resume(): what a memslot re-layout needs. Pauses nest.
 *
 *   loop:  [parked while paused] -> KVM_RUN -> exit -> handler -> answer -> ...
 */
import { InvalidArgumentError } from '../core/errors.js';
import type { ExitResponse, VcpuExit } from './exits.js';
import type { Vcpu } from './vcpu.js';

/** What to do after an exit: run on (with an answer for the exit), or stop this vCPU. */
export type ExitDecision = { readonly response?: ExitResponse; readonly stop?: undefined } | { readonly stop: string };

/** Handles one exit of one vCPU. It may await (other vCPUs run meanwhile). */
export type ExitHandler = (vcpu: Vcpu, exit: VcpuExit) => ExitDecision | Promise<ExitDecision>;

/** How a vCPU's loop ended. */
export interface VcpuOutcome {
  /** The vCPU id. */
  readonly vcpu: number;
  /** The handler's reason, `stopped: <reason>` after stop(), or the error that ended the loop. */
  readonly reason: string;
  /** The last exit seen. */
  readonly exit: VcpuExit | undefined;
  /** Exits handled (kicks not counted). */
  readonly exits: number;
  /** What ended the loop, when it was an error. */
  readonly error?: Error;
}

type LoopState = 'parked' | 'in-run' | 'handling' | 'done';

/** The vCPU loops of a VM. */
export class VmRunner {
  /** The vCPUs it runs. */
  readonly vcpus: readonly Vcpu[];
  private readonly handler: ExitHandler;
  private readonly states = new Map<Vcpu, LoopState>();
  private depth = 0;
  private stopReason: string | undefined;
  private outWaiters: (() => void)[] = [];
  private resumeWaiters: (() => void)[] = [];
  private loops: Promise<VcpuOutcome[]> | undefined;
  /** Times pause() had to kick a vCPU out of KVM_RUN. */
  kicks = 0;
  /** pause() calls. */
  pauses = 0;

  constructor(vcpus: readonly Vcpu[], handler: ExitHandler) {
    if (vcpus.length === 0) throw new InvalidArgumentError('a VM runner needs at least one vCPU');
    if (new Set(vcpus).size !== vcpus.length) throw new InvalidArgumentError('a vCPU is listed twice');
    this.vcpus = vcpus;
    this.handler = handler;
  }

  /** Starts every loop; resolves when all have ended (each stopped by its handler, or by stop()). */
  run(): Promise<VcpuOutcome[]> {
    this.loops ??= Promise.all(this.vcpus.map((vcpu) => this.loop(vcpu)));
    return this.loops;
  }

  /** Ends every loop at its next exit (vCPUs in KVM_RUN are kicked). */
  stop(reason: string): void {
    this.stopReason ??= reason;
    for (const [vcpu, state] of this.states) if (state === 'in-run') this.kick(vcpu);
    this.wakeParked();
  }

  /** True once stop() was called. */
  get stopping(): boolean {
    return this.stopReason !== undefined;
  }

  /** Resolves once no vCPU is in KVM_RUN; they stay out until the matching resume(). */
  async pause(): Promise<void> {
    this.depth++;
    this.pauses++;
    for (const [vcpu, state] of this.states) {
      if (state === 'in-run') {
        this.kicks++;
        this.kick(vcpu);
      }
    }
    while ([...this.states.values()].includes('in-run')) {
      await new Promise<void>((resolve) => this.outWaiters.push(resolve));
    }
  }

  /** Ends one pause(); the last lets the vCPUs run again. */
  resume(): void {
    if (this.depth === 0) throw new InvalidArgumentError('resume() without pause()');
    this.depth--;
    if (this.depth === 0) this.wakeParked();
  }

  private async loop(vcpu: Vcpu): Promise<VcpuOutcome> {
    let response: ExitResponse | undefined;
    let exit: VcpuExit | undefined;
    let exits = 0;
    try {
      for (;;) {
        while (this.depth > 0 && this.stopReason === undefined) {
          this.setState(vcpu, 'parked');
          await new Promise<void>((resolve) => this.resumeWaiters.push(resolve));
        }
        if (this.stopReason !== undefined) return this.end(vcpu, `stopped: ${this.stopReason}`, exit, exits);
        this.setState(vcpu, 'in-run');
        try {
          exit = await vcpu.run(response);
        } finally {
          this.setState(vcpu, 'handling');
        }
        response = undefined;
        if (exit.kind === 'interrupted') continue;
        exits++;
        const decision = await this.handler(vcpu, exit);
        if (decision.stop !== undefined) return this.end(vcpu, decision.stop, exit, exits);
        response = decision.response;
      }
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error));
      return { ...this.end(vcpu, `error: ${e.message}`, exit, exits), error: e };
    }
  }

  private end(vcpu: Vcpu, reason: string, exit: VcpuExit | undefined, exits: number): VcpuOutcome {
    this.setState(vcpu, 'done');
    return { vcpu: vcpu.id, reason, exit, exits };
  }

  private setState(vcpu: Vcpu, state: LoopState): void {
    this.states.set(vcpu, state);
    if (state !== 'in-run') {
      const waiters = this.outWaiters;
      this.outWaiters = [];
      for (const w of waiters) w();
    }
  }

  private wakeParked(): void {
    const waiters = this.resumeWaiters;
    this.resumeWaiters = [];
    for (const w of waiters) w();
  }

  private kick(vcpu: Vcpu): void {
    try {
      vcpu.kick();
    } catch {
      // A closed vCPU is not running.
    }
  }
}
