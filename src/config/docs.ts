import { z } from 'zod';
import { builtinSinkKinds } from '../compose/sink-kinds.ts';
import { builtinTransformKinds } from '../compose/transform-kinds.ts';
import { stateSchema, viewSchema } from '../view/view-config.ts';

interface FieldDoc {
  readonly name: string;
  readonly type: string;
  readonly default: string;
  readonly description: string;
}

/** Peels optional/default/effects wrappers, keeping the first description and default found. */
function unwrap(schema: z.ZodTypeAny): { inner: z.ZodTypeAny; description: string | undefined; dflt: unknown; optional: boolean } {
  let description = schema.description;
  let dflt: unknown;
  let optional = false;
  let s = schema;
  for (;;) {
    if (s instanceof z.ZodDefault) {
      dflt = (s._def as { defaultValue: () => unknown }).defaultValue();
      s = s._def.innerType as z.ZodTypeAny;
    } else if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) {
      optional = true;
      s = s._def.innerType as z.ZodTypeAny;
    } else if (s instanceof z.ZodEffects) {
      s = s._def.schema as z.ZodTypeAny;
    } else break;
    description ??= s.description;
  }
  return { inner: s, description, dflt, optional };
}

function typeName(s: z.ZodTypeAny): string {
  if (s instanceof z.ZodString) return 'string';
  if (s instanceof z.ZodNumber) return 'number';
  if (s instanceof z.ZodBoolean) return 'boolean';
  if (s instanceof z.ZodEnum) return (s.options as string[]).map((o) => `\`${o}\``).join(' \\| ');
  if (s instanceof z.ZodLiteral) return `\`${String(s.value)}\``;
  if (s instanceof z.ZodArray) return `${typeName(unwrap(s.element as z.ZodTypeAny).inner)}[]`;
  if (s instanceof z.ZodRecord) return 'map';
  if (s instanceof z.ZodObject) return 'object';
  if (s instanceof z.ZodUnion || s instanceof z.ZodDiscriminatedUnion) {
    return (s.options as z.ZodTypeAny[]).map((o) => typeName(unwrap(o).inner)).join(' \\| ');
  }
  return 'value';
}

function objectShape(s: z.ZodTypeAny): Record<string, z.ZodTypeAny> | undefined {
  const inner = unwrap(s).inner;
  return inner instanceof z.ZodObject ? (inner.shape as Record<string, z.ZodTypeAny>) : undefined;
}

/** Fields of an object schema; nested objects are flattened as `parent.child`. */
export function describeFields(schema: z.ZodTypeAny, prefix = ''): FieldDoc[] {
  const shape = objectShape(schema);
  if (!shape) return [];
  const out: FieldDoc[] = [];
  for (const [name, field] of Object.entries(shape)) {
    const { inner, description, dflt, optional } = unwrap(field);
    const path = prefix + name;
    out.push({
      name: path,
      type: typeName(inner),
      default: dflt !== undefined ? `\`${JSON.stringify(dflt)}\`` : optional ? '' : 'required',
      description: (description ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' '),
    });
    if (inner instanceof z.ZodObject) out.push(...describeFields(inner, `${path}.`));
  }
  return out;
}

function table(fields: readonly FieldDoc[]): string {
  const rows = fields.map((f) => `| \`${f.name}\` | ${f.type} | ${f.default} | ${f.description} |`);
  return ['| option | type | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** The markdown reference of every built-in sink and transform kind. */
export function renderConfigDocs(): string {
  const parts: string[] = [];
  for (const [kind, factory] of Object.entries(builtinSinkKinds)) {
    parts.push(`#### Sink \`${kind}\`\n\n${table(describeFields(factory.configSchema as z.ZodTypeAny))}`);
  }
  for (const [kind, factory] of Object.entries(builtinTransformKinds)) {
    parts.push(`#### Transform \`${kind}\`\n\n${table(describeFields(factory.configSchema as z.ZodTypeAny))}`);
  }
  parts.push(`#### View (\`views.<name>\`)\n\n${table(describeFields(viewSchema))}`);
  parts.push(`#### View state (\`state\`)\n\n${table(describeFields(stateSchema))}`);
  return parts.join('\n\n');
}
