import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { DiskStore } from '../store/disk.js'
import { decodeEnvelope, encodeEnvelope, ENVELOPE_VERSION, FLAG_ZSTD, type EnvelopeKind } from '../format/envelope.js'
import { decodeConfig, decodeManifest, encodeManifest, type FileRef, type Manifest, type RepoConfig } from '../format/manifest.js'
import { CatalogIndex, decodeCatalog, type Entry } from '../format/catalog.js'
import { decodeMaps, MapsIndex, type Extent, type MapObject } from '../format/maps.js'
import { decodeGenBiLog, genBiOverlays, type GenBiLog } from '../format/bilog-gen.js'
import { FormatError } from '../format/errors.js'
import { compressBuffer, decompressBuffer, FrameDecompressor, rethrowUnavailable } from '../codec/zstd.js'
import { BLOCK_BYTES, DEFAULT_HASH_ALG, type HashAlg, UNENCRYPTED_SEED } from '../codec/hash.js'
import { BfsError } from './errors.js'
import { StoreError, syncOf, type SyncStore } from '../store/store.js'
import { BlockReader } from '../blocks/reader.js'
import { plainSource } from '../blocks/source.js'
import { keys, MARKER } from '../format/layout.js'

export { keys, MARKER }

/** Default repository: $BFS_REPO, else /var/lib/bfs for root, else $XDG_DATA_HOME/bfs. */
export function defaultRepoDir(env = process.env): string {
  if (env.BFS_REPO) return env.BFS_REPO
  if (process.getuid?.() === 0) return '/var/lib/bfs'
  const xdg = env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share')
  return path.join(xdg, 'bfs')
}

/** Encodes a metadata payload into its envelope (compressed when `compress`). */
export function envelopeFor(kind: EnvelopeKind, payload: Buffer, compress: boolean): Buffer {
  return compress ? encodeEnvelope(kind, FLAG_ZSTD, payload.length, compressBuffer(payload)) : encodeEnvelope(kind, 0, payload.length, payload)
}

export function fileRef(file: Buffer): FileRef {
  return { bytes: file.length, sha256: createHash('sha256').update(file).digest('hex') }
}

const MANIFEST_RE = /^gen-(\d{8,})$/
const GEN_DIR_RE = /^\d{8,}$/

/**
 * A generation that cannot be read: its manifest fails to read, decode or check, or it is
 * missing while the generation's data (gens/N) is there. Only that generation is affected.
 */
export interface DamagedGeneration {
  id: number
  kind: 'bad-manifest' | 'missing-manifest'
  /** One line: what is wrong, with the file's path. */
  problem: string
}

export interface ResolveOptions {
  /** Count only this group's chain (null: generations of no group). */
  group?: string | null
  /** `latest`/`latest~K` within this source (an absolute path); genN must be of it. */
  source?: string
  /** A path the command is about: `latest` is resolved within it when the repository holds generations of it. */
  sourceHint?: string
}

export interface Resolved {
  manifest: Manifest
  /** What the user should be told on stderr (which generation `latest` was, damaged ones skipped). */
  notes: string[]
}

/**
 * `bfs init`'s target, either format: absent, or an empty directory (EXISTS when it is a
 * repository already, its config key being the same in both formats). Returns it absolute.
 */
export function checkNewRepoDir(dir: string): string {
  const abs = path.resolve(dir)
  if (fs.existsSync(abs)) {
    if (!fs.statSync(abs).isDirectory()) throw new BfsError('BAD_INPUT', `${abs} exists and is not a directory`)
    if (DiskStore.open(abs).sync.hasSync(keys.config)) throw new BfsError('EXISTS', `${abs} is already a bfs repository`)
    if (fs.readdirSync(abs).length > 0) throw new BfsError('BAD_INPUT', `${abs} is not empty; refusing to make it a repository`)
  }
  return abs
}

/** Parses genN, N, latest, latest~K; anything else is a usage error. */
export function parseGenRef(ref: string): { id: number } | { back: number } {
  const m = /^(?:gen)?(\d+)$/.exec(ref)
  if (m && Number.isSafeInteger(Number(m[1]))) return { id: Number(m[1]) }
  const l = /^latest(?:~(\d+))?$/.exec(ref)
  if (l && Number.isSafeInteger(Number(l[1] ?? 0))) return { back: Number(l[1] ?? 0) }
  throw new BfsError('USAGE', `'${ref}' is not a generation (use genN, N, latest or latest~K)`)
}

