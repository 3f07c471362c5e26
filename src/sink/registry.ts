import { fileSink } from '../../connectors/file/file-sink.ts';
import type { SinkFactory } from './sink.ts';

/** Built-in sink kinds. Only the composition root (config resolution) imports this map. */
export const builtinSinkKinds = {
  file: fileSink,
} satisfies Record<string, SinkFactory>;
