/**
 * Every struct layout and ioctl number of sys/ is right, without /dev/kvm:
 *
 * 1. against the reference's table (reference/kvm-guest-memfd.md §1.3-1.4),
 * 2. against gcc: a C file of static assertions (offsetof, sizeof and the
 *    kernel's _IO/_IOW/_IOWR on the real declarations) must compile. The
 *    machine's <linux/kvm.h> is used where it has the declaration; older
 *    headers lack the guest_memfd-era structs, for which the C file carries a
 *    transcription of the kernel's uapi declarations.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import koffi, { type TypeObject } from 'koffi';
import * as uapi from '../../src/sys/kvm-uapi.js';
import { statLayout } from '../../src/sys/libc.js';

const expectedIoctls: Record<string, number> = {
  KVM_GET_API_VERSION: 0xae00,
  KVM_CREATE_VM: 0xae01,
  KVM_CHECK_EXTENSION: 0xae03,
  KVM_GET_VCPU_MMAP_SIZE: 0xae04,
  KVM_GET_SUPPORTED_CPUID: 0xc008ae05,
  KVM_CREATE_VCPU: 0xae41,
  KVM_SET_TSS_ADDR: 0xae47,
  KVM_SET_USER_MEMORY_REGION2: 0x40a0ae49,
  KVM_ENABLE_CAP: 0x4068aea3,
  KVM_SET_MEMORY_ATTRIBUTES: 0x4020aed2,
  KVM_CREATE_GUEST_MEMFD: 0xc040aed4,
  KVM_RUN: 0xae80,
  KVM_GET_REGS: 0x8090ae81,
  KVM_SET_REGS: 0x4090ae82,
  KVM_GET_SREGS: 0x8138ae83,
  KVM_SET_SREGS: 0x4138ae84,
  KVM_SET_CPUID2: 0x4008ae90,
  KVM_PRE_FAULT_MEMORY: 0xc040aed5,
};

const requests = (): [string, number][] =>
  Object.keys(expectedIoctls).map((name) => {
    const r = (uapi as unknown as Record<string, { name: string; number: number } | undefined>)[name];
    assert.ok(r, name);
    assert.equal(r.name, name);
    return [name, r.number];
  });

/** The structs to check, by C name, with the fields whose offsets matter. */
const structs: [cName: string, type: TypeObject, fields?: string[]][] = [
  ['kvm_userspace_memory_region2', uapi.kvm_userspace_memory_region2],
  ['kvm_create_guest_memfd', uapi.kvm_create_guest_memfd],
  ['kvm_memory_attributes', uapi.kvm_memory_attributes],
  ['kvm_enable_cap', uapi.kvm_enable_cap, ['cap', 'flags', 'args', 'pad']],
  ['kvm_pre_fault_memory', uapi.kvm_pre_fault_memory],
  ['kvm_regs', uapi.kvm_regs],
  ['kvm_segment', uapi.kvm_segment],
  ['kvm_dtable', uapi.kvm_dtable],
  ['kvm_sregs', uapi.kvm_sregs],
  ['kvm_cpuid_entry2', uapi.kvm_cpuid_entry2],
  ['kvm_cpuid2', uapi.kvm_cpuid2, ['nent', 'padding']],
  ['stat', statLayout, ['st_ino', 'st_mode', 'st_size', 'st_blksize', 'st_blocks']],
];

function members(type: TypeObject, only?: string[]): [string, number][] {
  const all = Object.values(type.members ?? {}).map((m): [string, number] => [m.name, m.offset]);
  return only ? all.filter(([n]) => only.includes(n)) : all;
}

// The kernel's declarations (include/uapi/linux/kvm.h, 6.18) for what older headers lack.
const NEWER_UAPI = `
#ifndef KVM_CREATE_GUEST_MEMFD
struct kvm_userspace_memory_region2 {
  __u32 slot; __u32 flags; __u64 guest_phys_addr; __u64 memory_size; __u64 userspace_addr;
  __u64 guest_memfd_offset; __u32 guest_memfd; __u32 pad1; __u64 pad2[14];
};
struct kvm_memory_attributes { __u64 address; __u64 size; __u64 attributes; __u64 flags; };
struct kvm_create_guest_memfd { __u64 size; __u64 flags; __u64 reserved[6]; };
#define KVM_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)
#define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct kvm_memory_attributes)
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
#endif
#ifndef KVM_PRE_FAULT_MEMORY
struct kvm_pre_fault_memory { __u64 gpa; __u64 size; __u64 flags; __u64 padding[5]; };
#define KVM_PRE_FAULT_MEMORY _IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)
#endif
`;

// struct kvm_run offsets as C member designators (the hypercall flags word is
// 'longmode' in older headers, at the same offset).
const runDesignators: Record<string, string> = {
  immediate_exit: 'immediate_exit', exit_reason: 'exit_reason', exit: 'io',
  io_direction: 'io.direction', io_size: 'io.size', io_port: 'io.port', io_count: 'io.count', io_data_offset: 'io.data_offset',
  mmio_phys_addr: 'mmio.phys_addr', mmio_data: 'mmio.data', mmio_len: 'mmio.len', mmio_is_write: 'mmio.is_write',
  hypercall_nr: 'hypercall.nr', hypercall_args: 'hypercall.args', hypercall_ret: 'hypercall.ret', hypercall_flags: 'hypercall.longmode',
  internal_suberror: 'internal.suberror', internal_ndata: 'internal.ndata', internal_data: 'internal.data',
  fail_entry_reason: 'fail_entry.hardware_entry_failure_reason', fail_entry_cpu: 'fail_entry.cpu',
};

