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

/** A listener refused to prepare a discard; the operation changed nothing. */
export const traceRamDiscardManagerDiscardRefused = trace.define<[listener: string, offset: number, size: number, operation: string]>(
  'ram_discard_manager_discard_refused',
  'const char *listener, uint64_t offset, uint64_t size, const char *operation',
  `"listener '%s' refused discard offset 0x%"PRIx64" size 0x%"PRIx64" during %s"`,
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

// --- QEMU's (accel/kvm/trace-events, target/i386/kvm/trace-events) ------------

/** A conversion starts (after its request was decoded). msg: shared_to_private | private_to_shared. */
export const traceKvmConvertMemory = trace.define<[start: number | bigint, size: number | bigint, msg: string]>(
  'kvm_convert_memory',
  'uint64_t start, uint64_t size, const char *msg',
  `"start 0x%" PRIx64 " size 0x%" PRIx64 " %s"`,
);

/** A KVM_EXIT_MEMORY_FAULT exit (an implicit conversion request). */
export const traceKvmMemoryFault = trace.define<[start: number | bigint, size: number | bigint, flags: number | bigint]>(
  'kvm_memory_fault',
  'uint64_t start, uint64_t size, uint64_t flags',
  `"start 0x%" PRIx64 " size 0x%" PRIx64 " flags 0x%" PRIx64`,
);

/** A KVM_HC_MAP_GPA_RANGE hypercall exit (size in bytes). */
export const traceKvmHcMapGpaRange = trace.define<[gpa: number | bigint, size: number | bigint, attributes: number | bigint, flags: number | bigint]>(
  'kvm_hc_map_gpa_range',
  'uint64_t gpa, uint64_t size, uint64_t attributes, uint64_t flags',
  `"gpa 0x%" PRIx64 " size 0x%" PRIx64 " attributes 0x%" PRIx64 " flags 0x%" PRIx64`,
);

// --- ours: the conversion path ------------------------------------------------

/** A conversion request refused before any side effect. */
export const traceConversionRejected = trace.define<[gpa: number | bigint, size: number | bigint, reason: string]>(
  'conversion_rejected',
  'uint64_t gpa, uint64_t size, const char *reason',
  `"gpa 0x%"PRIx64" size 0x%"PRIx64" %s"`,
);

/** A conversion failed at a step and what it had done was undone. */
export const traceConversionRollback = trace.define<[gpa: number | bigint, size: number | bigint, step: string, reason: string]>(
  'conversion_rollback',
  'uint64_t gpa, uint64_t size, const char *step, const char *reason',
  `"gpa 0x%"PRIx64" size 0x%"PRIx64" failed at %s: %s"`,
);

/** The memslots of a RAM block were laid out again (private memory by memslots). */
export const traceMemslotRelayout = trace.define<[block: string, deleted: number, created: number, slots: number]>(
  'memslot_relayout',
  'const char *block, unsigned int deleted, unsigned int created, unsigned int slots',
  `"block '%s' deleted %u created %u slots in use %u"`,
);

/** A backing store range was freed after a conversion (the side the pages left). */
export const traceBackingDiscard = trace.define<[store: string, offset: number, size: number, stranded: number]>(
  'backing_discard',
  'const char *store, uint64_t offset, uint64_t size, uint64_t stranded',
  `"store '%s' offset 0x%"PRIx64" size 0x%"PRIx64" stranded 0x%"PRIx64`,
);
