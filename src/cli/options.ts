import { z } from 'zod';
import { OffsetsRequestError } from '../consume/group-errors.ts';

/** Command-line values of the replay and offsets commands, checked once before anything connects. */
export const offsetOption = z
  .string()
  .regex(/^\d+$/, 'expected an offset (a non-negative integer)')
  .transform((s) => BigInt(s));

export const partitionOption = z
  .string()
  .regex(/^\d+$/, 'expected a partition number')
  .transform((s) => Number(s));

// A zone is required: a local time would mean different offsets on different machines.
export const timestampOption = z
  .string()
  .datetime({ offset: true, message: 'expected an ISO-8601 date-time with a zone, e.g. 2025-01-31T12:00:00Z' })
  .transform((s) => Date.parse(s));

const flag = (key: string | number | undefined) =>
  typeof key === 'string' ? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}` : 'options';

/** Parses commander's options; every problem is reported at once, by option name. */
export function parseOptions<S extends z.ZodTypeAny>(schema: S, raw: unknown): z.infer<S> {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data as z.infer<S>;
  const problems = parsed.error.issues.map((i) => `${flag(i.path[0])}: ${i.message}`);
  throw new OffsetsRequestError(problems.join('\n'), 'BAD_OPTIONS');
}

/** Exactly one of `keys` (or at most one, when optional) is set. */
export function oneOf(keys: readonly string[], optional = false) {
  return (value: Record<string, unknown>, ctx: z.RefinementCtx) => {
    const set = keys.filter((k) => value[k] !== undefined && value[k] !== false);
    const names = keys.map((k) => flag(k)).join(', ');
    if (set.length > 1) ctx.addIssue({ code: 'custom', path: [set[1]!], message: `use only one of ${names}` });
    else if (set.length === 0 && !optional) ctx.addIssue({ code: 'custom', path: [keys[0]!], message: `one of ${names} is required` });
  };
}
