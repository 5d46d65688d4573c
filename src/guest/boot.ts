/**
 * Boots a guest program on a VM: low RAM as memslot 0 (anonymous memory
 * holding the page tables and the program), identity page tables, and a
 * vCPU set up for the program.
 *
 *   guest physical
 *   0x0000_0000  low RAM (2 MiB, slot 0)
 *     0x1000       page tables (PML4, PDPT, one PD per GiB mapped)
 *     0x8000       a real-mode program
 *     0x10_0000    the program
 *     0x12_0000    scripts of the converting guest, 64 KiB per vCPU
 *     0x1f_f000    top of the stack
 *   0xd000_0000  the probe guest's doorbell (no memory: every access exits)
 *   0xd000_1000  the converting guest's "done" address
 *   0xd000_2000  the conversion doorbell
 */
import { InvalidArgumentError, UnexpectedExitError } from '../core/errors.js';
import { MiB } from '../core/units.js';
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../sys/libc.js';
import { Mapping } from '../sys/mapping.js';
import { loadImage } from '../kvm/loader.js';
import { pageTableBytes, writeIdentityPageTables } from '../kvm/page-tables.js';
import type { CpuSetup } from '../kvm/cpu-setup.js';
import { ConversionDoorbell } from '../conversion/doorbell.js';
import type { GuestRequestRecord, GuestRequestsOptions } from '../conversion/guest-requests.js';
import type { Vcpu, VcpuOptions } from '../kvm/vcpu.js';
import type { Regs } from '../sys/kvm.js';
import type { Vm } from '../kvm/vm.js';
import { guestProgram } from './programs.js';
import { ProbeGuest } from './probe-guest.js';
import { SCRIPT_RESULTS_OFFSET, type GuestScript } from './convert-guest.js';

export const LOW_RAM_BYTES = 2 * MiB;
export const LOW_RAM_SLOT = 0;
export const PAGE_TABLES_GPA = 0x1000;
export const PROGRAM_GPA = 0x10_0000;
/** Where a real-mode program goes: below 64 KiB, reachable with CS base 0. */
export const REAL_MODE_PROGRAM_GPA = 0x8000;
export const STACK_TOP = 0x1f_f000;
export const PROBE_DOORBELL = 0xd000_0000n;

/** Low RAM of a booted guest: its host mapping (closed by {@link BootedGuest.close}). */
export interface BootedGuest {
  readonly vcpu: Vcpu;
  readonly lowRam: Mapping;
  /** Stops the vCPU and unmaps low RAM (the VM stays). */
  close(): Promise<void>;
}

/** Maps low RAM as slot 0 with page tables for `gib` GiB and `image` at `at`. */
function lowRam(vm: Vm, image: Uint8Array, gib: number, at: number): Mapping {
  if (PAGE_TABLES_GPA + pageTableBytes(gib) > PROGRAM_GPA) throw new InvalidArgumentError(`page tables for ${gib} GiB do not fit below the program`);
  const ram = Mapping.map(LOW_RAM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 'low RAM');
  try {
    writeIdentityPageTables(ram.bytes, PAGE_TABLES_GPA, PAGE_TABLES_GPA, gib, true);
    loadImage(ram.bytes, 0, at, image);
    vm.setMemslot({ slot: LOW_RAM_SLOT, gpa: 0, size: LOW_RAM_BYTES, userspaceAddr: ram.start });
    return ram;
  } catch (error) {
    ram.close();
    throw error;
  }
}

/**
 * Creates vCPUs 0..n-1 (or the one `id`) on `ram` and sets each up; on
 * failure closes what it made and `ram`. Returns them and a close for all.
 */
