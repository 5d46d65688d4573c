/**
 * struct kvm_run decoded into typed exits, and the answers written back
 * before the next KVM_RUN. Pure code over the shared page (a DataView), so
 * it runs in the vCPU's worker and in tests with a made-up kvm_run.
 */
import {
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_HLT,
  KVM_EXIT_HYPERCALL,
  KVM_EXIT_HYPERCALL_LONG_MODE,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_EXIT_IO_OUT,
  KVM_EXIT_MEMORY_FAULT,
  KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN,
  KVM_HC_MAP_GPA_RANGE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_RUN_OFFSETS as O,
} from '../sys/kvm-uapi.js';

/** A port I/O exit. For `out`, `data` holds what the guest wrote; for `in`, answer with {@link ExitResponse.data}. */
export interface IoExit {
  readonly kind: 'io';
  readonly direction: 'in' | 'out';
  /** Bytes per access: 1, 2 or 4. */
  readonly size: number;
  readonly port: number;
  /** Accesses (string I/O repeats). */
  readonly count: number;
  /** The bytes written (out), size x count; zeros for in. */
  readonly data: Uint8Array;
}

/** An MMIO exit. For a write, `data` holds the value; for a read, answer with {@link ExitResponse.data}. */
export interface MmioExit {
  readonly kind: 'mmio';
  readonly gpa: bigint;
  readonly isWrite: boolean;
  /** Bytes accessed: 1 to 8. */
  readonly length: number;
  readonly data: Uint8Array;
}

/** KVM_HC_MAP_GPA_RANGE's arguments, as the guest passed them (unvalidated). */
export interface MapGpaRange {
  readonly gpa: bigint;
  /** In 4 KiB pages. */
  readonly npages: bigint;
  readonly attributes: bigint;
}

/** A hypercall forwarded to userspace. Answer with {@link ExitResponse.ret}. */
export interface HypercallExit {
  readonly kind: 'hypercall';
  readonly nr: bigint;
  readonly args: readonly bigint[];
  /** The guest was in 64-bit mode (else the return value is truncated to 32 bits). */
  readonly longMode: boolean;
  /** Set when nr is KVM_HC_MAP_GPA_RANGE. */
  readonly mapGpaRange: MapGpaRange | undefined;
}

/** A guest access KVM could not resolve (KVM_RUN returned EFAULT with exit 39). */
export interface MemoryFaultExit {
  readonly kind: 'memory_fault';
  readonly flags: bigint;
  /** The access was private (KVM_MEMORY_EXIT_FLAG_PRIVATE). */
  readonly private: boolean;
  readonly gpa: bigint;
  readonly size: bigint;
}

/** The remaining exits guestmem names. */
export type SimpleExit =
  | { readonly kind: 'hlt' }
  | { readonly kind: 'shutdown' }
  | { readonly kind: 'internal_error'; readonly suberror: number; readonly data: readonly bigint[] }
  | { readonly kind: 'fail_entry'; readonly reason: bigint; readonly cpu: number }
  /** KVM_RUN returned EINTR: a kick or a signal. */
  | { readonly kind: 'interrupted' };

/** An exit guestmem does not decode: the reason and the raw exit union, for the caller to decide. */
export interface UnknownExit {
  readonly kind: 'unknown';
  readonly reason: number;
  /** KVM_RUN's errno when it failed (0 when it returned 0). */
  readonly errno: number;
  readonly raw: Uint8Array;
}

/** Why KVM_RUN returned. */
export type VcpuExit = IoExit | MmioExit | HypercallExit | MemoryFaultExit | SimpleExit | UnknownExit;

/** What to write into kvm_run before the next KVM_RUN. */
export interface ExitResponse {
  /** For an MMIO read or port input: the bytes the guest reads (little-endian). */
  readonly data?: Uint8Array | bigint;
  /** For a hypercall: the return value (0, or a negative KVM error such as -KVM_EINVAL). */
  readonly ret?: bigint | number;
}

/**
 * Decodes the exit in `run` (struct kvm_run) after KVM_RUN returned `result`
 * with `errno`. EINTR is `interrupted`; EFAULT is a memory fault when the exit
 * reason says so; any other failure is kept as unknown, with its errno.
 */
