/**
 * File descriptors and mappings as owned objects: closed once, by their
 * owner, through `close()` or `using`; any use after that throws
 * {@link ResourceClosedError} instead of touching whatever the number or
 * address was reused for.
 */
import { ResourceClosedError } from '../core/errors.js';
import { close } from './libc.js';

/** A file descriptor this process owns. */
export class OwnedFd {
  /** What the descriptor is, for errors: `guest_memfd 'pc.ram'`. */
  readonly description: string;
  private value: number;

  constructor(fd: number, description: string) {
    this.value = fd;
    this.description = description;
  }

  /** The descriptor number. @throws ResourceClosedError after close. */
  get fd(): number {
    if (this.value < 0) throw new ResourceClosedError(this.description);
    return this.value;
  }

  get closed(): boolean {
    return this.value < 0;
  }

  /** Closes the descriptor; later calls do nothing. */
  close(): void {
    if (this.value < 0) return;
    const fd = this.value;
    this.value = -1;
    close(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  toString(): string {
    return this.value < 0 ? `${this.description} (closed)` : `${this.description} (fd ${this.value})`;
  }
}
