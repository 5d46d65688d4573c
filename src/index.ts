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
export { attachDmaDevice, sharedHostAddress, type DmaDevice, type DmaDeviceOptions } from './workload/dma-device.js';
export {
  describeBoot,
  dmaBootRequests,
  dmaFuzzRequests,
  runDmaScenario,
  type DmaBootOptions,
  type DmaFuzzOptions,
  type DmaModel,
  type DmaScenarioOptions,
  type DmaScenarioResult,
} from './workload/dma-scenario.js';

// DMA mappings of assigned devices
export { DmaMapError } from './core/errors.js';
export { type DmaMapper, type DmaMapperEvent, type DmaMapperModelOptions, type DmaMapperStats, type DmaMapping } from './iommu/dma-mapper.js';
export { DEFAULT_DMA_ENTRY_LIMIT, VfioType1Model, type VfioType1Options } from './iommu/vfio-type1-model.js';
export { IommufdModel, type CutBehaviour, type IommufdOptions } from './iommu/iommufd-model.js';
export {
  DMA_STRATEGIES,
  DmaMappingListener,
  type DmaListenerStats,
  type DmaMappingListenerOptions,
  type DmaStrategy,
} from './iommu/dma-mapping-listener.js';
export { DmaChecker, type DmaCheckReport, type DmaCheckTarget } from './iommu/dma-checker.js';

// Backing stores
export { type BackingKind, type BackingStore, type HostMapping } from './backing/backing-store.js';
export { BackingLedger, type PagingPolicy } from './backing/ledger.js';
export { MemfdStore, type MemfdPages, type MemfdStoreOptions } from './backing/memfd-store.js';
export { GuestMemfdStore, type GuestMemfdStoreOptions } from './backing/guest-memfd-store.js';
export { SimulatedStore, type InjectedFailure, type SimulatedStoreOptions } from './backing/simulated-store.js';

// KVM: VMs, memslots, vCPUs and the loops that run them
export { Vm, type MemslotSpec, type VmOptions } from './kvm/vm.js';
export { type Memslot, type MemslotChange } from './kvm/memslot-rules.js';
export { VmRunner, type ExitDecision, type ExitHandler, type VcpuOutcome } from './kvm/vm-runner.js';
export { type ExitResponse, type VcpuExit } from './kvm/exits.js';

// The conversion path
export { ConversionError, InconsistentStateError, SystemCallError, type ConversionFailure } from './core/errors.js';
export {
  traceBackingDiscard,
  traceConversionRejected,
  traceConversionRollback,
  traceKvmConvertMemory,
  traceKvmHcMapGpaRange,
  traceKvmMemoryFault,
  traceMemslotRelayout,
} from './core/trace-events.js';
export { GuestMemory, RamBlock, type MemoryPiece, type MmioHole, type RamBlockOptions } from './conversion/guest-memory.js';
export {
  KVM_E2BIG,
  KVM_EFAULT,
  KVM_EINVAL,
  KVM_ENOSYS,
  KVM_EPERM,
  MAP_GPA_RANGE_ENCRYPTED,
  MAP_GPA_RANGE_PAGE_SZ_1G,
  MAP_GPA_RANGE_PAGE_SZ_2M,
  MEMORY_FAULT_FLAG_PRIVATE,
  apiRequest,
  decodeMapGpaRange,
  decodeMemoryFault,
  guestStatusOf,
  type ConversionRequest,
  type ConversionSource,
  type MapGpaRangeArgs,
  type MemoryFaultArgs,
} from './conversion/request.js';
export {
  AttributesPrivateMemory,
  SimulatedPrivateMemory,
  type AttributesVm,
  type InjectedKernelFailure,
  type PrivateMemory,
  type PrivateMemoryChange,
  type PrivateMemoryKind,
} from './conversion/private-memory.js';
export { MemslotPrivateMemory, type MemslotPrivateMemoryOptions, type MemslotTable } from './conversion/memslot-private-memory.js';
export {
  ConversionOrchestrator,
  type CommitFailure,
  type ConversionResult,
  type ErrorPolicy,
  type GranularityPolicy,
  type OrchestratorOptions,
  type StopEvent,
  type VcpuPauser,
} from './conversion/orchestrator.js';
export {
  CONVERSION_STEPS,
  SIZE_CLASSES,
  ConversionMetrics,
  type ConversionMetricsSnapshot,
  type ConversionStep,
  type LatencySummary,
  type SizeClass,
  type StoreHolding,
} from './conversion/metrics.js';
export { ConversionDoorbell, DOORBELL, DOORBELL_BYTES, DOORBELL_CONVERT, DOORBELL_ID, type DoorbellAction } from './conversion/doorbell.js';
export { GuestRequests, type FallbackHandler, type GuestRequestRecord, type GuestRequestsOptions, type VcpuRef } from './conversion/guest-requests.js';
export {
  CvmMemory,
  createCvmMemory,
  createSimulatedCvmMemory,
  type CvmOptions,
  type RamSpec,
  type RealCvmOptions,
  type SimulatedCvmOptions,
} from './conversion/cvm.js';

// Guests
export { GuestScript, SCRIPT_OP } from './guest/convert-guest.js';
export { CONVERSION_DOORBELL, GUEST_DONE, bootConvertGuest, convertGuestRequests, type ConvertGuest } from './guest/boot.js';