/** Where the repository's settings came from when it was opened. */
export interface ConfigState {
  /** 'config': the file itself; 'copy': config-copy, config being damaged; 'inferred': neither was readable. */
  from: 'config' | 'copy' | 'inferred'
  /** What is wrong with config (and its copy) and how to repair it; null when config is sound. */
  problem: string | null
  /** config-copy is absent (a repository made before it existed): the next writer adds it. */
  copyMissing: boolean
  /** config-copy is present but damaged (config being sound). */
  copyProblem: string | null
}

/**
 * An open repository. Readers need no lock: they only ever see committed generations
 * (those with a manifest), and committed files are never modified.
 */
export class Repository {
  private manifestCache = new Map<number, Manifest>()
  private catalogCache = new Map<number, Entry[]>()
  private mapsCache = new Map<number, MapObject[]>()
  private hashesCache = new Map<number, Buffer>()
  /** Per generation, its BI log's overlays by object (null: the generation has no BI log). */
  private biCache = new Map<number, Map<number, Extent[]> | null>()
  /** Manifests that failed to read: a damaged generation stays damaged for this process. */
  private manifestErrors = new Map<number, BfsError>()

  private constructor(
    readonly dir: string,
    readonly store: DiskStore,
    readonly config: RepoConfig,
    readonly configState: ConfigState = { from: 'config', problem: null, copyMissing: false, copyProblem: null },
  ) {}

  /** Creates an empty repository in `dir` (which may exist if empty). */
  static init(dir: string): Repository {
    const abs = checkNewRepoDir(dir)
    const store = DiskStore.create(abs)
    for (const d of [keys.manifests, keys.gens, keys.tmp]) store.makePrefix(d)
    const config: RepoConfig = {
      format: 1,
      repoId: randomBytes(16).toString('hex'),
      created: new Date().toISOString(),
      blockBytes: 4096,
      hashAlg: DEFAULT_HASH_ALG,
      compression: 'zstd',
    }
    // The copy first, config last: a directory without config is not a repository yet.
    const file = envelopeFor('config', Buffer.from(JSON.stringify(config)), false)
    const meta = syncOf(store)
    meta.putSync(keys.configCopy, file)
    meta.putSync(keys.config, file)
    return new Repository(abs, store, config)
  }

  /**
   * Opens a repository. A damaged config does not take it down: its copy (config-copy) is
   * used, else the settings are inferred (see inferConfig); `warn` hears about it once.
   */
  static open(dir: string, warn?: (message: string) => void): Repository {
    const abs = path.resolve(dir)
    let store: DiskStore
    try {
      store = DiskStore.open(abs)
    } catch (err) {
      if (err instanceof StoreError && err.code === 'ENOENT') throw new BfsError('NOT_A_REPO', `${abs} is not a bfs repository (no config file; create one with 'bfs init')`)
      throw err
    }
    const main = readConfigFile(store, keys.config)
    if (main.config) {
      const state: ConfigState = { from: 'config', problem: null, copyMissing: false, copyProblem: null }
      // the copy is checked lazily (verify, and the next writer), not on every open
      return new Repository(abs, store, main.config, state)
    }
    const copy = readConfigFile(store, keys.configCopy)
    if (main.missing && copy.missing) throw new BfsError('NOT_A_REPO', `${abs} is not a bfs repository (no config file; create one with 'bfs init')`)
    // A repository of a later format: config says so, and its copy agrees (or there is none).
    // Never treated as damage: this bfs would write format 1 into it.
    const newer = main.newerVersion ?? (main.missing ? copy.newerVersion : undefined)
    if (newer !== undefined && (copy.newerVersion !== undefined || copy.missing)) {
      throw new BfsError('NOT_A_REPO', `${abs} is a bfs repository of format ${newer}; this bfs reads format ${ENVELOPE_VERSION}: use a newer bfs`)
    }
    const cfgPath = store.where(keys.config)
    const copyPath = store.where(keys.configCopy)
    const what = main.missing ? `${cfgPath} is missing` : `${main.problem}`
    if (copy.config) {
      const problem = `${what}; using its copy ${copyPath} (repair: cp ${copyPath} ${cfgPath})`
      warn?.(problem)
      return new Repository(abs, store, copy.config, { from: 'copy', problem, copyMissing: false, copyProblem: null })
    }
    const inferred = inferConfig(store)
    const problem = `${what}, and ${copy.missing ? 'there is no copy of it (config-copy: a repository made before copies were kept)' : copy.problem}; using settings inferred from the data (hashAlg ${inferred.config.hashAlg}${inferred.from ? `, checked against ${inferred.from}` : ': no data to infer it from, the default'}). Repair: put back config from a backup of this repository; until then bfs reads and writes it with these settings`
    warn?.(problem)
    return new Repository(abs, store, inferred.config, { from: 'inferred', problem, copyMissing: copy.missing, copyProblem: null })
  }

