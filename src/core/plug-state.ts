/**
 * A virtio-mem-like plug state: which blocks of a region the guest may use at
 * all. A second {@link RamDiscardSource} beside {@link RamBlockAttributes}: a
 * byte is populated for listeners only where it is both plugged and shared.
 *
 * Unlike virtio-mem, a request over a partly plugged range is accepted (the
 * blocks in the other state change), like a RAM block state change.
 */
import { PageStateSource, type StateChangeResult } from './page-state-source.js';
import type { RamDiscardManager } from './ram-discard-manager.js';
import type { ByteCount } from './units.js';

/** Options for {@link PlugState}. */
export interface PlugStateOptions {
  /** Plug granularity in bytes (virtio-mem's block-size); a power of two dividing the region size. */
  readonly blockSize: ByteCount;
  /** Name in errors and traces. Default `<region>:plug`. */
  readonly name?: string;
}

/** Which blocks of a region are plugged: a second source beside the guest_memfd state. */
export class PlugState extends PageStateSource {
  /** Creates the state (all unplugged) and adds it to `manager` as a source. */
  constructor(manager: RamDiscardManager, options: PlugStateOptions) {
    super(manager, options.name ?? `${manager.region.name}:plug`, options.blockSize, false);
  }

  /** Plug granularity in bytes. */
  get blockSize(): number {
    return this.granularity;
  }

  /** Bytes currently plugged. */
  get pluggedBytes(): number {
    return this.populatedBytes;
  }

  /** Plugs blocks; listeners are told to populate what becomes populated (may be vetoed). */
  plug(offset: ByteCount, size: ByteCount): StateChangeResult {
    return this.change(offset, size, true, 'plug');
  }

  /** Unplugs blocks; listeners are told to discard what was populated. */
  unplug(offset: ByteCount, size: ByteCount): StateChangeResult {
    return this.change(offset, size, false, 'unplug');
  }

  /** True when every block of the range is plugged. */
  isPlugged(offset: ByteCount, size: ByteCount): boolean {
    return this.rangeState(offset, size, 'query') === 'populated';
  }
}
