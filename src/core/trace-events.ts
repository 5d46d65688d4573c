/**
 * Every trace point guestmem emits, declared in one place. Where QEMU has an
 * event for the same thing, the declaration is QEMU's, word for word (from
 * system/trace-events and accel/kvm/trace-events), so traces of either
 * program read the same and QEMU's traces parse here. The others are ours and
 * follow the same conventions (hex offsets, QEMU's vocabulary).
 */
import { trace } from './trace.js';

// --- QEMU's (system/trace-events, "# ram-block-attributes.c") ----------------

/**
 * A state change request on a RAM block's attributes, after validation and
 * before any change (also when the range is already in the target state).
 * `from`: discarded | populated | mixture; `to`: discarded | populated.
 * (QEMU says populated for shared, discarded for private.)
 */
export const traceRamBlockAttributesStateChange = trace.define<[offset: number, size: number, from: string, to: string]>(
  'ram_block_attributes_state_change',
  'uint64_t offset, uint64_t size, const char *from, const char *to',
  `"offset 0x%"PRIx64" size 0x%"PRIx64" from '%s' to '%s'"`,
);

// --- ours: the discard manager ----------------------------------------------

/** A listener refused a populate notification; the operation is being rolled back. */
export const traceRamDiscardManagerVeto = trace.define<[listener: string, offset: number, size: number, operation: string]>(
  'ram_discard_manager_veto',
  'const char *listener, uint64_t offset, uint64_t size, const char *operation',
  `"listener '%s' vetoed populate offset 0x%"PRIx64" size 0x%"PRIx64" during %s"`,
);

/** A listener threw on a discard notification (which cannot be refused); state stays consistent. */
export const traceRamDiscardManagerDiscardFailed = trace.define<[listener: string, offset: number, size: number, error: string]>(
  'ram_discard_manager_discard_failed',
  'const char *listener, uint64_t offset, uint64_t size, const char *error',
  `"listener '%s' failed discard offset 0x%"PRIx64" size 0x%"PRIx64": %s"`,
);

/** A listener was registered with a section; its populated parts are replayed next. */
export const traceRamDiscardManagerRegister = trace.define<[listener: string, offset: number, size: number]>(
  'ram_discard_manager_register',
  'const char *listener, uint64_t offset, uint64_t size',
  `"listener '%s' offset 0x%"PRIx64" size 0x%"PRIx64`,
);

/** A listener was unregistered; its whole section is discarded. */
export const traceRamDiscardManagerUnregister = trace.define<[listener: string, offset: number, size: number]>(
  'ram_discard_manager_unregister',
  'const char *listener, uint64_t offset, uint64_t size',
  `"listener '%s' offset 0x%"PRIx64" size 0x%"PRIx64`,
);
