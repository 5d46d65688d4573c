/**
 * libc, checked: one wrapper per call guestmem makes. Each reads errno right
 * after a failing call and throws a {@link SystemCallError} naming the call,
 * the ioctl, errno and its name, and the range involved.
 */
import koffi from 'koffi';
import { InvalidArgumentError, SystemCallError } from '../core/errors.js';
import { errnoDescription, errnoName } from './errno.js';
import { lastErrno, raw } from './ffi.js';

// open(2)
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CLOEXEC = 0x80000;
// mmap(2)
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
/** mmap's MAP_FAILED, (void *)-1. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
// madvise(2)
export const MADV_DONTNEED = 4;
export const MADV_REMOVE = 9;
export const MADV_HUGEPAGE = 14;
// fallocate(2)
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
// memfd_create(2)
export const MFD_CLOEXEC = 0x0001;
export const MFD_HUGETLB = 0x0004;
/** Huge page size encodings for MFD_HUGETLB: log2(size) << 26. */
export const MFD_HUGE_SHIFT = 26;
export const MFD_HUGE_2MB = 21 << MFD_HUGE_SHIFT;
export const MFD_HUGE_1GB = 30 << MFD_HUGE_SHIFT;
// signals
export const SIGUSR2 = 12;
const SC_PAGESIZE = 30;

/** struct stat on x86-64 (the fields guestmem reads are checked against gcc by the layout test). */
export const statLayout = koffi.struct('stat', {
  st_dev: 'uint64_t',
  st_ino: 'uint64_t',
  st_nlink: 'uint64_t',
  st_mode: 'uint32_t',
  st_uid: 'uint32_t',
  st_gid: 'uint32_t',
  __pad0: 'int32_t',
  st_rdev: 'uint64_t',
  st_size: 'int64_t',
  st_blksize: 'int64_t',
  st_blocks: 'int64_t',
  st_atime: 'int64_t',
  st_atime_nsec: 'int64_t',
  st_mtime: 'int64_t',
  st_mtime_nsec: 'int64_t',
  st_ctime: 'int64_t',
  st_ctime_nsec: 'int64_t',
  __unused: koffi.array('int64_t', 3),
});

/** What a failed call is about, for its error. */
export interface CallContext {
  /** The object, e.g. `guest_memfd 'pc.ram' (fd 23)`. */
  readonly target?: string;
  readonly range?: { readonly offset: number | bigint; readonly size: number | bigint };
  readonly hint?: string;
}

const NO_CONTEXT: CallContext = Object.freeze({});

/** Checks an offset, length or descriptor argument before the call: a safe non-negative integer. */
function count(value: number, call: string, what: string): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) throw new InvalidArgumentError(`${call}: ${what} must be a non-negative integer, got ${String(value)}`);
}

/** An ioctl request: its number and its name for errors. */
export interface IoctlRequest {
  readonly name: string;
  readonly number: number;
}

function fail(call: string, errno: number, context: CallContext = {}, request?: string): never {
  throw new SystemCallError({
    call,
    errno,
    errnoName: errnoName(errno),
    description: errnoDescription(errno),
    ...(request !== undefined ? { request } : {}),
    ...(context.target !== undefined ? { target: context.target } : {}),
    ...(context.range !== undefined ? { range: context.range } : {}),
    ...(context.hint !== undefined ? { hint: context.hint } : {}),
  });
}

const EINTR = 4;
/** Retries of a call a signal interrupted, before the EINTR is reported. */
const EINTR_RETRIES = 100;

/**
 * Makes a call that returns a negative number on failure, again while a
 * signal interrupts it (a profiler's SIGPROF, a vCPU kick aimed at another
 * thread): ioctls such as KVM_CREATE_VM and fallocate on shmem return EINTR
 * then, with nothing done. Returns the result and, on failure, the errno.
 */
function restarting(call: () => number): { result: number; errno: number } {
  for (let attempt = 0; ; attempt++) {
    const result = call();
    if (result >= 0) return { result, errno: 0 };
    const errno = lastErrno();
    if (errno !== EINTR || attempt >= EINTR_RETRIES) return { result, errno };
  }
}

/** The host page size (4096 on x86-64). */
export const HOST_PAGE_BYTES: number = raw.sysconf(SC_PAGESIZE);

export function open(path: string, flags: number, context: CallContext = {}): number {
  const fd = raw.open(path, flags, 0);
  if (fd < 0) fail('open', lastErrno(), { target: path, ...context });
  return fd;
}

export function close(fd: number): void {
  // close(2) releases the descriptor even when it reports an error (Linux);
  // report it, but there is nothing to retry.
  if (raw.close(fd) < 0) fail('close', lastErrno(), { target: `fd ${fd}` });
}