  /** A repository over `store` with given settings, for reading manifests before the settings are known. */
  static probe(store: DiskStore, config: RepoConfig): Repository {
    return new Repository(store.root, store, config)
  }

  /** The store's synchronous face: metadata (manifests, catalogs, maps, hashes, config) is read and written through it. */
  get meta(): SyncStore {
    return syncOf(this.store)
  }

  /** The state of config and config-copy, the copy read now (for verify and writers). */
  checkConfig(): ConfigState {
    const st = { ...this.configState }
    if (st.from !== 'config') return st
    const copy = readConfigFile(this.store, keys.configCopy)
    st.copyMissing = copy.missing
    st.copyProblem = copy.problem ?? null
    if (copy.config && JSON.stringify(copy.config) !== JSON.stringify(this.config)) {
      st.copyProblem = `${this.store.where(keys.configCopy)} differs from ${this.store.where(keys.config)}`
    }
    return st
  }

  /** Ids of committed generations (a manifest file exists, readable or not), ascending. */
  generationIds(): number[] {
    const ids: number[] = []
    for (const k of this.meta.listSync(keys.manifests)) {
      const m = MANIFEST_RE.exec(path.basename(k))
      if (m) ids.push(Number(m[1]))
    }
    return ids.sort((a, b) => a - b)
  }

  /** Ids of the generation directories gens/N, committed or not, ascending. */
  genDirIds(): number[] {
    const ids: number[] = []
    for (const k of this.meta.listSync(keys.gens)) {
      const n = path.basename(k)
      if (GEN_DIR_RE.test(n)) ids.push(Number(n))
    }
    return ids.sort((a, b) => a - b)
  }

  /** The id the next generation gets: above every manifest and every gens/N, so it never meets an orphan. */
  nextGenerationId(): number {
    return Math.max(0, ...this.generationIds(), ...this.genDirIds()) + 1
  }

  /**
   * What a gens/N without a manifest is. 'unfinished': a writer's generation in progress,
   * or what a crashed one left (recovery removes it): it carries the in-progress marker,
   * holds nothing but temporary files, or (written before the marker existed) lies above
   * every committed id and has no catalog, so no committed generation can refer into it
   * and it cannot be a committed one that lost its manifest. 'orphan': anything else,
   * most likely a committed generation whose manifest was lost: left alone, reported.
   */
  uncommittedState(id: number, newestCommitted = Math.max(0, ...this.generationIds())): 'unfinished' | 'orphan' {
    let names: string[]
    try {
      if (this.meta.hasSync(keys.genDir(id))) return 'orphan' // a file, not a directory: not a writer's
      // (temporary names are not listed: a gens/N holding only those lists as empty)
      names = this.meta.listSync(keys.genDir(id)).map((k) => path.basename(k))
    } catch {
      return 'orphan' // not a directory, or unreadable: not a writer's, so never removed
    }
    if (names.includes(MARKER)) return 'unfinished'
    if (names.length === 0) return 'unfinished'
    if (id > newestCommitted && !names.includes('catalog')) return 'unfinished'
    return 'orphan'
  }

  /** The manifest of gen `id`, or the error that makes it damaged (for a committed id). */
  private tryManifest(id: number): Manifest | BfsError {
    const bad = this.manifestErrors.get(id)
    if (bad) return bad
    try {
      return this.manifest(id)
    } catch (err) {
      if (!(err instanceof BfsError) || err.code !== 'CORRUPT') throw err
      this.manifestErrors.set(id, err)
      return err
    }
  }

  manifest(id: number): Manifest {
    let m = this.manifestCache.get(id)
    if (m) return m
    const bad = this.manifestErrors.get(id)
    if (bad) throw bad
    m = this.readMeta('manifest', keys.manifest(id), (p, what) => decodeManifest(p, what))
    if (m.id !== id) throw new BfsError('CORRUPT', `${this.store.where(keys.manifest(id))}: manifest names generation ${m.id}`)
    this.manifestCache.set(id, m)
    return m
  }

