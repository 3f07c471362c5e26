import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/conformance/**/*.test.ts'],
          // Starts the real servers through the project's scripts (idempotent: reuses running ones).
          globalSetup: ['test/global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 240_000,
          // Two cores: server-backed files run one at a time so they do not starve each other.
          fileParallelism: false,
        },
      },
    ],
  },
});
