/**
 * Many hosts, one repository (issue 18 item 3; format.md §2.20.3 "Many hosts"): 8 backups at
 * once from 4 hosts — each host a UTS namespace with its own hostname (`unshare -u`), so bfs
 * sees four machines: leases and run records name them, and a holder on another host is
 * judged by its lease's expiry, not by its pid — each host backing up two sources. Run ids are
 * claimed by conditional create: no two runs may collide, every backup must commit its own
 * generation, `generations --host` must list each host's, and each generation must equal its
 * source (`verify --against`), `verify --all` clean. Then all 8 again (incrementals: each
 * parent is its own host's and source's). On a local format 2 repository always; on S3 (a
 * real Ceph RGW, `make test-s3`) when S3_ENDPOINT is set, else skipped, saying so.
 */
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { S3Store } from '../src/store/s3.js'
import { BFS, bfs, sh, tmpdir, type Run } from './helpers.js'

const ENDPOINT = process.env.S3_ENDPOINT
const BUCKET = process.env.S3_BUCKET ?? 'bfs-test'
const s3env: Record<string, string> = ENDPOINT
  ? { AWS_ACCESS_KEY_ID: process.env.S3_ACCESS_KEY ?? process.env.AWS_ACCESS_KEY_ID ?? '', AWS_SECRET_ACCESS_KEY: process.env.S3_SECRET_KEY ?? process.env.AWS_SECRET_ACCESS_KEY ?? '' }
  : {}

const HOSTS = ['host-a', 'host-b', 'host-c', 'host-d']
const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/** `bfs args` as a process of host `host` (its own UTS namespace), with `env`. */
function onHost(host: string, args: string[], env: Record<string, string>): Promise<Run> {
  // each host stages its S3 uploads in its own spool, as separate machines would
  // (and keeps its own S3 read cache, not the user's ~/.cache/bfs)
  if (env.BFS_S3_SPOOL) env = { ...env, BFS_S3_SPOOL: path.join(env.BFS_S3_SPOOL, host), BFS_CACHE_DIR: path.join(env.BFS_S3_SPOOL, `${host}-cache`) }
  const vars = Object.entries(env).map(([k, v]) => `${k}=${q(v)}`).join(' ')
  return sh(`env ${vars} unshare -u sh -c 'hostname "$0" && exec "$@"' ${q(host)} ${q(BFS)} ${args.map(q).join(' ')}`)
}

function sources(work: string): Array<{ host: string; src: string }> {
  const out: Array<{ host: string; src: string }> = []
  for (const host of HOSTS) {
    for (const name of ['etc', 'srv']) {
      const src = path.join(work, host, name)
      fs.mkdirSync(path.join(src, 'sub'), { recursive: true })
      for (let i = 0; i < 20; i++) fs.writeFileSync(path.join(src, i % 3 ? `f${i}.txt` : `sub/f${i}.bin`), `${host} ${name} ${i}\n`.repeat(200 + i * 50))
      out.push({ host, src })
    }
  }
  return out
}

