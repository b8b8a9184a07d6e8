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

// This host's records of repository locations (src/repo/repo-records.ts, format.md §2.22.3) go
// to a directory of this test file, removed after it: else every test repository would leave
// a record in the real ~/.local/state/bfs.
const state = path.join('/var/tmp', `bfs-state-${randomBytes(6).toString('hex')}`)
process.env.BFS_STATE_DIR = state
afterAll(() => fs.rmSync(state, { recursive: true, force: true }))

// The capture engine's measurement switches (native-notes/bilog.md) change what the online
// tests check (e.g. BFS_BILOG_PREREAD=0: no small file read whole): none reaches the tests or
// the bfs processes they start.
for (const k of ['BFS_BILOG_PREREAD', 'BFS_BILOG_FOLLOW', 'BFS_BILOG_LISTENERS']) delete process.env[k]
