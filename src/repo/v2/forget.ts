/**
 * `bfs forget` on a format 2 repository (native-notes/format.md §2.20.5): under the maintenance
 * lock, per generation N, `retired/gen-N-r<rev>` (exclusive create: the manifest's own JSON
 * plus retiredAt, retiredBy, reason `forget`), then `manifests/gen-N` deleted. Nothing else:
 * no unit, pack, stream or run record is touched, so every other generation (which may share
 * N's pieces and streams) reads as before; prune (issue 16, not built yet) reclaims the data.
 *
 * A crash between the two steps leaves both: N is still committed, and the next forget
 * finishes it first (`finishInterrupted`).
 */
import { keys2, RETIRED_RE } from '../../format/v2/layout.js'
import { decodeManifestV2, type ManifestV2 } from '../../format/v2/records.js'
import { FormatError } from '../../format/errors.js'
import { StoreError } from '../../store/store.js'
import { BfsError } from '../errors.js'
import { type Repo2, envelope2, payloadOf } from './repo2.js'
import { applyPolicy, type Policy, type TimeZone } from './retention.js'

/** What a group key may be made of (`--group-by`). */
export type GroupField = 'host' | 'source' | 'label'
export const GROUP_FIELDS: readonly GroupField[] = ['host', 'source', 'label']

export interface PlannedGen {
  id: number
  time: string
  host: string
  /** The source paths, space-separated (one source so far). */
  source: string
  label: string
  /** The group it was judged in (the `--group-by` fields' values). */
  group: Partial<Record<GroupField, string>>
  keep: boolean
  /** Why it is kept: the rules (`last`, `daily`, `oldest weekly`, `within 2d`), `damaged`, or `not named`. */
  reasons: string[]
}

export interface ForgetPlan {
  gens: PlannedGen[]
  /** Generations whose manifest does not read: never removed by a policy. */
  damaged: Array<{ id: number; problem: string }>
}

const sourceOf = (m: ManifestV2): string => m.sources.map((s) => s.path).join(' ')

function groupOf(m: ManifestV2, by: readonly GroupField[]): Partial<Record<GroupField, string>> {
  const g: Partial<Record<GroupField, string>> = {}
  for (const f of by) g[f] = f === 'host' ? m.host : f === 'source' ? sourceOf(m) : m.label
  return g
}

/** Applies a retention policy to every group of the committed generations (§ retention.ts); damaged ones are kept. */
export function planByPolicy(repo: Repo2, policy: Policy, by: readonly GroupField[], tz: TimeZone = 'local', exclude: ReadonlySet<number> = new Set()): ForgetPlan {
  const groups = new Map<string, ManifestV2[]>()
  const damaged: ForgetPlan['damaged'] = []
  for (const g of repo.generations()) {
    if (exclude.has(g.id)) continue // being forgotten (a dry run's interrupted forgets)
    if (!('manifest' in g)) {
      damaged.push({ id: g.id, problem: g.problem })
      continue
    }
    const key = JSON.stringify(by.map((f) => groupOf(g.manifest, [f])[f]))
    let list = groups.get(key)
    if (!list) groups.set(key, (list = []))
    list.push(g.manifest)
  }
  const gens: PlannedGen[] = []
  for (const list of groups.values()) {
    const byId = new Map(list.map((m) => [m.id, m]))
    for (const d of applyPolicy(list.map((m) => ({ id: m.id, timeMs: Date.parse(m.time) })), policy, tz)) {
      const m = byId.get(d.id)!
      gens.push({ id: m.id, time: m.time, host: m.host, source: sourceOf(m), label: m.label, group: groupOf(m, by), keep: d.keep, reasons: d.reasons })
    }
  }
  return { gens, damaged }
}

/** The named generations, to be removed (a damaged one is refused: its manifest cannot be copied to retired/ as it must). */
export function planByIds(repo: Repo2, ids: readonly number[]): ForgetPlan {
  const gens: PlannedGen[] = []
  for (const id of ids) {
    let m: ManifestV2
    try {
      m = repo.manifest(id)
    } catch (err) {
      if (err instanceof BfsError && err.code === 'CORRUPT') throw new BfsError('CORRUPT', `gen${id} is damaged (${err.message}); forget leaves it alone (bfs verify reports it)`)
      throw err
    }
    gens.push({ id, time: m.time, host: m.host, source: sourceOf(m), label: m.label, group: {}, keep: false, reasons: [] })
  }
  return { gens, damaged: [] }
}

/**
 * Forgets that a crash interrupted (§2.20.5): a `retired/gen-N-rR` of reason `forget` beside a
 * `manifests/gen-N` of the same revision. With `dryRun`, only says which; else deletes those
 * manifests. Returns their ids.
 */
export function finishInterrupted(repo: Repo2, dryRun = false): number[] {
  const done: number[] = []
  for (const k of repo.sync.listSync(keys2.retired)) {
    const m = RETIRED_RE.exec(k.slice(k.lastIndexOf('/') + 1))
    if (!m) continue
    const [id, rev] = [Number(m[1]), Number(m[2])]
    if (!repo.sync.hasSync(keys2.manifest(id))) continue
    const retired = readRetired(repo, k)
    // `merged-into`: bfs merge retires the generations before its target as forget does (§2.20.5)
    if (!retired || (retired.retired?.reason !== 'forget' && retired.retired?.reason !== 'merged-into') || retired.id !== id || retired.rev !== rev) continue
    let cur: ManifestV2
    try {
      cur = repo.manifest(id)
    } catch (err) {
      if (err instanceof BfsError) continue // a damaged manifest beside its retired copy: left for verify
      throw err
    }
    if (cur.rev !== rev) continue
    if (!dryRun) {
      repo.sync.removeSync(keys2.manifest(id))
      repo.sync.flushSync(keys2.manifests)
    }
    done.push(id)
  }
  return done
}

