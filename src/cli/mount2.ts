/**
 * `bfs mount GEN MOUNTPOINT` on a format 2 repository (issue 15 item 3): the lazy tree of
 * vfs/gen2.ts served by the same FUSE server as format 1's mount (background child, ready
 * pipe, pid file, signals, native reads); without GEN, every generation (Repo2Vfs: gen1/ …
 * genN/, latest, by-date/). Units on tape are read through the tiered store (--offline,
 * --recall-timeout, --buffer-cache) as on format 1's mount: `user.bfs.residency`, the
 * prefetch of a file's units at open, a close that gives up what only closed files' reads
 * wait for (vfs/tapereads.ts, shared with format 1), and the readahead over the tree
 * (`--tape-readahead`, vfs/treeahead2.ts: a walk over directory pieces after each open).
 */
import { askedPassphrase, openRepo2 } from './open2.js'
import { BfsError } from '../repo/errors.js'
import { Repo2 } from '../repo/v2/repo2.js'
import { readerLease } from '../repo/v2/lease.js'
import { pinName } from '../format/v2/records.js'
import { MOUNT_STAT_CACHE_ENTRIES, Repo2Vfs, Vfs2 } from '../vfs/gen2.js'
import { serveUntilUnmounted, startInBackground } from '../fuse/server.js'
import { canonical, checkMountpoint } from '../fuse/umount.js'
import { asBfsError } from './umount.js'
import path from 'node:path'
import { openReadStore2 } from './datastore.js'

function resolved<M>(r: { manifest: M; notes: string[] }, o: Record<string, unknown>): M {
  if (!o.quiet) for (const n of r.notes) process.stderr.write(`bfs: ${n}\n`)
  return r.manifest
}

export async function mountV2(dir: string, a: string, b: string | undefined, o: Record<string, unknown>): Promise<void> {
  const warn = (m: string): void => void process.stderr.write(`bfs: ${m}\n`)
  const repo = await openRepo2(dir, warn)
  // the serving process (--foreground, also the background child) holds a lease pinning what it
  // serves (format.md §2.20.4), taken before the manifests are listed; removed when it exits
  const lease = o.foreground ? readerLease(repo, 'mount') : null
  const mnt = canonical(b ?? a)
  // the server mounts the generation resolved here (a backup in between must not change what `latest` meant)
  // (repo.resolveRef as cli/v2.ts's resolve2, not imported from there: v2.js would bring the
  // whole format 2 command stack — backup, verify, restore, tape plans — into the mount's start)
  const man = b === undefined ? null : resolved(repo.resolveRef(a, { source: typeof o.source === 'string' ? path.resolve(o.source) : undefined }), o)
  const genRef = man ? `gen${man.id}` : null
  const what = man ? `gen${man.id}` : `repository ${repo.dir}`
  await asBfsError(() => checkMountpoint(mnt, repo.store.localRoots()))
  if (!o.foreground) {
    const args = ['--repo', repo.dir, 'mount', ...(genRef ? [genRef] : []), mnt, '--foreground', '--ready-fd', '3', '--cache-size', String(o.cacheSize), ...(o.readahead === undefined ? [] : ['--readahead', String(o.readahead)])]
    if (o.allowOther) args.push('--allow-other')
    if (o.nativeRead === false) args.push('--no-native-read')
    if (o.openUnits !== undefined) args.push('--open-units', String(o.openUnits))
    if (o.pieceCache !== undefined) args.push('--piece-cache', String(o.pieceCache))
    if (o.offline !== undefined) args.push('--offline', String(o.offline))
    if (o.recallTimeout !== undefined) args.push('--recall-timeout', String(o.recallTimeout))
    if (o.bufferCache !== undefined) args.push('--buffer-cache', String(o.bufferCache))
    if (o.tapeReadahead !== undefined) args.push('--tape-readahead', String(o.tapeReadahead))
    // a passphrase asked at the terminal goes to the child on its stdin (it has no terminal)
    const pass = repo.encrypted ? askedPassphrase : null
    const secret = pass === null ? {} : { input: `${pass}\n`, env: { ...process.env, BFS_PASSWORD_STDIN: '1' } }
    process.stdout.write(await asBfsError(() => startInBackground({ mountpoint: mnt, args, log: o.log as string | undefined, what, ...secret })))
    return
  }
  const pins = new Set<string>()
  // The pin is written while fuse-native loads and the mount is made, and has landed before
  // `ready` (bfs mount returns with its generation pinned). Until then the lease, taken
  // before the manifests were listed and without pins, protects every generation retired
  // after it started (format.md §2.20.4): the one served among them.
  const pinned = man ? lease?.setPins([pinName(man.id, man.rev)]) : undefined
  const onOpen = (m: { id: number; rev: number }): void => {
    pins.add(pinName(m.id, m.rev))
    void lease?.setPins([...pins])
  }
  const nativeReads = o.nativeRead !== false
  const cacheBytes = o.cacheSize as number
  // units on tape: read through the tiered store and the repository's recall service (format.md §2.18)
  const rs = await openReadStore2(repo, { cacheBytes: o.bufferCache as number | undefined, policy: { offline: o.offline as 'wait' | 'eio' | undefined, recallTimeoutMs: o.recallTimeout === undefined ? undefined : (o.recallTimeout as number) * 1000 } })
  // (units on local disk only: with a tiered store, a unit's open may wait for a recall)
  const openWaitsForUnit = nativeReads && !rs && repo.store.describe()?.kind === 'disk'
  const vo = { cacheBytes, readaheadFrames: o.readahead as number | undefined, nativeReads, maxOpenUnits: o.openUnits as number | undefined, pieceCacheBytes: o.pieceCache as number | undefined, openWaitsForUnit, tape: rs?.tiered ?? null, tapeReadaheadUnits: o.tapeReadahead as number | undefined }
  await asBfsError(() => serveUntilUnmounted(() => (man ? new Vfs2(repo, man, vo) : new Repo2Vfs(repo, { ...vo, onOpen })), {
    mountpoint: mnt,
    allowOther: !!o.allowOther,
    // the whole repository's root grows: failed lookups are not cached
    negativeTimeoutS: man ? 86400 : 0,
    fsname: `bfs:${repo.dir}${man ? `:gen${man.id}` : ''}`,
    debug: !!o.debug,
    nativeReadCacheBytes: nativeReads ? cacheBytes : 0,
    statCacheEntries: MOUNT_STAT_CACHE_ENTRIES,
    readyFd: o.readyFd as number | undefined,
    beforeReady: pinned,
    log: o.log as string | undefined,
    what,
    serving: `${man ? `gen${man.id}` : 'all generations'} of ${repo.dir} (format 2)`,
  })).finally(() => rs?.close())
}
