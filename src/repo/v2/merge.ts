/**
 * `bfs merge genA..genB` on a format 2 repository (native-notes/format.md §2.20.5): the result
 * is generation B at revision r+1, with B's content, whose directory pieces are whole DIRs
 * (every DIRDELTA of B's tree folded into a DIR, so a directory read resolves in one piece),
 * written by a merge run M into `gens/M/pack-*`; then the generations A … B−1 are retired
 * (reason `merged-into`) as `bfs forget` retires them.
 *
 * Order (the caller holds the maintenance lock and a lease of kind `merge`):
 * 1. dead backup and merge runs recovered (§2.20.6), interrupted forgets/merges finished;
 * 2. run M claimed (`runs/M`, kind `merge`, `target` B);
 * 3. B's tree folded (fold): post-order, each directory re-encoded with its subdirectories'
 *    new refs; a directory or page whose piece is a DIR and whose entries did not change keeps
 *    its ref (nothing written), a DIRDELTA becomes a DIR, index nodes are reused when equal.
 *    File maps, the links table and every data block stay where they are;
 * 4. the last pack, `gens/M/` and `gens/` durable; the lease renewed and checked;
 * 5. `retired/gen-B-r<r>` [cond], reason `superseded` (protects readers of revision r);
 * 6. **`manifests/gen-B` replaced** (rev r+1, run M, `merged`) — the commit point;
 * 7. `runs/M` committed;
 * 8. A … B−1 retired and deleted (repo/v2/forget.ts retireGeneration).
 *
 * A crash before 6 leaves M running with a dead lease: recovery (recoverRuns2) deletes M's
 * superseded copy of B (its revision is still the current one), then gens/M, and marks it
 * aborted; B is untouched. A failure before 6 in this process does the same at once, unless
 * B's manifest does not read back (the replace may have landed): then nothing is deleted and
 * M stays running for recovery. A superseded copy of B's current revision left anyway (an
 * older bfs) is replaced by the next merge (fresh retiredAt) or forget of B. After 6,
 * rerunning the merge sees B already merged from A (its `merged.from` ≤ A) and only retires
 * what is left.
 *
 * Not built: `--relocate` (copying B's blocks that live in streams A … B−1 into stream M: the
 * data stays where it is), folding a BI overlay (a generation with one is refused; no format 2
 * backup writes BI yet).
 */
import os from 'node:os'
import { type Entry2, FileType } from '../../format/v2/dir.js'
import { keys2 } from '../../format/v2/layout.js'
import { type ManifestV2, type RunRecord, encodeManifestV2 } from '../../format/v2/records.js'
import { FormatError } from '../../format/errors.js'
import { PackWriter } from '../../pieces/packs.js'
import { PieceReader, isPieceFailure } from '../../pieces/reader.js'
import { type DirRef, TreeReader } from '../../pieces/tree-reader.js'
import { TreeWriter } from '../../pieces/tree-writer.js'
import { BfsError } from '../errors.js'
import { recoverRuns2 } from '../commit/generation2.js'
import { dropStaleSuperseded, finishInterrupted, retireGeneration, writeRetiredCopy } from './forget.js'
import type { Lease } from './lease.js'
import { type Repo2, envelope2 } from './repo2.js'

const MERGE_PIECE_CACHE = 16 << 20

export interface MergeOptions {
  from: number
  to: number
  /** The merge's own lease (named in runs/M). */
  lease: Lease
  signal?: AbortSignal
  /** Test hook / progress: called between steps with the step's name. */
  onStep?: (step: string) => void
}

export interface MergeOutcome {
  target: number
  from: number
  /** The merge run (null when B was already merged from A: only retirements were left). */
  run: number | null
  rev: number
  /** Generations retired (merged into B), ascending. */
  retired: number[]
  /** Forgets or merges a crash had interrupted, finished first. */
  finished: number[]
  fold: FoldStats
}

export interface FoldStats {
  /** Directories walked. */
  dirs: number
  /** DIR pieces written (whole directories and pages). */
  dirPieces: number
  /** DIRINDEX nodes written. */
  indexPieces: number
  /** Pieces kept where they were (a DIR or index node unchanged). */
  reused: number
  /** DIRDELTAs folded (pages or directories that were deltas). */
  deltasFolded: number
  /** Stored bytes of the pieces written. */
  pieceBytes: number
  packs: number
}

const sameSources = (a: ManifestV2, b: ManifestV2): boolean => a.sources.length === b.sources.length && a.sources.every((s, i) => s.path === b.sources[i]!.path)