async function bootVcpus(vm: Vm, ram: Mapping, setups: readonly CpuSetup[], options: { readonly id?: number; readonly vcpu?: VcpuOptions } = {}): Promise<{ vcpus: Vcpu[]; close: () => Promise<void> }> {
  const vcpus: Vcpu[] = [];
  const close = async (): Promise<void> => {
    for (const vcpu of vcpus) await vcpu.close();
    ram.close();
  };
  try {
    for (const [i, setup] of setups.entries()) {
      const vcpu = await vm.createVcpu(options.id ?? i, options.vcpu);
      vcpus.push(vcpu);
      await vcpu.setup(setup);
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { vcpus, close };
}

/** One vCPU (`id`, default 0) on `ram`, set up with `setup`: see {@link bootVcpus}. */
async function bootVcpu(vm: Vm, ram: Mapping, setup: CpuSetup, options: { readonly id?: number; readonly vcpu?: VcpuOptions }): Promise<BootedGuest> {
  const { vcpus: [vcpu], close } = await bootVcpus(vm, ram, [setup], { id: options.id ?? 0, ...(options.vcpu ? { vcpu: options.vcpu } : {}) });
  if (!vcpu) throw new InvalidArgumentError('no vCPU was created');
  return { vcpu, lowRam: ram, close };
}

/** A 64-bit CPL3 setup of the program at PROGRAM_GPA on low RAM's page tables and stack. */
function userSetup(regs: Partial<Regs>, portIo = false): CpuSetup {
  return { mode: 'long-user', entry: BigInt(PROGRAM_GPA), stack: BigInt(STACK_TOP), cr3: BigInt(PAGE_TABLES_GPA), portIo, regs };
}

/** The page tables of a probe guest map at least this much: the doorbell must be mapped too. */
export const PROBE_MIN_GIB = Math.ceil(Number(PROBE_DOORBELL + 0x1000n) / 2 ** 30);

/**
 * Boots the probe guest at CPL3 on vCPU `id`, its page tables mapping
 * [0, gib GiB) (at least [0, PROBE_MIN_GIB GiB), which holds the doorbell).
 * Guest memory other than low RAM is the caller's (more memslots).
 */
export async function bootProbeGuest(vm: Vm, options: { readonly gib: number; readonly id?: number; readonly vcpu?: VcpuOptions }): Promise<BootedGuest & { readonly probe: ProbeGuest }> {
  const ram = lowRam(vm, guestProgram('probe'), Math.max(options.gib, PROBE_MIN_GIB), PROGRAM_GPA);
  const guest = await bootVcpu(vm, ram, userSetup({ rsi: PROBE_DOORBELL }, true), options);
  return { ...guest, probe: new ProbeGuest(guest.vcpu, PROBE_DOORBELL) };
}

/**
 * Boots the MMIO loop (mmio-loop.S) at CPL3 on vCPU `id`: every iteration
 * writes to the probe doorbell address and exits.
 */
export async function bootMmioLoopGuest(vm: Vm, options: { readonly id?: number; readonly vcpu?: VcpuOptions } = {}): Promise<BootedGuest> {
  const ram = lowRam(vm, guestProgram('mmio-loop'), PROBE_MIN_GIB, PROGRAM_GPA);
  return bootVcpu(vm, ram, userSetup({ rsi: PROBE_DOORBELL }), options);
}

/** Boots the real-mode port I/O program on vCPU `id`. */
export async function bootRealModeGuest(vm: Vm, id = 0): Promise<BootedGuest> {
  const ram = lowRam(vm, guestProgram('realmode-io'), 1, REAL_MODE_PROGRAM_GPA);
  return bootVcpu(vm, ram, { mode: 'real', entry: REAL_MODE_PROGRAM_GPA }, { id });
}

/** The converting guest's conversion doorbell (see conversion/doorbell.ts). */
export const CONVERSION_DOORBELL = 0xd000_2000n;
/** The converting guest writes here when its script is done. */
export const GUEST_DONE = 0xd000_1000n;
/** Where vCPU i's script goes: SCRIPT_GPA + i x SCRIPT_STRIDE (results 0x8000 further). */
export const SCRIPT_GPA = 0x12_0000;
export const SCRIPT_STRIDE = 0x1_0000;
/** vCPUs a converting guest can have (their scripts must fit below the stack). */
export const CONVERT_MAX_VCPUS = Math.floor((STACK_TOP - SCRIPT_GPA) / SCRIPT_STRIDE);

/**
 * What `CvmMemory.run` needs for the converting guest: the conversion
 * doorbell, and a fallback that ends a vCPU's loop with `done` at its write
 * to GUEST_DONE, or naming any other exit.
 */
export function convertGuestRequests(onRequest?: (record: GuestRequestRecord) => void): GuestRequestsOptions {
  return {
    doorbell: new ConversionDoorbell(CONVERSION_DOORBELL),
    fallback: (_vcpu, exit) => ({
      stop: exit.kind === 'mmio' && exit.isWrite && exit.gpa === GUEST_DONE ? 'done' : new UnexpectedExitError('converting guest', exit).message,
    }),
    ...(onRequest ? { onRequest } : {}),
  };
}

/** A booted converting guest: one vCPU per script. */
export interface ConvertGuest {
  /** One vCPU per script, ids 0..n-1. */
  readonly vcpus: readonly Vcpu[];
  /** Low RAM (page tables, program, scripts and results), mapped in this process. */
  readonly lowRam: Mapping;
  /** The results of vCPU `i`'s script so far, one signed u64 per step. */
  results(i: number): bigint[];
  /** Stops the vCPUs and unmaps low RAM (the VM stays). */
  close(): Promise<void>;
}

/**
 * Boots the converting guest (convert.S) at CPL3, one vCPU per script
 * (ids 0..n-1), page tables mapping [0, gib GiB) (at least the doorbell's
 * 4 GiB). Guest RAM for the conversions is the caller's.
 */
export async function bootConvertGuest(vm: Vm, options: { readonly scripts: readonly GuestScript[]; readonly gib?: number; readonly vcpu?: VcpuOptions }): Promise<ConvertGuest> {
  const n = options.scripts.length;
  if (n < 1 || n > CONVERT_MAX_VCPUS) throw new InvalidArgumentError(`a converting guest has 1 to ${CONVERT_MAX_VCPUS} vCPUs, not ${n}`);
  const ram = lowRam(vm, guestProgram('convert'), Math.max(options.gib ?? 0, PROBE_MIN_GIB), PROGRAM_GPA);
  try {
    options.scripts.forEach((script, i) => { loadImage(ram.bytes, 0, SCRIPT_GPA + i * SCRIPT_STRIDE, script.encode()); });
  } catch (error) {
    ram.close();
    throw error;
  }
  const { vcpus, close } = await bootVcpus(vm, ram, options.scripts.map((_, i) => userSetup({ rsi: CONVERSION_DOORBELL, rdi: BigInt(SCRIPT_GPA + i * SCRIPT_STRIDE), rdx: GUEST_DONE })),
    options.vcpu ? { vcpu: options.vcpu } : {});
  return {
    vcpus,
    lowRam: ram,
    results(i: number): bigint[] {
      const script = options.scripts[i];
      if (!script) throw new InvalidArgumentError(`no vCPU ${i}`);
      const view = new DataView(ram.bytes.buffer, ram.bytes.byteOffset + SCRIPT_GPA + i * SCRIPT_STRIDE + SCRIPT_RESULTS_OFFSET, script.length * 8);
      return Array.from({ length: script.length }, (_, k) => view.getBigInt64(k * 8, true));
    },
    close,
  };
}
