/**
 * Register and segment state for the two guest modes guestmem runs:
 *
 * - long-user: 64-bit long mode at CPL3 (CS 0x33, SS/DS 0x2b, DPL 3) on
 *   user-accessible identity page tables. Under PVM this runs natively; no
 *   GDT, IDT or TSS is needed while the guest takes no interrupt or fault.
 *   `portIo` sets RFLAGS.IOPL to 3 so CPL3 code may use in/out.
 * - real: 16-bit real mode from address `entry` (CS base 0); emulated under
 *   PVM, exits on port I/O.
 *
 * The worker applies the setup: KVM_SET_CPUID2 first (CR4 bits are checked
 * against CPUID), then KVM_GET_SREGS / KVM_SET_SREGS, then KVM_SET_REGS.
 */
import type { Regs, Segment, Sregs } from '../sys/kvm.js';

/** How to start a vCPU. */
export type CpuSetup =
  | {
    readonly mode: 'long-user';
    readonly entry: bigint;
    readonly stack: bigint;
    /** CR3: the PML4's guest physical address. */
    readonly cr3: bigint;
    /** Allow port I/O at CPL3 (RFLAGS.IOPL = 3). */
    readonly portIo?: boolean;
    /** Initial general registers (arguments to the guest program). */
    readonly regs?: Partial<Regs>;
  }
  | {
    readonly mode: 'real';
    readonly entry: number;
    readonly regs?: Partial<Regs>;
  };

const CR0_PE = 1n << 0n;
const CR0_MP = 1n << 1n;
const CR0_ET = 1n << 4n;
const CR0_NE = 1n << 5n;
const CR0_WP = 1n << 16n;
const CR0_AM = 1n << 18n;
const CR0_PG = 1n << 31n;
const CR4_PAE = 1n << 5n;
const EFER_SCE = 1n << 0n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;
const RFLAGS_RESERVED = 2n;
const RFLAGS_IF = 1n << 9n;
const RFLAGS_IOPL3 = 3n << 12n;

function segment(selector: number, type: number, dpl: number, long: boolean): Segment {
  return { base: 0n, limit: 0xffff_ffff, selector, type, present: 1, dpl, db: long ? 0 : 1, s: 1, l: long ? 1 : 0, g: 1, avl: 0, unusable: 0 };
}

/** The special registers for `setup`, starting from the vCPU's current ones. */
export function setupSregs(current: Sregs, setup: CpuSetup): Sregs {
  if (setup.mode === 'real') {
    return { ...current, cs: { ...current.cs, base: 0n, selector: 0 } };
  }
  const data = segment(0x2b, 0x3, 3, false);
  return {
    ...current,
    cs: segment(0x33, 0xb, 3, true),
    ds: data, es: data, fs: data, gs: data, ss: data,
    cr0: CR0_PG | CR0_AM | CR0_WP | CR0_NE | CR0_ET | CR0_MP | CR0_PE,
    cr3: setup.cr3,
    cr4: CR4_PAE,
    efer: EFER_LMA | EFER_LME | EFER_SCE,
  };
}

/** The general registers for `setup`. */
export function setupRegs(setup: CpuSetup): Regs {
  const zero: Regs = {
    rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0n, rbp: 0n,
    r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n, rip: 0n, rflags: RFLAGS_RESERVED,
  };
  if (setup.mode === 'real') return { ...zero, ...setup.regs, rip: BigInt(setup.entry), rflags: RFLAGS_RESERVED };
  return {
    ...zero,
    ...setup.regs,
    rip: setup.entry,
    rsp: setup.stack,
    rflags: RFLAGS_RESERVED | RFLAGS_IF | (setup.portIo ? RFLAGS_IOPL3 : 0n),
  };
}