/**
 * The committed generations of [from, to], checked: `to` committed and readable, every one of
 * the range readable and of the same host, group and set of source paths as `to` (a merge
 * never removes another source's generations). Returns the manifests, ascending.
 */
export function mergeRange(repo: Repo2, from: number, to: number): ManifestV2[] {
  if (from > to) throw new BfsError('USAGE', `gen${from}..gen${to}: the range ends before it starts`)
  const B = repo.manifest(to) // NO_SUCH_GEN, CORRUPT
  const out: ManifestV2[] = []
  for (const id of repo.generationIds()) {
    if (id < from || id > to) continue
    const m = id === to ? B : repo.manifest(id)
    const what = `gen${id} (${m.sources.map((s) => s.path).join(' ')}, host ${m.host}${m.group ? `, group ${m.group}` : ''})`
    if (!sameSources(m, B) || m.host !== B.host || m.group !== B.group) throw new BfsError('BAD_INPUT', `${what} is not of gen${to}'s source, host and group: merge takes a range of one backup chain; nothing was changed`)
    out.push(m)
  }
  return out
}

/** Whether B already is the result of merging from `from` (an earlier merge committed). */
export const alreadyMerged = (B: ManifestV2, from: number): boolean => !!B.merged && B.merged.from <= from

/**
 * Steps 1–8 (see the file comment). The caller holds the maintenance lock.
 */
export async function mergeGenerations(repo: Repo2, o: MergeOptions): Promise<MergeOutcome> {
  const step = (s: string): void => {
    if (o.signal?.aborted) throw new BfsError('INTERRUPTED', `merge interrupted (${s}); every generation is intact, and rerunning the merge finishes it`)
    o.onStep?.(s)
  }
  await recoverRuns2(repo)
  const finished = finishInterrupted(repo)
  const range = mergeRange(repo, o.from, o.to)
  let B = range[range.length - 1]!
  if (B.biLog || B.biIndex) throw new BfsError('BAD_INPUT', `gen${B.id} has a before-image log; merging such a generation is not built yet; nothing was changed`)
  const emptyFold: FoldStats = { dirs: 0, dirPieces: 0, indexPieces: 0, reused: 0, deltasFolded: 0, pieceBytes: 0, packs: 0 }
  let run: RunRecord | null = null
  let fold = emptyFold
  if (!alreadyMerged(B, o.from)) {
    run = repo.claimRun((n) => ({ run: n, kind: 'merge', state: 'running', host: os.hostname(), pid: process.pid, lease: o.lease.name, started: new Date().toISOString(), target: B.id }))
    const M = run.run
    let committed = false
    try {
      const packs = new PackWriter(repo.store, { run: M, packBytes: repo.config.defaults.packBytes, keys: repo.sealing })
      const pieces = new PieceReader(repo.store, { cacheBytes: MERGE_PIECE_CACHE, keys: repo.sealing })
      let folded: { rootEntry: Entry2; sources: ManifestV2['sources'] }
      try {
        const remember = new Set(B.sources.flatMap((s) => (s.rootEntry?.dir ? [dirKey(s.rootEntry.dir)] : [])))
        const f = new Folder(pieces, new TreeWriter(packs, pieces, { foldDeltas: true, xxh64: repo.pageCut }), () => step('fold'), remember)
        const rootEntry = await f.entry(B.rootEntry)
        const sources = []
        for (const s of B.sources) sources.push(s.rootEntry ? { ...s, rootEntry: await f.entry(s.rootEntry) } : { ...s })
        folded = { rootEntry, sources }
        const ps = await packs.finish()
        fold = { dirs: f.dirs, dirPieces: f.tree.stats.dirPieces, indexPieces: f.tree.stats.indexPieces, reused: f.tree.stats.reused, deltasFolded: f.tree.stats.deltasFolded, pieceBytes: ps.storedBytes, packs: ps.packs }
      } catch (err) {
        if (err instanceof FormatError || isPieceFailure(err)) throw new BfsError('CORRUPT', `gen${B.id}: ${(err as Error).message}; nothing was changed (bfs verify)`)
        throw err
      } finally {
        pieces.close()
      }
      if (fold.packs > 0) repo.sync.flushSync(keys2.gens) // gens/M is new (§2.20.2)
      step('packs written')
      await o.lease.renew()
      if (o.lease.lapsed()) throw new BfsError('IO', `the merge's lease ${o.lease.key} was not renewed in time; nothing was committed`)
      // step 5: the revision being replaced, retired (readers holding it keep it by their leases)
      const retiredBy = M
      writeRetiredCopy(repo, B.id, retiredBy, 'superseded')
      // B may not have changed meanwhile: we hold the maintenance lock, and only merge replaces manifests
      step('superseded')
      const next: ManifestV2 = {
        ...B,
        rev: B.rev + 1,
        run: M,
        rootEntry: folded.rootEntry,
        sources: folded.sources,
        biLog: null,
        biIndex: null,
        stream: null,
        merged: { from: Math.min(o.from, B.merged?.from ?? o.from), to: B.id, runs: [...new Set([...(B.merged?.runs ?? []), ...range.map((m) => m.id)])].sort((a, b) => a - b) },
        stats: { ...B.stats, mergeDirPieces: fold.dirPieces, mergeDeltasFolded: fold.deltasFolded, mergePieceBytes: fold.pieceBytes },
      }
      delete next.retired
      // step 6: the commit point
      repo.sync.putSync(keys2.manifest(B.id), repo.seal('manifest', keys2.manifest(B.id), encodeManifestV2(next)), { mode: 'replace' })
      committed = true
      B = next
      repo.putRun({ ...run, state: 'committed', ended: new Date().toISOString() }, 'replace')
      repo.sync.flushSync(keys2.runs)
      step('committed')
    } finally {
      if (!committed) {
        try {
          // recovery's rule: a replace that landed although it reported an error is a commit; a
          // manifest that does not read back decides nothing: gens/M and the running record stay
          // for recovery (which judges the run once this process is gone), as after a crash
          let cur: ManifestV2 | null = null
          try {
            cur = repo.manifest(B.id)
          } catch {
            cur = null
          }
          if (cur) {
            const landed = cur.run === M
            if (!landed) {
              dropStaleSuperseded(repo, cur, M)
              repo.sync.removeSync(keys2.genDir(M), { recursive: true })
            }
            repo.putRun({ ...run, state: landed ? 'committed' : 'aborted', ended: new Date().toISOString() }, 'replace')
          }
        } catch {
          // the next writer's recovery finishes it
        }
      }
    }
  }
  // step 8: A … B−1, retired as forget does (their data stays: prune reclaims what nothing needs)
  const retired: number[] = []
  const retiredBy = repo.highestId()
  for (const m of range) {
    if (m.id === B.id) continue
    step('retire')
    retireGeneration(repo, m.id, retiredBy, new Date(), 'merged-into')
    retired.push(m.id)
  }
  return { target: B.id, from: o.from, run: run?.run ?? null, rev: B.rev, retired, finished, fold }
}

