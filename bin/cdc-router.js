#!/usr/bin/env node
// Runs the TypeScript sources through tsx so that user table handlers written in TypeScript
// (referenced from the config file) load without a separate build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
