import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { DiskStore } from '../store/disk.js'
import { decodeEnvelope, encodeEnvelope, FLAG_ZSTD, type EnvelopeKind } from '../format/envelope.js'
import { decodeConfig, decodeManifest, encodeManifest, type FileRef, type Manifest, type RepoConfig } from '../format/manifest.js'
import { CatalogIndex, decodeCatalog, type Entry } from '../format/catalog.js'
import { decodeMaps, MapsIndex, type MapObject } from '../format/maps.js'
import { FormatError } from '../format/errors.js'
import { compressBuffer, decompressBuffer } from '../codec/zstd.js'
import { DEFAULT_HASH_ALG } from '../codec/hash.js'
import { BfsError } from './errors.js'

export const keys = {
  config: 'config',
  manifests: 'manifests',
  manifest: (id: number) => `manifests/gen-${String(id).padStart(8, '0')}`,
  genDir: (id: number) => `gens/${String(id).padStart(8, '0')}`,
  unit: (id: number, unit: number) => `gens/${String(id).padStart(8, '0')}/unit-${String(unit).padStart(8, '0')}`,
  catalog: (id: number) => `gens/${String(id).padStart(8, '0')}/catalog`,
  maps: (id: number) => `gens/${String(id).padStart(8, '0')}/maps`,
  hashes: (id: number) => `gens/${String(id).padStart(8, '0')}/hashes`,
}

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

const MANIFEST_RE = /^gen-(\d{8})$/

/**
 * An open repository. Readers need no lock: they only ever see committed generations
 * (those with a manifest), and committed files are never modified.
 */
export class Repository {
  private manifestCache = new Map<number, Manifest>()
  private catalogCache = new Map<number, Entry[]>()
  private mapsCache = new Map<number, MapObject[]>()
  private hashesCache = new Map<number, Buffer>()

  private constructor(
    readonly dir: string,
    readonly store: DiskStore,
    readonly config: RepoConfig,
  ) {}

  /** Creates an empty repository in `dir` (which may exist if empty). */
  static init(dir: string): Repository {
    const abs = path.resolve(dir)
    if (fs.existsSync(abs)) {
      const st = fs.statSync(abs)
      if (!st.isDirectory()) throw new BfsError('BAD_INPUT', `${abs} exists and is not a directory`)
      if (fs.existsSync(path.join(abs, keys.config))) throw new BfsError('EXISTS', `${abs} is already a bfs repository`)
      if (fs.readdirSync(abs).length > 0) throw new BfsError('BAD_INPUT', `${abs} is not empty; refusing to make it a repository`)
    }
    fs.mkdirSync(abs, { recursive: true, mode: 0o700 })
    const store = new DiskStore(abs)
    for (const d of ['manifests', 'gens', 'tmp']) store.mkdirp(d)
    const config: RepoConfig = {
      format: 1,
      repoId: randomBytes(16).toString('hex'),
      created: new Date().toISOString(),
      blockBytes: 4096,
      hashAlg: DEFAULT_HASH_ALG,
      compression: 'zstd',
    }
    // config is written last: a directory without it is not a repository yet.
    store.putSync(keys.config, [envelopeFor('config', Buffer.from(JSON.stringify(config)), false)])
    return new Repository(abs, store, config)
  }

  static open(dir: string): Repository {
    const abs = path.resolve(dir)
    const store = new DiskStore(abs)
    let raw: Buffer
    try {
      raw = store.readAll(keys.config)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new BfsError('NOT_A_REPO', `${abs} is not a bfs repository (no config file; create one with 'bfs init')`)
      throw new BfsError('IO', `cannot read ${store.path(keys.config)}: ${(err as Error).message}`)
    }
    const config = wrapFormat(() => decodeConfig(decodeEnvelope('config', raw, store.path(keys.config)).stored, store.path(keys.config)))
    return new Repository(abs, store, config)
  }

  /** Ids of committed generations, ascending. */
  generationIds(): number[] {
    const ids: number[] = []
    for (const k of this.store.list(keys.manifests)) {
      const m = MANIFEST_RE.exec(path.basename(k))
      if (m) ids.push(Number(m[1]))
    }
    return ids.sort((a, b) => a - b)
  }

