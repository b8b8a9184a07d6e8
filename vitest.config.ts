import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // Real backups, restores and FUSE mounts on a 2-core machine: generous, not timed assertions.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    teardownTimeout: 180_000,
    // Child processes, one at a time: a test worker is never a thread that shares its event
    // loop with anything else, and the helpers never block that loop (test/helpers.ts).
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
    // Test files run one at a time: several FUSE servers and backups at once on 2 cores only add noise.
    fileParallelism: false,
    setupFiles: ['test/setup.ts'],
  },
})
