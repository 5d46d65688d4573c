/**
 * The host side of the probe guest (probe.S): feeds it commands through its
 * MMIO doorbell and collects the results, so a test or a benchmark can make
 * the guest read and write its memory.
 */
import { UnexpectedExitError } from '../core/errors.js';
import type { IoExit, VcpuExit } from '../kvm/exits.js';
import type { Vcpu } from '../kvm/vcpu.js';

/** Probe commands (see probe.S). */
export const PROBE_OP = { read64: 1n, write64: 2n, sum64: 3n, fill64: 4n, spin: 5n, outb: 6n } as const;

/** Bytes of the doorbell's register block. */
export const PROBE_DOORBELL_BYTES = 0x28;

export class ProbeGuest {
  readonly vcpu: Vcpu;
  /** Guest physical address of the doorbell. */
  readonly doorbell: bigint;
  /** Port I/O the guest did (OUTB), in order. */
  readonly portWrites: IoExit[] = [];
  /** MMIO exits taken so far. */
  mmioExits = 0;

  constructor(vcpu: Vcpu, doorbell: bigint) {
    this.vcpu = vcpu;
    this.doorbell = doorbell;
  }

  /** The guest reads the u64 at `gpa`. */
  async read64(gpa: bigint | number): Promise<bigint> {
    return this.command(PROBE_OP.read64, [BigInt(gpa)]);
  }

  /** The guest writes `value` to the u64 at `gpa`. */
  async write64(gpa: bigint | number, value: bigint): Promise<void> {
    await this.command(PROBE_OP.write64, [BigInt(gpa), value]);
  }

  /** The guest sums the u64s of [gpa, gpa + length). */
  async sum64(gpa: bigint | number, length: number): Promise<bigint> {
    return this.command(PROBE_OP.sum64, [BigInt(gpa), BigInt(length)]);
  }

  /** The guest fills the u64s of [gpa, gpa + length) with `value`. */
  async fill64(gpa: bigint | number, length: number, value: bigint): Promise<void> {
    await this.command(PROBE_OP.fill64, [BigInt(gpa), BigInt(length), value]);
  }

  /** The guest writes byte `value` to I/O port `port` (needs the setup's portIo). */
  async outb(port: number, value: number): Promise<IoExit> {
    const before = this.portWrites.length;
    await this.command(PROBE_OP.outb, [BigInt(port), BigInt(value)]);
    const exit = this.portWrites[before];
    if (!exit) throw new UnexpectedExitError('probe guest outb', 'no port I/O exit');
    return exit;
  }

  /**
   * The guest spins until something kicks the vCPU; resolves with the exit
   * that ended the run (`interrupted` after a kick). The guest is left
   * spinning: no command can follow.
   */
  async spin(): Promise<VcpuExit> {
    let exit = await this.vcpu.run();
    exit = await this.answerReads(exit, PROBE_OP.spin, []);
    return exit;
  }

  private async command(op: bigint, args: readonly bigint[]): Promise<bigint> {
    let exit = await this.answerReads(await this.vcpu.run(), op, args);
    for (;;) {
      if (exit.kind === 'io') {
        this.portWrites.push(exit);
        exit = await this.answerReads(await this.vcpu.run(), op, args);
        continue;
      }
      if (exit.kind === 'mmio' && exit.isWrite && exit.gpa === this.doorbell + 0x20n) {
        this.mmioExits++;
        let result = 0n;
        for (let i = exit.data.length - 1; i >= 0; i--) result = (result << 8n) | BigInt(exit.data[i] ?? 0);
        return result;
      }
      throw new UnexpectedExitError(`probe guest command ${op}`, exit);
    }
  }

  /** Answers the guest's doorbell reads (opcode, then arguments) until another exit. */
  private async answerReads(first: VcpuExit, op: bigint, args: readonly bigint[]): Promise<VcpuExit> {
    let exit = first;
    while (exit.kind === 'mmio' && !exit.isWrite && exit.gpa >= this.doorbell && exit.gpa < this.doorbell + 0x20n) {
      this.mmioExits++;
      const register = Number(exit.gpa - this.doorbell) / 8;
      const value = register === 0 ? op : args[register - 1] ?? 0n;
      exit = await this.vcpu.run({ data: value });
    }
    return exit;
  }
}
