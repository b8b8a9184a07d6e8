/**
 * Opening a tree's files for backup (src/repo/source.ts openTreeFile): a path that no longer
 * names a regular file — replaced since the scan by a symlink, a fifo, a directory — is an
 * error at once, never followed, never a hang.
 */
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openTreeFile } from '../src/repo/source.js'
import { tmpdir } from './helpers.js'

let work: string
beforeAll(() => {
  work = tmpdir('bfs-source-')
})
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

describe('openTreeFile', () => {
  it('opens a regular file; refuses a symlink (not followed), a fifo (no hang) and a directory', () => {
    const f = path.join(work, 'file')
    fs.writeFileSync(f, 'content\n')
    const fd = openTreeFile(Buffer.from(f))
    try {
      const b = Buffer.alloc(16)
      expect(b.subarray(0, fs.readSync(fd, b, 0, 16, 0)).toString()).toBe('content\n')
    } finally {
      fs.closeSync(fd)
    }
    fs.symlinkSync(f, path.join(work, 'link'))
    expect(() => openTreeFile(path.join(work, 'link'))).toThrow(expect.objectContaining({ code: 'ELOOP' }))
    execFileSync('mkfifo', [path.join(work, 'fifo')])
    expect(() => openTreeFile(path.join(work, 'fifo'))).toThrow(/no longer a regular file/)
    fs.mkdirSync(path.join(work, 'dir'))
    expect(() => openTreeFile(path.join(work, 'dir'))).toThrow(/no longer a regular file/)
    expect(() => openTreeFile(path.join(work, 'missing'))).toThrow(expect.objectContaining({ code: 'ENOENT' }))
  })
})
