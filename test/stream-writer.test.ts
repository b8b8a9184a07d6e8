import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tmpdir } from './helpers.js'
// The compiled modules: the writer's worker threads load dist/repo/worker.js.
import { WorkerPool } from '../dist/repo/pool.js'
import { StreamWriter } from '../dist/repo/commit/stream.js'
import { DiskStore } from '../dist/store/disk.js'
import { FaultyStore } from '../dist/store/faulty.js'
import { BfsError } from '../dist/repo/errors.js'

let work: string
beforeAll(() => {
  work = tmpdir('bfs-stream-writer-')
})
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

/** Writes `units` full units of 16 blocks through a StreamWriter over `store`; the error finish() or reserve() threw, or null. */
async function writeUnits(store: unknown, units: number): Promise<unknown> {
  const pool = new WorkerPool(2)
  const w = new StreamWriter(store as never, pool, 1, 16, 4, 3, 'xxh64', 0n, false)
  try {
    for (let b = 0; b < units * 16; ) {
      const r = await w.reserve()
      r.buf.fill(b & 0xff, r.offsetBytes, r.offsetBytes + r.blocks * 4096)
      w.commit(r.blocks)
      b += r.blocks
    }
    await w.finish()
    return null
  } catch (err) {
    return err
  } finally {
    await pool.close()
  }
}

describe('StreamWriter over the store', () => {
  it('a unit the store fails to commit (EIO) is a write error that ends the backup (BfsError IO), not a read error of the source files', async () => {
    // Staged writes made every write failure a StoreError without a syscall, and the writer
    // passed it on unwrapped: backup's per-file catch then took it for a read error of every
    // remaining source file.
    const disk = DiskStore.create(path.join(work, 'eio'))
    const store = new FaultyStore(disk, { seed: 1, rules: [{ fault: 'EIO', ops: ['commitStaged'], keys: 'gens/**' }] })
    const err = await writeUnits(store, 3)
    expect(err).toBeInstanceOf(BfsError)
    expect((err as BfsError).code).toBe('IO')
    expect((err as Error).message).toContain('gens/00000001/unit-')
  })

  it('disk full passes as ENOSPC (the CLI says "disk full" and discards the generation)', async () => {
    const disk = DiskStore.create(path.join(work, 'nospc'))
    const store = new FaultyStore(disk, { seed: 1, rules: [{ fault: 'ENOSPC', ops: ['commitStaged'], keys: 'gens/**' }] })
    const err = await writeUnits(store, 2)
    expect(err).not.toBeInstanceOf(BfsError)
    expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC')
  })

  it('without faults every unit is committed', async () => {
    const disk = DiskStore.create(path.join(work, 'ok'))
    expect(await writeUnits(disk, 3)).toBe(null)
    expect(fs.readdirSync(path.join(work, 'ok', 'gens', '00000001')).filter((n) => n.startsWith('unit-')).length).toBe(3)
  })
})
