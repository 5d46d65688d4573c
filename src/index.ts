/**
 * guestmem: the host side of confidential-VM memory conversion.
 *
 * The public API; re-exports only. See README.md and docs/ for the tour.
 */

// Errors and units
export {
  GuestmemError,
  InvalidArgumentError,
  InvalidRangeError,
  ListenerVetoError,
  ReentrancyError,
  RegistrationError,
  TraceParseError,
  type DiscardFailure,
  type InvalidRangeReason,
} from './core/errors.js';
export { KiB, MiB, GiB, TiB, MAX_PHYS_ADDR, formatBytes, hex, parseByteSize, type ByteCount } from './core/units.js';
export { checkRange, type ByteRange, type RunVisitor } from './core/range.js';
export { toDisposable, type Disposable } from './core/event.js';

// Regions, the discard-manager protocol and page-state tracking
export { MemoryRegion, createSection, intersectSection, type MemoryRegionSection } from './core/section.js';
export { RamDiscardManager, type RamDiscardListener, type RamDiscardSource } from './core/ram-discard-manager.js';
export { PageStateSource, type PreparedStateChange, type RangeState, type StateChangeResult } from './core/page-state-source.js';
export {
  HOST_PAGE_SIZE,
  RamBlockAttributes,
  type PageState,
  type RamBlockAttributesOptions,
} from './core/ram-block-attributes.js';
export { PlugState, type PlugStateOptions } from './core/plug-state.js';
export { CHUNK_PAGES, PageStateMap, type PageStateMapOptions, type PageStateMapStats } from './core/page-state-map.js';

// Trace events
export {
  TracePoint,
  TraceRegistry,
  expandFormat,
  trace,
  type TraceArg,
  type TraceParam,
  type TraceRecord,
  type TraceSink,
} from './core/trace.js';
export {
  traceRamBlockAttributesStateChange,
  traceRamDiscardManagerDiscardFailed,
  traceRamDiscardManagerRegister,
  traceRamDiscardManagerUnregister,
  traceRamDiscardManagerVeto,
} from './core/trace-events.js';

// Workloads
export { Rng } from './workload/rng.js';
export { CountingListener } from './workload/counting-listener.js';
export { cvmBootScenario, type ScenarioRequest, type CvmBootOptions, type Phase } from './workload/cvm-boot.js';
export { runTrackerDemo, type PhaseReport, type TrackerDemoReport } from './workload/tracker-demo.js';
