/**
 * The FFI: libc loaded through koffi, one raw binding per function guestmem
 * calls. Raw bindings return what libc returns; sys/libc.ts wraps them with
 * errno checks and typed errors. errno must be read (lastErrno) right after
 * the call that may have set it, before any other FFI call.
 *
 * ioctl is declared twice with fixed prototypes (an integer argument and a
 * pointer argument) rather than as a variadic function: on x86-64 SysV both
 * pass the third argument in a register, and fixed prototypes avoid koffi's
 * slower variadic path.
 */
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

/** Raw libc functions. Pointers are BigInt addresses; buffers are passed by reference. */
export const raw = {
  open: libc.func('int open(const char *path, int flags, int mode)') as (path: string, flags: number, mode: number) => number,
  close: libc.func('int close(int fd)') as (fd: number) => number,
  ioctlInt: libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as (fd: number, request: number, arg: number | bigint) => number,
  ioctlPtr: libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']) as (fd: number, request: number, arg: Uint8Array) => number,
  mmap: libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)') as
    (addr: null, len: number, prot: number, flags: number, fd: number, off: number) => bigint,
  munmap: libc.func('int munmap(void *addr, size_t len)') as (addr: bigint, len: number) => number,
  madvise: libc.func('int madvise(void *addr, size_t len, int advice)') as (addr: bigint, len: number, advice: number) => number,
  mincore: libc.func('int mincore(void *addr, size_t len, _Out_ uint8_t *vec)') as (addr: bigint, len: number, vec: Uint8Array) => number,
  fallocate: libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)') as (fd: number, mode: number, offset: number, len: number) => number,
  memfdCreate: libc.func('int memfd_create(const char *name, unsigned int flags)') as (name: string, flags: number) => number,
  ftruncate: libc.func('int ftruncate(int fd, int64_t length)') as (fd: number, length: number) => number,
  fstat: libc.func('int fstat(int fd, _Out_ uint8_t *buf)') as (fd: number, buf: Uint8Array) => number,
  gettid: libc.func('int gettid(void)') as () => number,
  pthreadSelf: libc.func('unsigned long pthread_self(void)') as () => number | bigint,
  pthreadKill: libc.func('int pthread_kill(unsigned long thread, int sig)') as (thread: number | bigint, sig: number) => number,
  sysconf: libc.func('long sysconf(int name)') as (name: number) => number,
};

/** errno as left by the last FFI call on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

/** An ArrayBuffer over `length` bytes of process memory at `address` (no copy). */
export function viewOf(address: bigint, length: number): ArrayBuffer {
  return koffi.view(address, length);
}