describe('KVM uAPI layouts and ioctl numbers', () => {
  it('match the reference table', () => {
    for (const [name, number] of requests()) assert.equal(number, expectedIoctls[name], name);
    const sizes: [TypeObject, number][] = [
      [uapi.kvm_userspace_memory_region2, 160], [uapi.kvm_create_guest_memfd, 64], [uapi.kvm_memory_attributes, 32],
      [uapi.kvm_enable_cap, 104], [uapi.kvm_regs, 144], [uapi.kvm_sregs, 312], [uapi.kvm_segment, 24], [statLayout, 144],
    ];
    for (const [type, size] of sizes) assert.equal(koffi.sizeof(type), size, type.name);
    assert.equal(koffi.offsetof(uapi.kvm_userspace_memory_region2, 'guest_memfd'), 40);
    assert.equal(koffi.offsetof(uapi.kvm_userspace_memory_region2, 'guest_memfd_offset'), 32);
    assert.equal(koffi.offsetof(uapi.kvm_sregs, 'cr0'), 224);
    assert.equal(koffi.offsetof(uapi.kvm_sregs, 'efer'), 264);
    assert.equal(koffi.offsetof(uapi.kvm_sregs, 'gdt'), 192);
    assert.equal(koffi.offsetof(uapi.kvm_regs, 'rip'), 128);
    const o = uapi.KVM_RUN_OFFSETS;
    assert.deepEqual([o.exit_reason, o.exit, o.io_data_offset, o.mmio_len, o.mmio_is_write], [8, 32, 40, 48, 52]);
    assert.deepEqual([o.hypercall_args, o.hypercall_ret, o.hypercall_flags], [40, 88, 96]);
    assert.deepEqual([o.memory_fault_flags, o.memory_fault_gpa, o.memory_fault_size], [32, 40, 48]);
    assert.equal(o.exit_size, 256);
  });

  it('match what gcc computes from the kernel headers', (t) => {
    if (spawnSync('gcc', ['--version']).status !== 0) {
      t.skip('gcc not found');
      return;
    }
    const lines = ['#include <stddef.h>', '#include <sys/stat.h>', '#include <linux/kvm.h>', NEWER_UAPI];
    const check = (expr: string, value: number, what: string): void => {
      lines.push(`_Static_assert((unsigned long)(${expr}) == ${value}UL, "${what}: guestmem says ${value}");`);
    };
    for (const [cName, type, fields] of structs) {
      check(`sizeof(struct ${cName})`, koffi.sizeof(type), `sizeof(struct ${cName})`);
      for (const [field, offset] of members(type, fields)) check(`offsetof(struct ${cName}, ${field})`, offset, `${cName}.${field}`);
    }
    for (const [key, designator] of Object.entries(runDesignators)) {
      check(`offsetof(struct kvm_run, ${designator})`, uapi.KVM_RUN_OFFSETS[key as keyof typeof uapi.KVM_RUN_OFFSETS], `kvm_run.${designator}`);
    }
    for (const [name, number] of requests()) check(name, number, name);
    const constants: [string, number][] = [
      ['KVM_CAP_NR_MEMSLOTS', uapi.KVM_CAP_NR_MEMSLOTS], ['KVM_CAP_IMMEDIATE_EXIT', uapi.KVM_CAP_IMMEDIATE_EXIT],
      ['KVM_CAP_EXIT_HYPERCALL', uapi.KVM_CAP_EXIT_HYPERCALL], ['KVM_EXIT_IO', uapi.KVM_EXIT_IO], ['KVM_EXIT_HYPERCALL', uapi.KVM_EXIT_HYPERCALL],
      ['KVM_EXIT_HLT', uapi.KVM_EXIT_HLT], ['KVM_EXIT_MMIO', uapi.KVM_EXIT_MMIO], ['KVM_EXIT_SHUTDOWN', uapi.KVM_EXIT_SHUTDOWN],
      ['KVM_EXIT_FAIL_ENTRY', uapi.KVM_EXIT_FAIL_ENTRY], ['KVM_EXIT_INTERNAL_ERROR', uapi.KVM_EXIT_INTERNAL_ERROR],
      ['KVM_MEM_LOG_DIRTY_PAGES', uapi.KVM_MEM_LOG_DIRTY_PAGES], ['KVM_MEM_READONLY', uapi.KVM_MEM_READONLY],
    ];
    for (const [name, value] of constants) check(name, value, name);
    const dir = mkdtempSync(join(tmpdir(), 'guestmem-layout-'));
    try {
      const file = join(dir, 'layout.c');
      writeFileSync(file, `${lines.join('\n')}\n`);
      const r = spawnSync('gcc', ['-fsyntax-only', '-Wall', file], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
