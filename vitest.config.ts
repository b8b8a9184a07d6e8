import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // Real backups, restores and FUSE mounts on a 2-core machine: generous, not timed assertions.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    teardownTimeout: 180_000,
    // A child process per test file: a test worker never shares its event loop with another
    // loop with anything else, and the helpers never block that loop (test/helpers.ts).
    pool: 'forks',
    // Test files run one at a time: several FUSE servers and backups at once on 2 cores only add noise.
    fileParallelism: false,
    setupFiles: ['test/setup.ts'],
  },
})