  manifest(id: number): Manifest {
    let m = this.manifestCache.get(id)
    if (m) return m
    m = this.readMeta('manifest', keys.manifest(id), (p, what) => decodeManifest(p, what))
    if (m.id !== id) throw new BfsError('CORRUPT', `${this.store.path(keys.manifest(id))}: manifest names generation ${m.id}`)
    this.manifestCache.set(id, m)
    return m
  }

  generations(group?: string | null): Manifest[] {
    const all = this.generationIds().map((id) => this.manifest(id))
    return group === undefined ? all : all.filter((m) => m.group === group)
  }

  /**
   * Resolves `gen3`, `3`, `latest`, `latest~1` to a manifest. With a group, `latest`
   * counts only that group's chain.
   */
  resolve(ref: string, group?: string | null): Manifest {
    const gens = this.generations(group)
    const m = /^(?:gen)?(\d+)$/.exec(ref)
    if (m) {
      const id = Number(m[1])
      if (!this.generationIds().includes(id)) throw new BfsError('NO_SUCH_GEN', `no generation ${ref} in ${this.dir}`)
      return this.manifest(id)
    }
    const l = /^latest(?:~(\d+))?$/.exec(ref)
    if (l) {
      const back = l[1] ? Number(l[1]) : 0
      const g = gens[gens.length - 1 - back]
      if (!g) throw new BfsError('NO_SUCH_GEN', gens.length === 0 ? `no generations in ${this.dir} yet` : `${ref}: there are only ${gens.length} generations`)
      return g
    }
    throw new BfsError('BAD_INPUT', `'${ref}' is not a generation (use genN, N, latest or latest~K)`)
  }

  catalog(id: number): Entry[] {
    let c = this.catalogCache.get(id)
    if (c) return c
    const man = this.manifest(id)
    c = this.readMeta('catalog', keys.catalog(id), (p, what) => decodeCatalog(p, what), man.catalog)
    this.catalogCache.set(id, c)
    return c
  }

  /** The catalog as bytes plus an index, decoding entries on demand (not cached here: the mount keeps it). */
  catalogIndex(id: number): CatalogIndex {
    return this.readMeta('catalog', keys.catalog(id), (p, what) => new CatalogIndex(p, what), this.manifest(id).catalog)
  }

  /** Object `index` of gen `id`'s block maps (MapSource). */
  mapObject(id: number, index: number): MapObject | undefined {
    return this.maps(id)[index]
  }

  /** The block maps as bytes plus an index, decoding objects on demand (not cached here: the mount keeps it). */
  mapsIndex(id: number): MapsIndex {
    return this.readMeta('maps', keys.maps(id), (p, what) => new MapsIndex(p, what), this.manifest(id).maps)
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
    if (h.length !== man.streamBlocks * 8) throw new BfsError('CORRUPT', `${this.store.path(keys.hashes(id))}: has ${h.length / 8} hashes for ${man.streamBlocks} blocks`)
    this.hashesCache.set(id, h)
    return h
  }

  /** Reads a metadata file, checks it against the manifest's reference, decodes it. */
  private readMeta<T>(kind: EnvelopeKind, key: string, decode: (payload: Buffer, what: string) => T, ref?: FileRef): T {
    const what = this.store.path(key)
    let file: Buffer
    try {
      file = this.store.readAll(key)
    } catch (err) {
      throw new BfsError('CORRUPT', `${what}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
    }
    if (ref && (file.length !== ref.bytes || fileRef(file).sha256 !== ref.sha256)) throw new BfsError('CORRUPT', `${what}: does not match its manifest (corrupt or replaced)`)
    return wrapFormat(() => {
      const env = decodeEnvelope(kind, file, what)
      let payload = env.stored
      if (env.flags & FLAG_ZSTD) {
        try {
          payload = decompressBuffer(env.stored, env.rawBytes)
        } catch (err) {
          throw new FormatError('BAD_CHECKSUM', `${what}: cannot decompress (${(err as Error).message})`)
        }
      }
      return decode(payload, what)
    })
  }

  /** Writes a manifest: the commit point of generation m.id. */
  commitManifest(m: Manifest): void {
    const file = envelopeFor('manifest', encodeManifest(m), false)
    this.store.putSync(keys.manifest(m.id), [file])
    this.manifestCache.set(m.id, m)
  }
}

export function wrapFormat<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof FormatError) throw new BfsError('CORRUPT', err.message)
    throw err
  }
}