/** ioctl with an integer argument; returns the (non-negative) result. */
export function ioctlInt(fd: number, request: IoctlRequest, arg: number | bigint, context: CallContext = {}): number {
  const { result, errno } = restarting(() => raw.ioctlInt(fd, request.number, arg));
  if (result < 0) fail('ioctl', errno, context, request.name);
  return result;
}

/** ioctl with a pointer to `buf` (read and written in place by the kernel). */
export function ioctlPtr(fd: number, request: IoctlRequest, buf: Uint8Array, context: CallContext = {}): number {
  const { result, errno } = restarting(() => raw.ioctlPtr(fd, request.number, buf));
  if (result < 0) fail('ioctl', errno, context, request.name);
  return result;
}

/**
 * ioctl that reports errno instead of throwing, for calls whose failure is an
 * expected outcome (KVM_RUN returning EINTR or EFAULT).
 */
export function ioctlIntErrno(fd: number, request: IoctlRequest, arg: number | bigint): { result: number; errno: number } {
  const result = raw.ioctlInt(fd, request.number, arg);
  return { result, errno: result < 0 ? lastErrno() : 0 };
}

export function mmap(length: number, prot: number, flags: number, fd: number, offset: number, context: CallContext = {}): bigint {
  count(length, 'mmap', 'length');
  count(offset, 'mmap', 'offset');
  if (length === 0) throw new InvalidArgumentError('mmap: length is zero');
  const address = raw.mmap(null, length, prot, flags, fd, offset);
  if (address === MAP_FAILED) fail('mmap', lastErrno(), { range: { offset, size: length }, ...context });
  return address;
}

export function munmap(address: bigint, length: number, context: CallContext = {}): void {
  if (raw.munmap(address, length) < 0) fail('munmap', lastErrno(), context);
}

export function madvise(address: bigint, length: number, advice: number, context: CallContext = {}): void {
  count(length, 'madvise', 'length');
  if (raw.madvise(address, length, advice) < 0) fail('madvise', lastErrno(), context);
}

/** One byte per page of the mapping: bit 0 set when the page is resident. */
export function mincore(address: bigint, length: number, context: CallContext = {}): Uint8Array {
  const vec = new Uint8Array(Math.ceil(length / HOST_PAGE_BYTES));
  if (raw.mincore(address, length, vec) < 0) fail('mincore', lastErrno(), context);
  return vec;
}

export function fallocate(fd: number, mode: number, offset: number, length: number, context: CallContext = NO_CONTEXT): void {
  if (!(offset >= 0 && length > 0 && Number.isSafeInteger(offset + length))) {
    count(offset, 'fallocate', 'offset');
    throw new InvalidArgumentError(`fallocate: length must be a positive integer with offset + length below 2^53, got ${String(length)}`);
  }
  const { result, errno } = restarting(() => raw.fallocate(fd, mode, offset, length));
  if (result < 0) fail('fallocate', errno, { range: { offset, size: length }, ...context });
}

export function memfdCreate(name: string, flags: number, context: CallContext = {}): number {
  const fd = raw.memfdCreate(name, flags);
  if (fd < 0) fail('memfd_create', lastErrno(), { target: `'${name}'`, ...context });
  return fd;
}

export function ftruncate(fd: number, length: number, context: CallContext = {}): void {
  count(length, 'ftruncate', 'length');
  if (raw.ftruncate(fd, length) < 0) fail('ftruncate', lastErrno(), { range: { offset: 0, size: length }, ...context });
}

/** The fields of struct stat guestmem reads. */
export interface FileStat {
  readonly size: number;
  /** Allocated 512-byte blocks. */
  readonly blocks: number;
  readonly blockSize: number;
  readonly inode: number;
  readonly mode: number;
}

export function fstat(fd: number, context: CallContext = {}): FileStat {
  const buf = new Uint8Array(koffi.sizeof(statLayout));
  if (raw.fstat(fd, buf) < 0) fail('fstat', lastErrno(), context);
  const st = koffi.decode(buf, statLayout) as Record<string, number>;
  return { size: Number(st['st_size']), blocks: Number(st['st_blocks']), blockSize: Number(st['st_blksize']), inode: Number(st['st_ino']), mode: Number(st['st_mode']) };
}

/** The calling thread's kernel thread id. */
export function gettid(): number {
  return raw.gettid();
}

/** The calling thread's pthread_t, for {@link pthreadKill}. */
export function pthreadSelf(): bigint {
  return BigInt(raw.pthreadSelf());
}

export function pthreadKill(thread: bigint, signal: number): void {
  const r = raw.pthreadKill(thread, signal);
  // pthread_kill returns the error number instead of setting errno.
  if (r !== 0) fail('pthread_kill', r);
}
