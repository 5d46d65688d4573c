/**
 * Loading flat guest images into guest memory seen through a host mapping.
 */
import { InvalidArgumentError } from '../core/errors.js';
import { hex } from '../core/units.js';

/**
 * Copies `image` into `memory` (which holds guest physical [base, base +
 * memory.length)) at guest physical address `gpa`.
 *
 * @throws InvalidArgumentError when the image does not fit.
 */
export function loadImage(memory: Uint8Array, base: number, gpa: number, image: Uint8Array): void {
  const offset = gpa - base;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + image.length > memory.length) {
    throw new InvalidArgumentError(`image of ${hex(image.length)} bytes at ${hex(gpa)} does not fit in memory ${hex(base)}+${hex(memory.length)}`);
  }
  memory.set(image, offset);
}
