import type { ColumnSchema } from '../model/change-event.ts';

/*
 * TypeScript row types from the columns the decoder reports for a table (the Connect schema of its
 * change events, JSON-with-schema or Avro alike: both arrive here as the same ColumnSchema list).
 * Each column gets the type of the value the decoder puts in the row, in the names of the public
 * API (src/model/typed-event.ts): a pure function of the columns, so the mapping is tested alone.
 */

/** The value types of the public API a generated file may import. */
const API_TYPES = ['DateString', 'Decimal', 'Int64', 'Json', 'TimeString', 'TimestampString', 'Toastable'] as const;
type ApiType = (typeof API_TYPES)[number];

/** Connect semantic types the decoder converts, and the API type of what it makes of them. */
const SEMANTIC_TYPES: Readonly<Record<string, ApiType>> = {
  'org.apache.kafka.connect.data.Decimal': 'Decimal',
  'io.debezium.data.VariableScaleDecimal': 'Decimal',
  'io.debezium.time.Date': 'DateString',
  'org.apache.kafka.connect.data.Date': 'DateString',
  'io.debezium.time.Time': 'TimeString',
  'io.debezium.time.MicroTime': 'TimeString',
  'io.debezium.time.NanoTime': 'TimeString',
  'org.apache.kafka.connect.data.Time': 'TimeString',
  // Passed through as the connector's text.
  'io.debezium.time.ZonedTime': 'TimeString',
  'io.debezium.time.Timestamp': 'TimestampString',
  'io.debezium.time.MicroTimestamp': 'TimestampString',
  'io.debezium.time.NanoTimestamp': 'TimestampString',
  'org.apache.kafka.connect.data.Timestamp': 'TimestampString',
  'io.debezium.time.ZonedTimestamp': 'TimestampString',
  'io.debezium.data.Json': 'Json',
};

const ENUM = 'io.debezium.data.Enum';

/** Top-level column types whose value can be Debezium's unchanged-TOAST placeholder (see connect-schema.ts). */
const TOASTABLE = new Set(['string', 'bytes', 'array', 'map']);

export interface TableColumns {
  /** The table id routes use, e.g. `public.customers`. */
  readonly id: string;
  readonly columns: readonly ColumnSchema[];
  /** Where the columns were seen, for the interface's comment (e.g. `shop.public.customers`). */
  readonly topic?: string | undefined;
}

export interface RowTypesOptions {
  /** Module the value types are imported from. Default `cdc-router`. */
  readonly importFrom?: string;
}

class Emitter {
  readonly used = new Set<ApiType>();

  api(name: ApiType): string {
    this.used.add(name);
    return name;
  }

  /** The type of a column's non-null value as the decoder gives it. */
  value(column: ColumnSchema, indent: string): string {
    const semantic = column.semantic !== undefined ? SEMANTIC_TYPES[column.semantic] : undefined;
    if (semantic) return this.api(semantic);
    if (column.semantic === ENUM && column.type === 'string') {
      const allowed = column.parameters?.['allowed'];
      if (allowed) return allowed.split(',').map((v) => JSON.stringify(v)).join(' | ');
    }
    switch (column.type) {
      case 'int8':
      case 'int16':
      case 'int32':
      case 'float':
      case 'float32':
      case 'double':
      case 'float64':
        return 'number';
      case 'int64':
        return this.api('Int64');
      case 'boolean':
        return 'boolean';
      case 'string':
        return 'string';
      case 'bytes':
        // JsonConverter's base64 text; the decoder leaves it as it is.
        return 'string';
      case 'array':
        return column.items ? arrayOf(this.nullable(column.items, indent)) : 'unknown[]';
      case 'map':
        return this.map(column, indent);
      case 'struct':
        return column.fields ? this.struct(column.fields, indent) : 'Record<string, unknown>';
      default:
        return 'unknown';
    }
  }

  nullable(column: ColumnSchema, indent: string): string {
    const type = this.value(column, indent);
    return column.optional ? `${type} | null` : type;
  }

