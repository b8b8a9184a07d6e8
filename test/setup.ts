import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll } from 'vitest'

// Mount pid files and logs of a test file go to a directory of its own, removed after it
// (else every test run would leave its mounts' logs in /run/bfs). Named, not made: bfs makes
// it when a mount needs it, so a file whose tests are all skipped (its afterAll does not run)
// leaves nothing behind.
const dir = path.join('/var/tmp', `bfs-run-${randomBytes(6).toString('hex')}`)
process.env.BFS_RUNTIME_DIR = dir
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