const dirKey = (ref: DirRef): string => `${ref.child.id.toString('hex')}:${ref.entries}`

/**
 * Re-encodes a tree bottom-up through a TreeWriter that folds DIRDELTAs (see TreeWriter's
 * `foldDeltas`): each directory is written with its previous self as `prev`, so an unchanged
 * DIR page keeps its ref. Directories reached twice by the same piece (the same DirRef: a
 * multi-source root's source entries) are folded once.
 */
class Folder {
  dirs = 0
  private readonly reader: TreeReader
  private readonly memo = new Map<string, DirRef | null>()

  constructor(
    pieces: PieceReader,
    readonly tree: TreeWriter,
    private readonly tick: () => void,
    /** Directories (`id:entries`) to fold once however often they are reached (the sources' roots); the memo holds only these (P3). */
    private readonly remember: ReadonlySet<string> = new Set(),
  ) {
    this.reader = new TreeReader(pieces)
  }

  async entry(e: Entry2): Promise<Entry2> {
    if (e.type !== FileType.Dir || !e.dir) return e
    const dir = await this.dir(e.dir)
    return dir === e.dir ? e : { ...e, dir }
  }

  private async dir(ref: DirRef): Promise<DirRef | null> {
    const key = dirKey(ref)
    const known = this.memo.get(key)
    if (known !== undefined) return known
    this.tick()
    this.dirs++
    const w = this.tree.openDir(ref)
    for await (const page of this.reader.pages(ref, null)) {
      for (const e of page.entries) await w.add(await this.entry(e))
    }
    const out = await w.close()
    const same = out && out.child.run === ref.child.run && out.child.pack === ref.child.pack && out.child.offset === ref.child.offset && out.entries === ref.entries
    const res = same ? ref : out
    if (this.remember.has(key)) this.memo.set(key, res)
    return res
  }
}
