/**
 * The conversion doorbell: an MMIO register block through which a guest
 * passes MAP_GPA_RANGE's three arguments and reads back the status, for
 * hosts where the hypercall cannot exit (under PVM a guest VMCALL never
 * does). Every vCPU has its own copy of the registers (the device keys them
 * by the vCPU that accesses it), so vCPUs never see each other's arguments.
 *
 *   offset  register    access  meaning
 *   0x00    GPA         rw      MAP_GPA_RANGE args[0]
 *   0x08    NPAGES      rw      args[1], in 4 KiB pages
 *   0x10    ATTRIBUTES  rw      args[2] (bit 4 encrypted = private; bits 0/1: 2 MiB / 1 GiB)
 *   0x18    COMMAND     w       1: convert with the three registers; the write
 *                               returns once the conversion is done
 *   0x20    STATUS      r       result of the last command: 0, or a negative
 *                               KVM error (two's complement), as a hypercall's RAX
 *   0x28    ID          r       "GMDOORBL" (0x4c42524f4f444d47), to detect the device
 *
 * Registers are 64-bit. Any other access (a width other than 8, an offset
 * that is not a register, a write to a read-only register) changes no
 * argument, sets STATUS to -KVM_EINVAL, and is counted; reads outside the
 * registers return 0. Arguments may be written in any order and any number
 * of times; only a COMMAND write acts, with what the registers hold then.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { hex } from '../core/units.js';
import type { MmioExit } from '../kvm/exits.js';
import { KVM_EINVAL, type MapGpaRangeArgs } from './request.js';

/** Register offsets. */
export const DOORBELL = {
  gpa: 0x00,
  npages: 0x08,
  attributes: 0x10,
  command: 0x18,
  status: 0x20,
  id: 0x28,
} as const;

/** Bytes of guest physical space the device decodes. */
export const DOORBELL_BYTES = 0x1000;
/** The COMMAND value that converts. */
export const DOORBELL_CONVERT = 1n;
/** What ID reads. */
export const DOORBELL_ID = 0x4c42524f4f444d47n;

interface Registers {
  gpa: bigint;
  npages: bigint;
  attributes: bigint;
  status: bigint;
}

/** What an access asks of the host. */
export type DoorbellAction =
  /** Answer the access (a read's data; nothing for a write). */
  | { readonly kind: 'answer'; readonly data?: bigint }
  /** A COMMAND write: convert, then report the status with {@link ConversionDoorbell.complete}. */
  | { readonly kind: 'convert'; readonly args: MapGpaRangeArgs };

/** The doorbell's state: one register file per vCPU. */
export class ConversionDoorbell {
  /** Guest physical address of register 0. */
  readonly base: bigint;
  private readonly files = new Map<number, Registers>();
  /** Accesses refused (bad width, offset or direction, unknown command). */
  badAccesses = 0;
  /** COMMAND writes that asked for a conversion. */
  commands = 0;

  constructor(base: bigint) {
    if (base < 0n || base % 0x1000n !== 0n || base + BigInt(DOORBELL_BYTES) > 1n << 52n) {
      throw new InvalidArgumentError(`doorbell base ${hex(base)} must be a 4 KiB-aligned guest physical address`);
    }
    this.base = base;
  }

  /** True when `exit` is an access to this device. */
  claims(exit: MmioExit): boolean {
    return exit.gpa >= this.base && exit.gpa < this.base + BigInt(DOORBELL_BYTES);
  }

  /** Handles an access by vCPU `vcpu`. */
  access(vcpu: number, exit: MmioExit): DoorbellAction {
    const regs = this.registers(vcpu);
    const offset = Number(exit.gpa - this.base);
    const register = offset % 8 === 0 && exit.length === 8 ? offset : -1;
    if (!exit.isWrite) {
      switch (register) {
        case DOORBELL.gpa: return { kind: 'answer', data: regs.gpa };
        case DOORBELL.npages: return { kind: 'answer', data: regs.npages };
        case DOORBELL.attributes: return { kind: 'answer', data: regs.attributes };
        case DOORBELL.status: return { kind: 'answer', data: regs.status };
        case DOORBELL.id: return { kind: 'answer', data: DOORBELL_ID };
        default:
          if (register < 0 || register === DOORBELL.command) this.refuse(regs);
          return { kind: 'answer', data: 0n };
      }
    }
    const value = littleEndian(exit.data);
    switch (register) {
      case DOORBELL.gpa:
        regs.gpa = value;
        return { kind: 'answer' };
      case DOORBELL.npages:
        regs.npages = value;
        return { kind: 'answer' };
      case DOORBELL.attributes:
        regs.attributes = value;
        return { kind: 'answer' };
      case DOORBELL.command:
        if (value !== DOORBELL_CONVERT) {
          this.refuse(regs);
          return { kind: 'answer' };
        }
        this.commands++;
        return { kind: 'convert', args: { gpa: regs.gpa, npages: regs.npages, attributes: regs.attributes } };
      default:
        this.refuse(regs);
        return { kind: 'answer' };
    }
  }

  /** Sets vCPU `vcpu`'s STATUS after a conversion (0 or a negative KVM error). */
  complete(vcpu: number, status: number): void {
    this.registers(vcpu).status = BigInt.asUintN(64, BigInt(status));
  }

  /** vCPU `vcpu`'s STATUS as a signed number. */
  status(vcpu: number): number {
    return Number(BigInt.asIntN(64, this.registers(vcpu).status));
  }

  private registers(vcpu: number): Registers {
    let regs = this.files.get(vcpu);
    if (!regs) {
      regs = { gpa: 0n, npages: 0n, attributes: 0n, status: 0n };
      this.files.set(vcpu, regs);
    }
    return regs;
  }

  private refuse(regs: Registers): void {
    this.badAccesses++;
    regs.status = BigInt.asUintN(64, BigInt(-KVM_EINVAL));
  }
}

function littleEndian(data: Uint8Array): bigint {
  let v = 0n;
  for (let i = data.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i] ?? 0);
  return v;
}