function readRetired(repo: Repo2, key: string): ManifestV2 | null {
  try {
    return decodeManifestV2(repo.unseal('manifest', key, repo.sync.getSync(key)), repo.store.where(key), true)
  } catch (err) {
    if (err instanceof FormatError || err instanceof StoreError) return null
    throw err
  }
}

/**
 * Retires generation `id` (the caller holds the maintenance lock): the retired copy [exclusive],
 * durable, then the manifest deleted, durable. The copy is the manifest's own JSON (fields this
 * bfs does not know are kept) with the retirement fields added. `reason`: `forget`, or
 * `merged-into` (bfs merge retiring the generations before its target).
 */
export function retireGeneration(repo: Repo2, id: number, retiredBy: number, now = new Date(), reason: 'forget' | 'merged-into' = 'forget'): void {
  writeRetiredCopy(repo, id, retiredBy, reason, now)
  repo.sync.removeSync(keys2.manifest(id))
  repo.sync.flushSync(keys2.manifests)
}

/**
 * The retired copy of generation `id`'s current manifest, `retired/gen-N-r<rev>` [exclusive],
 * made durable; the manifest is left in place. A copy of that revision already there with the
 * same reason (an interrupted forget or merge) counts as done; a `superseded` one (a merge that
 * did not commit: its revision is still the current one) is replaced. Returns the manifest copied.
 */
export function writeRetiredCopy(repo: Repo2, id: number, retiredBy: number, reason: 'forget' | 'merged-into' | 'superseded', now = new Date()): ManifestV2 {
  const key = keys2.manifest(id)
  let file: Buffer
  try {
    file = repo.sync.getSync(key)
  } catch (err) {
    if (err instanceof StoreError && err.code === 'ENOENT') throw new BfsError('NO_SUCH_GEN', `no generation ${id} in ${repo.dir}`)
    throw err
  }
  const payload = repo.unseal('manifest', key, file)
  let m: ManifestV2
  let json: Record<string, unknown>
  try {
    m = decodeManifestV2(payload, repo.store.where(key))
    json = JSON.parse(payload.toString('utf8')) as Record<string, unknown>
  } catch (err) {
    if (err instanceof FormatError) throw new BfsError('CORRUPT', `gen${id} is damaged (${err.message}); ${reason === 'forget' ? 'forget' : 'merge'} leaves it alone`)
    throw err
  }
  for (const f of ['retiredAt', 'retiredBy', 'reason']) delete json[f]
  const out = Buffer.from(JSON.stringify({ ...json, retiredAt: now.toISOString(), retiredBy, reason }), 'utf8')
  const where = repo.store.where(keys2.retiredManifest(id, m.rev))
  decodeManifestV2(out, where, true) // what a reader of retired/ will decode
  try {
    repo.sync.putSync(keys2.retiredManifest(id, m.rev), repo.seal('manifest', keys2.retiredManifest(id, m.rev), out), { mode: 'exclusive' })
  } catch (err) {
    // an earlier run retired this revision and died before the next step: finish it
    if (!(err instanceof StoreError && err.code === 'EEXIST')) throw err
    const prior = readRetired(repo, keys2.retiredManifest(id, m.rev))
    if (prior && prior.id === id && prior.rev === m.rev && prior.retired?.reason === 'superseded') {
      // a merge that did not commit left it (its revision is still the current one): it protects
      // nothing the manifest does not, and is rewritten — for a merge, with a fresh retiredAt,
      // so that readers which started after that merge died get prune's grace
      repo.sync.putSync(keys2.retiredManifest(id, m.rev), repo.seal('manifest', keys2.retiredManifest(id, m.rev), out), { mode: 'replace' })
    } else if (!prior || prior.retired?.reason !== reason) {
      throw new BfsError('CORRUPT', `${where} exists and is not a ${reason} copy of gen${id}; gen${id} is left alone`)
    }
  }
  // put fsynced retired/; its own entry in the top directory may be new (the first forget)
  repo.sync.flushSync('')
  return m
}

/**
 * A merge that did not commit (§2.20.6): its `superseded` copy of the target's revision that is
 * still the current one (`cur`, the manifest as read now), deleted — it is no retirement, and
 * left there it would block the next forget or merge of that generation. Only the copy of merge
 * run `run` (its retiredBy): another's may belong to a merge still running. Returns whether one
 * was deleted.
 */
export function dropStaleSuperseded(repo: Repo2, cur: ManifestV2, run: number): boolean {
  const key = keys2.retiredManifest(cur.id, cur.rev)
  if (!repo.sync.hasSync(key)) return false
  const copy = readRetired(repo, key)
  if (!copy || copy.id !== cur.id || copy.rev !== cur.rev || copy.retired?.reason !== 'superseded' || copy.retired.retiredBy !== run) return false
  repo.sync.removeSync(key)
  repo.sync.flushSync(keys2.retired)
  return true
}
