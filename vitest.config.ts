import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native work is CPU-bound on 2 cores: run test files one after another so timing-sensitive
    // tests (event-loop lag, RSS) are not disturbed by a neighbour's build or training run.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
