import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

// Dependencies run one way: contracts import no implementation, only the composition root imports
// the built-in connectors and transforms, only the CLI reaches the service and its own helpers.

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

/** The contract modules (repository paths): each imports only other contracts, and packages only as types. */
const CONTRACTS = new Set([
  'src/errors.ts',
  'src/model/change-event.ts',
  'src/model/position.ts',
  'src/model/typed-event.ts',
  'src/sink/sink.ts',
  'src/transform/transform.ts',
  'src/pipeline/contracts.ts',
]);

interface Import {
  readonly from: string;
  /** Repository path for a relative specifier, else the package name as written. */
  readonly target: string;
  readonly relative: boolean;
  readonly typeOnly: boolean;
  readonly line: number;
}

/** Every static import and re-export of a module, and each dynamic `import(...)`, as written. */
function importsOf(file: string, text: string): Import[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const found: Import[] = [];
  const add = (specifier: ts.Expression, typeOnly: boolean, node: ts.Node) => {
    if (!ts.isStringLiteralLike(specifier)) return;
    const spec = specifier.text;
    const isRelative = spec.startsWith('.');
    found.push({
      from: file,
      target: isRelative ? posix.normalize(posix.join(posix.dirname(file), spec)) : spec,
      relative: isRelative,
      typeOnly,
      line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1,
    });
  };
  const visit = (node: ts.Node): void => {
    // Only `import type` / `export type` vanish from the output: under verbatimModuleSyntax
    // `import { type X } from 'x'` still loads x, and a bare `import 'x'` runs it.
    if (ts.isImportDeclaration(node)) {
      add(node.moduleSpecifier, node.importClause?.isTypeOnly === true, node);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
      add(node.moduleSpecifier, node.isTypeOnly, node);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0]) {
      add(node.arguments[0], false, node);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal as ts.Expression, true, node);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** What breaks the one-way rule, one line each (`file:line: why`). */
function violations(files: ReadonlyMap<string, string>, contracts: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const [file, text] of files) {
    for (const imp of importsOf(file, text)) {
      const at = `${file}:${imp.line}: imports ${imp.target}`;
      if (contracts.has(file)) {
        if (imp.relative && !contracts.has(imp.target)) out.push(`${at}, which is not a contract (a contract imports only contracts)`);
        if (!imp.relative && !imp.typeOnly) out.push(`${at} for its values (a contract imports packages only as types)`);
      }
      const builtin = imp.target.startsWith('connectors/') || imp.target.startsWith('transforms/');
      if (builtin && !file.startsWith('src/compose/')) out.push(`${at} (only the composition root, src/compose/, imports built-in connectors and transforms)`);
      if (imp.target === 'src/service.ts' && !file.startsWith('src/cli/')) out.push(`${at} (the service is started by the CLI alone)`);
      if (imp.target.startsWith('src/cli/') && !file.startsWith('src/cli/')) out.push(`${at} (CLI helpers serve the CLI alone)`);
    }
  }
  return out;
}

function sourcesUnder(dir: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (abs: string) => {
    for (const entry of readdirSync(abs, { withFileTypes: true })) {
      const path = join(abs, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) files.set(relative(ROOT, path).split('\\').join('/'), readFileSync(path, 'utf8'));
    }
  };
  walk(join(ROOT, dir));
  return files;
}

describe('dependency direction', () => {
  const src = sourcesUnder('src');

  it('names contract modules that exist', () => {
    for (const file of CONTRACTS) expect(src.has(file), file).toBe(true);
  });

  it('holds in src/: contracts import only contracts, built-ins only from the composition root', () => {
    expect(violations(src, CONTRACTS)).toEqual([]);
  });

  it('reports each kind of violation, with file and line', () => {
    const files = new Map([
      [
        'src/sink/sink.ts',
        [
          "import type { CdcError } from '../errors.ts';",
          "import type { Route } from '../route/router.ts';",
          "import { z } from 'zod';",
          "import { type Logger } from 'pino';",
          "export type { Sink as S } from './other.ts';",
          "type P = import('../pipeline/batch-processor.ts').BatchOutcome;",
        ].join('\n'),
      ],
      ['src/errors.ts', ''],
      ['src/dlq/replay.ts', "import { postgresSink } from '../../connectors/postgres/postgres-sink.ts';\nimport { x } from '../service.ts';"],
      ['src/compose/sink-kinds.ts', "import { postgresSink } from '../../connectors/postgres/postgres-sink.ts';"],
      ['src/view/x.ts', "import { formatTable } from '../cli/table.ts';"],
      ['src/cli/main.ts', "import { startService } from '../service.ts';\nimport { formatTable } from './table.ts';"],
    ]);
    expect(violations(files, new Set(['src/sink/sink.ts', 'src/errors.ts']))).toEqual([
      'src/sink/sink.ts:2: imports src/route/router.ts, which is not a contract (a contract imports only contracts)',
      'src/sink/sink.ts:3: imports zod for its values (a contract imports packages only as types)',
      'src/sink/sink.ts:4: imports pino for its values (a contract imports packages only as types)',
      'src/sink/sink.ts:5: imports src/sink/other.ts, which is not a contract (a contract imports only contracts)',
      'src/sink/sink.ts:6: imports src/pipeline/batch-processor.ts, which is not a contract (a contract imports only contracts)',
      'src/dlq/replay.ts:1: imports connectors/postgres/postgres-sink.ts (only the composition root, src/compose/, imports built-in connectors and transforms)',
      'src/dlq/replay.ts:2: imports src/service.ts (the service is started by the CLI alone)',
      'src/view/x.ts:1: imports src/cli/table.ts (CLI helpers serve the CLI alone)',
    ]);
  });
});
