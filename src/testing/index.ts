// Test helpers (package entry `cdc-router/testing`): build events and Debezium records, run a handlers
// module or a whole config's routes and transforms into memory sinks, no servers.
export { changeEvent, type ChangeEventInput } from './change-event.ts';
export { envelope, envelopeRecord, type EnvelopeInput } from './envelope.ts';
export { createMemorySink, type MemorySink, type MemoryWrite } from './memory-sink.ts';
export { defineTests, type TestFileInput } from './test-file.ts';
export {
  createTestPipeline,
  runHandlers,
  type DeadLetter,
  type PipelineRun,
  type TestPipeline,
  type TestRecord,
} from './harness.ts';
