/**
 * The exit watchdog (native exitWatchdog; src/fuse/server.ts exitNow): a process whose exit
 * hangs is ended with the code given once the time is up; one that exits by itself exits as
 * it would have, without waiting for it.
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from './helpers.js'

const native = path.join(ROOT, 'dist', 'native', 'index.js')

function run(body: string): { status: number | null; ms: number } {
  const t = Date.now()
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { exitWatchdog } from ${JSON.stringify(native)}\n${body}`], { timeout: 120_000 })
  return { status: r.status, ms: Date.now() - t }
}

describe('exitWatchdog', () => {
  it('ends a process stuck after it was armed with the code given', () => {
    // stuck for good: Atomics.wait on a value that never changes
    const r = run('exitWatchdog(200, 7); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)')
    expect(r.status).toBe(7)
  })
  it('a process that exits by itself keeps its own code and does not wait for the watchdog', () => {
    const r = run('exitWatchdog(60_000, 7); process.exit(3)')
    expect(r.status).toBe(3)
    expect(r.ms).toBeLessThan(50_000) // (a bound far from the 60 s, not a timing assertion on speed)
  })
})