  /** Readable generations, ascending (damaged ones are left out: see damagedGenerations). */
  generations(group?: string | null): Manifest[] {
    const all: Manifest[] = []
    for (const id of this.generationIds()) {
      const m = this.tryManifest(id)
      if (!(m instanceof BfsError)) all.push(m)
    }
    return group === undefined ? all : all.filter((m) => m.group === group)
  }

  /**
   * Generations that cannot be read, ascending: a manifest that fails to read, decode or
   * check, and a gens/N that lost its manifest (an orphan; see uncommittedState).
   */
  damagedGenerations(): DamagedGeneration[] {
    const ids = this.generationIds()
    const out: DamagedGeneration[] = []
    for (const id of ids) {
      const m = this.tryManifest(id)
      if (m instanceof BfsError) out.push({ id, kind: 'bad-manifest', problem: m.message })
    }
    const committed = new Set(ids)
    const newest = Math.max(0, ...ids)
    for (const id of this.genDirIds()) {
      if (committed.has(id) || this.uncommittedState(id, newest) !== 'orphan') continue
      // committed since the manifests were listed (a writer unmarks gens/N only after its commit)
      if (this.meta.hasSync(keys.manifest(id))) continue
      out.push({ id, kind: 'missing-manifest', problem: `${this.store.where(keys.manifest(id))} is missing, but ${this.store.where(keys.genDir(id))} holds gen${id}'s data (a lost manifest; bfs leaves the data alone)` })
    }
    return out.sort((a, b) => a.id - b.id)
  }

  /** Ids a new generation may refer into: those whose manifest reads. */
  readableIds(): Set<number> {
    return new Set(this.generations().map((m) => m.id))
  }

  /** Resolves `gen3`, `3`, `latest`, `latest~1` to a manifest (see resolveRef). */
  resolve(ref: string, group?: string | null): Manifest {
    return this.resolveRef(ref, { group }).manifest
  }

  /**
   * Resolves `gen3`, `3`, `latest`, `latest~1`. `latest` counts readable generations only,
   * within opts.group's chain, and within a source: opts.source, else opts.sourceHint if
   * the repository holds generations of it; else all sources, and a note says which
   * generation and source it was when there are several. A damaged generation named
   * explicitly is a CORRUPT error; a malformed name a usage error.
   */
  resolveRef(ref: string, opts: ResolveOptions = {}): Resolved {
    const parsed = parseGenRef(ref)
    if ('id' in parsed) {
      const id = parsed.id
      if (this.generationIds().includes(id)) {
        const m = this.tryManifest(id)
        if (m instanceof BfsError) throw new BfsError('CORRUPT', `gen${id} is damaged: ${m.message}`)
        if (opts.source !== undefined && m.source !== opts.source) throw new BfsError('BAD_INPUT', `gen${id} is a generation of ${m.source}, not of ${opts.source}`)
        return { manifest: m, notes: [] }
      }
      const orphan = this.damagedGenerations().find((d) => d.id === id)
      if (orphan) throw new BfsError('CORRUPT', `gen${id} is damaged: ${orphan.problem}`)
      throw new BfsError('NO_SUCH_GEN', `no generation ${ref} in ${this.dir}`)
    }
    const back = parsed.back
    let gens = this.generations(opts.group)
    const sources = [...new Set(gens.map((m) => m.source))]
    let within: string | undefined
    if (opts.source !== undefined) {
      within = opts.source
      if (!sources.includes(within)) {
        throw new BfsError('NO_SUCH_GEN', `no generations of ${within} in ${this.dir}${sources.length ? ` (it holds generations of ${sources.slice(0, 4).join(', ')}${sources.length > 4 ? ', …' : ''})` : ''}`)
      }
    } else if (opts.sourceHint !== undefined && sources.includes(opts.sourceHint)) within = opts.sourceHint
    if (within !== undefined) gens = gens.filter((m) => m.source === within)
    const g = gens[gens.length - 1 - back]
    if (!g) {
      const of = within !== undefined ? ` of ${within}` : ''
      throw new BfsError('NO_SUCH_GEN', gens.length === 0 ? `no generations${of} in ${this.dir} yet` : `${ref}: there ${gens.length === 1 ? 'is only 1 generation' : `are only ${gens.length} generations`}${of}`)
    }
    const notes: string[] = []
    if (within === undefined && sources.length > 1) notes.push(`${ref} is gen${g.id} (${g.source}); the repository holds ${sources.length} sources, pick one with --source`)
    const skipped = this.damagedGenerations().filter((d) => d.id > g.id)
    if (skipped.length) {
      notes.push(`warning: ${ref} is gen${g.id}; ${skipped.map((d) => `gen${d.id}`).join(', ')} ${skipped.length > 1 ? 'are' : 'is'} damaged and ${skipped.length > 1 ? 'were' : 'was'} not considered (see bfs verify --all)`)
    }
    return { manifest: g, notes }
  }

