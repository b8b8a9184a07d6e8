import fs from 'node:fs'
import { afterAll } from 'vitest'

// Mount pid files and logs of a test file go to a directory of its own, removed after it
// (else every test run would leave its mounts' logs in /run/bfs).
const dir = fs.mkdtempSync('/var/tmp/bfs-run-')
process.env.BFS_RUNTIME_DIR = dir
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
