#!/usr/bin/env node
// tsx is registered in both cases so that user table handlers written in TypeScript (referenced from
// the config file) load without a build step. In this repository the CLI runs from its TypeScript
// sources; an installed package has only the compiled dist/ (package.json `files`).
import { existsSync } from 'node:fs';
import { register } from 'tsx/esm/api';

register();
const source = new URL('../src/cli/main.ts', import.meta.url);
await import(existsSync(source) ? source.href : new URL('../dist/src/cli/main.js', import.meta.url).href);
