/**
 * The guest programs (src/guest/*.S, assembled by the build with GNU as into
 * flat binaries beside this module).
 */
import { readFileSync } from 'node:fs';

/** Programs guestmem ships. */
export type GuestProgramName = 'probe' | 'realmode-io' | 'mmio-loop' | 'convert';

const cache = new Map<GuestProgramName, Uint8Array>();

/** The flat binary of a guest program. */
export function guestProgram(name: GuestProgramName): Uint8Array {
  let image = cache.get(name);
  if (!image) {
    image = new Uint8Array(readFileSync(new URL(`./${name}.bin`, import.meta.url)));
    cache.set(name, image);
  }
  return image;
}