  catalog(id: number): Entry[] {
    let c = this.catalogCache.get(id)
    if (c) return c
    const man = this.manifest(id)
    c = this.readMeta('catalog', keys.catalog(id), (p, what) => decodeCatalog(p, what), man.catalog)
    this.catalogCache.set(id, c)
    return c
  }

  /**
   * The catalog as bytes plus an index, decoding entries on demand (not cached here: the mount
   * keeps it). With `scratch` its bytes are decompressed into that buffer, reused from call to
   * call (bfs find reads one catalog after another: a fresh 5 MB buffer each time cost more in
   * page faults than the decompression); the index is then valid only until the next such call.
   */
  catalogIndex(id: number, scratch?: MetaScratch): CatalogIndex {
    return this.readMeta('catalog', keys.catalog(id), (p, what) => new CatalogIndex(p, what), this.manifest(id).catalog, scratch)
  }

  /** Object `index` of gen `id`'s block maps (MapSource). */
  mapObject(id: number, index: number): MapObject | undefined {
    return this.maps(id)[index]
  }

  /** The block maps as bytes plus an index, decoding objects on demand (not cached here: the mount keeps it). */
  mapsIndex(id: number): MapsIndex {
    return this.readMeta('maps', keys.maps(id), (p, what) => new MapsIndex(p, what), this.manifest(id).maps)
  }

  /** Generation `id`'s before-image log, decoded and checked (null when it has none). */
  biLog(id: number): GenBiLog | null {
    const man = this.manifest(id)
    if (!man.biLog) return null
    return this.readMeta('bilog', keys.bilog(id), (p, what) => decodeGenBiLog(p, what, id, Number.MAX_SAFE_INTEGER, man.streamBlocks), man.biLog)
  }

  /** The image extents gen `id`'s BI log lays over its object `index` (MapSource); undefined for none. */
  biOverlay(id: number, index: number): Extent[] | undefined {
    let o = this.biCache.get(id)
    if (o === undefined) {
      const log = this.biLog(id)
      o = log ? genBiOverlays(log) : null
      this.biCache.set(id, o)
    }
    return o?.get(index)
  }

  maps(id: number): MapObject[] {
    let o = this.mapsCache.get(id)
    if (o) return o
    o = this.readMeta('maps', keys.maps(id), (p, what) => decodeMaps(p, what), this.manifest(id).maps)
    this.mapsCache.set(id, o)
    return o
  }

  /** 8-byte block hashes of gen `id`'s stream, indexed by stream block. */
  hashes(id: number): Buffer {
    const hit = this.hashesCache.get(id)
    if (hit) return hit
    const man = this.manifest(id)
    const h = this.readMeta('hashes', keys.hashes(id), (p) => p, man.hashes)
    if (h.length !== man.streamBlocks * 8) throw new BfsError('CORRUPT', `${this.store.where(keys.hashes(id))}: has ${h.length / 8} hashes for ${man.streamBlocks} blocks`)
    this.hashesCache.set(id, h)
    return h
  }

  /** Reads a metadata file, checks it against the manifest's reference, decodes it. */
  private readMeta<T>(kind: EnvelopeKind, key: string, decode: (payload: Buffer, what: string) => T, ref?: FileRef, scratch?: MetaScratch): T {
    const what = this.store.where(key)
    let file: Buffer
    try {
      file = this.meta.getSync(key)
    } catch (err) {
      throw new BfsError('CORRUPT', `${what}: cannot read (${errnoOf(err) ?? (err as Error).message})`)
    }
    if (ref && (file.length !== ref.bytes || fileRef(file).sha256 !== ref.sha256)) throw new BfsError('CORRUPT', `${what}: does not match its manifest (corrupt or replaced)`)
    return wrapFormat(() => {
      const env = decodeEnvelope(kind, file, what)
      let payload = env.stored
      if (env.flags & FLAG_ZSTD) {
        try {
          if (scratch) {
            if (!scratch.buf || scratch.buf.length < env.rawBytes) scratch.buf = Buffer.allocUnsafe(Math.ceil(env.rawBytes * 1.25))
            payload = scratch.buf.subarray(0, env.rawBytes)
            const n = (scratch.dctx ??= new FrameDecompressor()).decompressInto(payload, env.stored)
            if (n !== env.rawBytes) throw new Error(`decompressed ${n} bytes, expected ${env.rawBytes}`)
          } else payload = decompressBuffer(env.stored, env.rawBytes)
        } catch (err) {
          rethrowUnavailable(err)
          throw new FormatError('BAD_CHECKSUM', `${what}: cannot decompress (${(err as Error).message})`)
        }
      }
      return decode(payload, what)
    })
  }