export function decodeExit(run: DataView, result: number, errno: number): VcpuExit {
  const reason = run.getUint32(O.exit_reason, true);
  if (result < 0) {
    if (errno === EINTR) return { kind: 'interrupted' };
    if (errno === EFAULT && reason === KVM_EXIT_MEMORY_FAULT) return memoryFault(run);
    return unknown(run, reason, errno);
  }
  switch (reason) {
    case KVM_EXIT_IO: {
      const size = run.getUint8(O.io_size);
      const count = run.getUint32(O.io_count, true);
      const out = run.getUint8(O.io_direction) === KVM_EXIT_IO_OUT;
      const offset = Number(run.getBigUint64(O.io_data_offset, true));
      const bytes = size * count;
      const data = out && offset + bytes <= run.byteLength
        ? new Uint8Array(run.buffer, run.byteOffset + offset, bytes).slice()
        : new Uint8Array(bytes);
      return { kind: 'io', direction: out ? 'out' : 'in', size, port: run.getUint16(O.io_port, true), count, data };
    }
    case KVM_EXIT_MMIO: {
      const length = run.getUint32(O.mmio_len, true);
      const isWrite = run.getUint8(O.mmio_is_write) !== 0;
      const data = isWrite ? new Uint8Array(run.buffer, run.byteOffset + O.mmio_data, Math.min(length, 8)).slice() : new Uint8Array(Math.min(length, 8));
      return { kind: 'mmio', gpa: run.getBigUint64(O.mmio_phys_addr, true), isWrite, length, data };
    }
    case KVM_EXIT_HYPERCALL: {
      const nr = run.getBigUint64(O.hypercall_nr, true);
      const args = [0, 1, 2, 3, 4, 5].map((i) => run.getBigUint64(O.hypercall_args + i * 8, true));
      const longMode = (run.getBigUint64(O.hypercall_flags, true) & BigInt(KVM_EXIT_HYPERCALL_LONG_MODE)) !== 0n;
      const [gpa = 0n, npages = 0n, attributes = 0n] = args;
      return {
        kind: 'hypercall', nr, args, longMode,
        mapGpaRange: nr === BigInt(KVM_HC_MAP_GPA_RANGE) ? { gpa, npages, attributes } : undefined,
      };
    }
    case KVM_EXIT_MEMORY_FAULT:
      return memoryFault(run);
    case KVM_EXIT_HLT:
      return { kind: 'hlt' };
    case KVM_EXIT_SHUTDOWN:
      return { kind: 'shutdown' };
    case KVM_EXIT_INTERNAL_ERROR: {
      const ndata = Math.min(16, run.getUint32(O.internal_ndata, true));
      const data: bigint[] = [];
      for (let i = 0; i < ndata; i++) data.push(run.getBigUint64(O.internal_data + i * 8, true));
      return { kind: 'internal_error', suberror: run.getUint32(O.internal_suberror, true), data };
    }
    case KVM_EXIT_FAIL_ENTRY:
      return { kind: 'fail_entry', reason: run.getBigUint64(O.fail_entry_reason, true), cpu: run.getUint32(O.fail_entry_cpu, true) };
    default:
      return unknown(run, reason, 0);
  }
}

/** Writes `response` for `exit` into `run`, before the next KVM_RUN. */
export function applyResponse(run: DataView, exit: VcpuExit, response: ExitResponse | undefined): void {
  if (!response) return;
  if (exit.kind === 'mmio' && !exit.isWrite && response.data !== undefined) {
    writeLittleEndian(run, O.mmio_data, Math.min(exit.length, 8), response.data);
  } else if (exit.kind === 'io' && exit.direction === 'in' && response.data !== undefined) {
    const offset = Number(run.getBigUint64(O.io_data_offset, true));
    writeLittleEndian(run, offset, exit.size * exit.count, response.data);
  } else if (exit.kind === 'hypercall' && response.ret !== undefined) {
    run.setBigUint64(O.hypercall_ret, BigInt.asUintN(64, BigInt(response.ret)), true);
  }
}

const EINTR = 4;
const EFAULT = 14;

function memoryFault(run: DataView): MemoryFaultExit {
  const flags = run.getBigUint64(O.memory_fault_flags, true);
  return {
    kind: 'memory_fault',
    flags,
    private: (flags & BigInt(KVM_MEMORY_EXIT_FLAG_PRIVATE)) !== 0n,
    gpa: run.getBigUint64(O.memory_fault_gpa, true),
    size: run.getBigUint64(O.memory_fault_size, true),
  };
}

function unknown(run: DataView, reason: number, errno: number): UnknownExit {
  return { kind: 'unknown', reason, errno, raw: new Uint8Array(run.buffer, run.byteOffset + O.exit, O.exit_size).slice() };
}

function writeLittleEndian(run: DataView, offset: number, length: number, value: Uint8Array | bigint): void {
  if (typeof value === 'bigint') {
    for (let i = 0; i < length; i++) run.setUint8(offset + i, Number((value >> BigInt(8 * i)) & 0xffn));
  } else {
    for (let i = 0; i < length; i++) run.setUint8(offset + i, value[i] ?? 0);
  }
}
