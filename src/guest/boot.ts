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
import { InvalidArgumentError } from '../core/errors.js';
import { MiB } from '../core/units.js';
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '../sys/libc.js';
import { Mapping } from '../sys/mapping.js';
import { loadImage } from '../kvm/loader.js';
import { pageTableBytes, writeIdentityPageTables } from '../kvm/page-tables.js';
import type { Vcpu, VcpuOptions } from '../kvm/vcpu.js';
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

/** The page tables of a probe guest map at least this much: the doorbell must be mapped too. */
export const PROBE_MIN_GIB = Math.ceil(Number(PROBE_DOORBELL + 0x1000n) / 2 ** 30);

/**
 * Boots the probe guest at CPL3 on vCPU `id`, its page tables mapping
 * [0, gib GiB) (at least [0, PROBE_MIN_GIB GiB), which holds the doorbell).
 * Guest memory other than low RAM is the caller's (more memslots).
 */
export async function bootProbeGuest(vm: Vm, options: { readonly gib: number; readonly id?: number; readonly vcpu?: VcpuOptions }): Promise<BootedGuest & { readonly probe: ProbeGuest }> {
  const ram = lowRam(vm, guestProgram('probe'), Math.max(options.gib, PROBE_MIN_GIB), PROGRAM_GPA);
  try {
    const vcpu = await vm.createVcpu(options.id ?? 0, options.vcpu);
    await vcpu.setup({
      mode: 'long-user', entry: BigInt(PROGRAM_GPA), stack: BigInt(STACK_TOP), cr3: BigInt(PAGE_TABLES_GPA), portIo: true,
      regs: { rsi: PROBE_DOORBELL },
    });
    return {
      vcpu, lowRam: ram, probe: new ProbeGuest(vcpu, PROBE_DOORBELL),
      async close() {
        await vcpu.close();
        ram.close();
      },
    };
  } catch (error) {
    ram.close();
    throw error;
  }
}

/**
 * Boots the MMIO loop (mmio-loop.S) at CPL3 on vCPU `id`: every iteration
 * writes to the probe doorbell address and exits.
 */
export async function bootMmioLoopGuest(vm: Vm, options: { readonly id?: number; readonly vcpu?: VcpuOptions } = {}): Promise<BootedGuest> {
  const ram = lowRam(vm, guestProgram('mmio-loop'), PROBE_MIN_GIB, PROGRAM_GPA);
  try {
    const vcpu = await vm.createVcpu(options.id ?? 0, options.vcpu);
    await vcpu.setup({ mode: 'long-user', entry: BigInt(PROGRAM_GPA), stack: BigInt(STACK_TOP), cr3: BigInt(PAGE_TABLES_GPA), regs: { rsi: PROBE_DOORBELL } });
    return {
      vcpu, lowRam: ram,
      async close() {
        await vcpu.close();
        ram.close();
      },
    };
  } catch (error) {
    ram.close();
    throw error;
  }
}

/** Boots the real-mode port I/O program on vCPU `id`. */
export async function bootRealModeGuest(vm: Vm, id = 0): Promise<BootedGuest> {
  const ram = lowRam(vm, guestProgram('realmode-io'), 1, REAL_MODE_PROGRAM_GPA);
  try {
    const vcpu = await vm.createVcpu(id);
    await vcpu.setup({ mode: 'real', entry: REAL_MODE_PROGRAM_GPA });
    return {
      vcpu, lowRam: ram,
      async close() {
        await vcpu.close();
        ram.close();
      },
    };
  } catch (error) {
    ram.close();
    throw error;
  }
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
  const vcpus: Vcpu[] = [];
  try {
    options.scripts.forEach((script, i) => { loadImage(ram.bytes, 0, SCRIPT_GPA + i * SCRIPT_STRIDE, script.encode()); });
    for (let i = 0; i < n; i++) {
      const vcpu = await vm.createVcpu(i, options.vcpu);
      vcpus.push(vcpu);
      await vcpu.setup({
        mode: 'long-user', entry: BigInt(PROGRAM_GPA), stack: BigInt(STACK_TOP), cr3: BigInt(PAGE_TABLES_GPA),
        regs: { rsi: CONVERSION_DOORBELL, rdi: BigInt(SCRIPT_GPA + i * SCRIPT_STRIDE), rdx: GUEST_DONE },
      });
    }
  } catch (error) {
    for (const vcpu of vcpus) await vcpu.close();
    ram.close();
    throw error;
  }
  return {
    vcpus,
    lowRam: ram,
    results(i: number): bigint[] {
      const script = options.scripts[i];
      if (!script) throw new InvalidArgumentError(`no vCPU ${i}`);
      const view = new DataView(ram.bytes.buffer, ram.bytes.byteOffset + SCRIPT_GPA + i * SCRIPT_STRIDE + SCRIPT_RESULTS_OFFSET, script.length * 8);
      return Array.from({ length: script.length }, (_, k) => view.getBigInt64(k * 8, true));
    },
    async close() {
      for (const vcpu of vcpus) await vcpu.close();
      ram.close();
    },
  };
}
