/**
 * The `noop` sink kind for mode (c): acknowledges every record at once and writes nothing, so a run
 * measures the router without a store. Loaded through the config's `handlers:`, as every custom
 * sink kind is.
 */
import { z } from 'zod';
import { defineHandlers, defineSink, OK, type SinkResult } from '../src/index.ts';

const noopSink = defineSink({
  kind: 'noop',
  configSchema: z.object({}).strict(),
  create(name) {
    return {
      name,
      kind: 'noop',
      start: async () => undefined,
      close: async () => undefined,
      write: async (batch): Promise<readonly SinkResult[]> => batch.map(() => OK),
    };
  },
});

export default defineHandlers({ sinkKinds: { noop: noopSink } });
