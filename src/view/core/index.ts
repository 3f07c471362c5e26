/**
 * The pure logic of computed views: exact numbers, retractable aggregations, window assignment,
 * event times and watermarks. No I/O: the runtime in src/view/ stores what these return.
 */
export type {
  AggValue,
  AggregationKind,
  AggregationOptions,
  Aggregator,
  CustomAggregation,
  JsonValue,
} from './aggregation.ts';
export { AGGREGATIONS, type AnyAggregator, aggregate, createAggregator } from './aggregations/index.ts';
export { ViewInputError, type ViewInputCode, ViewSpecError } from './errors.ts';
export {
  type Decimal,
  add as addDecimal,
  compare as compareDecimal,
  deserializeDecimal,
  serializeDecimal,
  toDecimal,
  toDecimalString,
  toNumber as decimalToNumber,
} from './exact.ts';
export { type EpochUnit, eventTimeMs, requireEventTimeMs } from './event-time.ts';
export { type SessionMerge, mergeSession } from './sessions.ts';
export {
  type SlidingRemoval,
  type SlidingWindowChange,
  slidingFetchRange,
  slidingWindowsOf,
  slidingWindowsOnAdd,
  slidingWindowsOnRemove,
} from './sliding.ts';
export {
  type GlobalTrigger,
  type TriggerState,
  type TriggerStep,
  newTriggerState,
  triggerOnChange,
  triggerOnTime,
  validateTrigger,
} from './trigger.ts';
export {
  type PartitionClock,
  type WatermarkOptions,
  heartbeat,
  isIdle,
  newPartitionClock,
  observe,
  partitionTimeMs,
  setCaughtUp,
  viewWatermark,
} from './watermark.ts';
export {
  GLOBAL_WINDOW,
  type TimeWindow,
  type WindowKind,
  type WindowSpec,
  assignWindows,
  isLate,
  lastEventMs,
  validateWindowSpec,
  windowClosed,
} from './windows.ts';