  map(column: ColumnSchema, indent: string): string {
    if (!column.keys || !column.values) return 'Record<string, unknown> | [unknown, unknown][]';
    const values = this.nullable(column.values, indent);
    if (column.keys.type === 'string') return `{ [key: string]: ${values} }`;
    return `[${this.value(column.keys, indent)}, ${values}][]`;
  }

  struct(fields: readonly ColumnSchema[], indent: string): string {
    if (fields.length === 0) return 'Record<string, never>';
    const inner = `${indent}  `;
    const lines = fields.map((f) => `${inner}${propertyName(f.name)}: ${this.nullable(f, inner)};`);
    return `{\n${lines.join('\n')}\n${indent}}`;
  }

  /** A top-level column: its value, the TOAST marker where the decoder can put one, null when optional. */
  column(column: ColumnSchema): string {
    let type = this.value(column, '  ');
    if (TOASTABLE.has(column.type)) type = `${this.api('Toastable')}<${type}>`;
    return column.optional ? `${type} | null` : type;
  }
}

/** `T[]`, with parentheses when T is a union. */
function arrayOf(element: string): string {
  return element.includes('|') ? `(${element})[]` : `${element}[]`;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function propertyName(name: string): string {
  return IDENTIFIER.test(name) ? name : JSON.stringify(name);
}

function pascal(text: string): string {
  return text
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join('');
}

const RESERVED = new Set<string>([...API_TYPES, 'Tables']);

/**
 * Interface names: the table's name in PascalCase (`public.order_items` → `OrderItems`), qualified by
 * its schema or database when two tables share a name, and kept clear of the imported type names.
 */
export function interfaceNames(ids: readonly string[]): Map<string, string> {
  const short = (id: string) => pascal(id.slice(id.lastIndexOf('.') + 1));
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(short(id), (counts.get(short(id)) ?? 0) + 1);
  const names = new Map<string, string>();
  const taken = new Set<string>();
  for (const id of ids) {
    let name = counts.get(short(id)) === 1 ? short(id) : pascal(id);
    if (!name || /^\d/.test(name)) name = `T${name}`;
    if (RESERVED.has(name)) name = `${name}Row`;
    const base = name;
    for (let i = 2; taken.has(name); i++) name = `${base}${i}`;
    taken.add(name);
    names.set(id, name);
  }
  return names;
}

/**
 * A TypeScript module with one interface per table (row type, as the decoder gives rows to
 * handlers) and `Tables`, the map from table id to row type that `defineHandlers<Tables>()` takes.
 * Tables in id order, columns in schema order: the same topics give the same text.
 */
export function renderRowTypes(tables: readonly TableColumns[], options: RowTypesOptions = {}): string {
  const sorted = [...tables].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const names = interfaceNames(sorted.map((t) => t.id));
  const emitter = new Emitter();
  const blocks = sorted.map((t) => {
    const lines = t.columns.map((c) => `  ${propertyName(c.name)}: ${emitter.column(c)};`);
    const seen = t.topic ? ` (topic ${t.topic})` : '';
    const body = lines.length > 0 ? `{\n${lines.join('\n')}\n}` : '{}';
    return `/** ${t.id}${seen} */\nexport interface ${names.get(t.id)!} ${body}\n`;
  });
  const map = sorted.map((t) => `  ${JSON.stringify(t.id)}: ${names.get(t.id)!};`);
  const imports = [...emitter.used].sort();
  const head = [
    '// Generated by `cdc-router types` from the schemas of the change events on the topics; do not edit.',
    ...(imports.length > 0 ? [`import type { ${imports.join(', ')} } from ${JSON.stringify(options.importFrom ?? 'cdc-router')};`] : []),
  ];
  const tablesBlock = `/** Row types by table id: \`defineHandlers<Tables>()({ tables: { … } })\`. */\nexport interface Tables {\n${map.join('\n')}\n}\n`;
  return `${head.join('\n')}\n\n${[...blocks, tablesBlock].join('\n')}`;
}
