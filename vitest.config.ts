import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // Real backups, restores and FUSE mounts on a 2-core machine: generous, not timed assertions.
    // These only catch hangs. A test that takes 25 s on an idle machine took 180 s with the
    // machine at load 18 (stress-ng plus other suites), so the limits leave room for that.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    teardownTimeout: 600_000,
    // A child process per test file: a test worker never shares its event loop with another
    // loop with anything else, and the helpers never block that loop (test/helpers.ts).
    pool: 'forks',
    // Test files run one at a time: several FUSE servers and backups at once on 2 cores only add noise.
    fileParallelism: false,
    setupFiles: ['test/setup.ts'],
    // backup/restore/verify --json print status lines after a second (restic's JSON lines); the
    // tests that parse one summary document would then depend on the machine's speed. Off here
    // (NODE_ENV=test only); test/progress.test.ts and the terminal tests set it to 0.
    env: { BFS_TEST_PROGRESS_MS: '86400000' },
  },
})