function manyHosts(label: string, repoOf: (work: string) => Promise<{ repo: string; env: Record<string, string>; cleanup: () => Promise<void> }>): void {
  describe(`many hosts, one repository: ${label}`, () => {
    let work: string
    let repo: string
    let env: Record<string, string>
    let cleanup: () => Promise<void> = async () => undefined
    let srcs: Array<{ host: string; src: string }>
    beforeAll(async () => {
      work = tmpdir('bfs-multihost-')
      ;({ repo, env, cleanup } = await repoOf(work))
      srcs = sources(work)
    })
    afterAll(async () => {
      await cleanup()
      fs.rmSync(work, { recursive: true, force: true })
    })

    const round = async (n: number): Promise<Array<{ host: string; src: string; id: number; parent: number }>> => {
      const runs = await Promise.all(srcs.map(({ host, src }) => onHost(host, ['backup', src, '--json'], { ...env, BFS_REPO: repo })))
      return runs.map((r, i) => {
        expect(r.code, `round ${n}, ${srcs[i]!.host} ${srcs[i]!.src}: ${r.stderr}`).toBe(0)
        const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { id: number; host: string; sources: Array<{ path: string; parent: number }> }
        expect(j.host).toBe(srcs[i]!.host)
        expect(j.sources.map((x) => x.path)).toEqual([srcs[i]!.src])
        return { ...srcs[i]!, id: j.id, parent: j.sources[0]!.parent }
      })
    }

    const check = async (gens: Array<{ host: string; src: string; id: number }>): Promise<void> => {
      const ids = gens.map((g) => g.id)
      expect(new Set(ids).size, `ids ${ids}`).toBe(ids.length)
      const all = JSON.parse((await bfs(['generations', '--json'], { repo, env })).stdout) as Array<{ id: number; host: string; source: string }>
      for (const g of gens) expect(all.find((x) => x.id === g.id), `gen${g.id}`).toMatchObject({ host: g.host, source: g.src })
      for (const host of HOSTS) {
        const mine = JSON.parse((await bfs(['generations', '--host', host, '--json'], { repo, env })).stdout) as Array<{ id: number; host: string }>
        expect(mine.map((x) => x.id).sort((a, b) => a - b)).toEqual(all.filter((x) => x.host === host).map((x) => x.id).sort((a, b) => a - b))
        expect(mine.map((x) => x.id)).toEqual(expect.arrayContaining(gens.filter((g) => g.host === host).map((g) => g.id)))
        expect(mine.length).toBeGreaterThanOrEqual(2)
      }
      for (const g of gens) {
        const v = await bfs(['verify', '--against', g.src, String(g.id)], { repo, env })
        expect(v.code, `gen${g.id} (${g.host} ${g.src}): ${v.stdout}${v.stderr}`).toBe(0)
      }
      const v = await bfs(['verify', '--all'], { repo, env })
      expect(v.code, v.stdout + v.stderr).toBe(0)
    }

    it('8 backups at once from 4 hosts: 8 generations, no collision, each equal to its source; again, incremental to each host\'s own', async () => {
      const first = await round(1)
      for (const g of first) expect(g.parent).toBe(0)
      await check(first)
      for (const { src } of srcs) fs.appendFileSync(path.join(src, 'f1.txt'), 'changed\n')
      const second = await round(2)
      for (const g of second) expect(g.parent, `${g.host} ${g.src}`).toBe(first.find((f) => f.src === g.src)!.id)
      await check(second)
      // every generation of both rounds is there, and none more
      const all = JSON.parse((await bfs(['generations', '--json'], { repo, env })).stdout) as Array<{ id: number }>
      expect(all.map((x) => x.id).sort((a, b) => a - b)).toEqual([...first, ...second].map((g) => g.id).sort((a, b) => a - b))
      // the first round still reads as it was (the sources have changed since: one difference each)
      const v = await bfs(['verify', '--against', first[0]!.src, String(first[0]!.id)], { repo, env })
      expect(v.stdout).toMatch(/^M f1\.txt: .*size/m)
    })
  })
}

manyHosts('local format 2', async (work) => {
  const repo = path.join(work, 'repo')
  const r = await bfs(['init', '--format', '2'], { repo })
  expect(r.code, r.stderr).toBe(0)
  return { repo, env: {}, cleanup: async () => undefined }
})

if (!ENDPOINT) {
  describe('many hosts, one repository: S3', () => {
    it.skip('SKIPPED: S3_ENDPOINT is not set (make test-s3 runs these against a local Ceph RGW)', () => undefined)
  })
} else {
  manyHosts('S3 (Ceph RGW)', async (work) => {
    const spool = path.join(work, 'spool')
    const repo = `s3:${ENDPOINT}/${BUCKET}/multihost${Date.now().toString(36)}${process.pid}`
    const env = { ...s3env, BFS_S3_SPOOL: spool, BFS_CACHE_DIR: path.join(work, 'cache') } // not the user's ~/.cache/bfs
    Object.assign(process.env, s3env)
    const store = S3Store.fromUrl(repo, { spoolDir: spool })
    await store.createBucket()
    const r = await bfs(['init', '--format', '2'], { repo, env })
    expect(r.code, r.stderr).toBe(0)
    return {
      repo,
      env,
      cleanup: async () => {
        await store.remove('', { recursive: true })
        store.close()
      },
    }
  })
}