  /** Writes a manifest: the commit point of generation m.id. */
  commitManifest(m: Manifest): void {
    const file = envelopeFor('manifest', encodeManifest(m), false)
    this.meta.putSync(keys.manifest(m.id), file)
    this.manifestCache.set(m.id, m)
  }
}

/** A buffer (and decompression context) that metadata reads may reuse: see catalogIndex. */
export interface MetaScratch {
  buf?: Buffer
  dctx?: FrameDecompressor
}

/** config or config-copy: its settings, or that it is missing, or what is wrong with it. */
function readConfigFile(store: DiskStore, key: string): { config?: RepoConfig; missing: boolean; problem?: string; newerVersion?: number } {
  const what = store.where(key)
  let raw: Buffer
  try {
    raw = syncOf(store).getSync(key)
  } catch (err) {
    const code = errnoOf(err)
    if (code === 'ENOENT' || code === 'ENOTDIR') return { missing: true }
    if (code === 'EACCES' || code === 'EPERM') throw new BfsError('IO', `cannot read ${what}: ${(err as Error).message}`)
    return { missing: false, problem: `${what}: cannot read (${code ?? (err as Error).message})` }
  }
  try {
    return { config: decodeConfig(decodeEnvelope('config', raw, what).stored, what), missing: false }
  } catch (err) {
    if (!(err instanceof FormatError)) throw err
    // a config envelope of a later format version (or a flipped version byte: open() tells
    // them apart by the copy)
    const newer = err.code === 'BAD_VERSION' && raw.length >= 10 && raw.readUInt16LE(8) > ENVELOPE_VERSION ? raw.readUInt16LE(8) : undefined
    return { missing: false, problem: err.message, newerVersion: newer }
  }
}

/**
 * Settings of a repository whose config and copy are both unreadable. All but the block
 * hash are fixed in format 1; the hash algorithm is the one whose frame check matches
 * the first frame of the newest generation with data (both are tried).
 */
function inferConfig(store: DiskStore): { config: RepoConfig; from: string | null } {
  const config: RepoConfig = { format: 1, repoId: '', created: '', blockBytes: 4096, hashAlg: DEFAULT_HASH_ALG, compression: 'zstd' }
  const probe = Repository.probe(store, config)
  let tries = 0
  for (const m of probe.generations().reverse()) {
    if (m.units.length === 0 || tries++ >= 8) continue
    const geometry = { [m.id]: { unitBlocks: m.unitBlocks, frameBlocks: m.frameBlocks, unitRawBlocks: m.units.map((u) => u.rawBlocks) } }
    for (const alg of ['xxh64', 'sha256-64'] as HashAlg[]) {
      // frame 0 read with its frame check compared under `alg`: only the right one passes
      const reader = new BlockReader({ store, source: plainSource(geometry), hashAlg: alg, blockSeed: UNENCRYPTED_SEED, fullCheck: true, maxOpenUnits: 1 })
      try {
        reader.readSync(reader.file([{ fileBlock: 0, count: 1, gen: m.id, streamBlock: 0 }], BLOCK_BYTES), Buffer.allocUnsafe(BLOCK_BYTES), BLOCK_BYTES, 0)
        return { config: { ...config, hashAlg: alg }, from: `gen${m.id}'s data` }
      } catch {
        // the other algorithm, or a damaged unit: try an older generation
      } finally {
        void reader.close()
      }
    }
  }
  return { config, from: null }
}

/** The system error code behind a store's error (EACCES, EISDIR, …), else its own code. */
function errnoOf(err: unknown): string | undefined {
  if (err instanceof StoreError) return (err.cause as NodeJS.ErrnoException | undefined)?.code ?? err.code
  return (err as NodeJS.ErrnoException).code
}

export function wrapFormat<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof FormatError) throw new BfsError('CORRUPT', err.message)
    throw err
  }
}
