/**
 * A format 2 repository (native-notes/format.md "Format 2"): its store, its config, and the
 * small records every command reads (manifests, stream records, run records). Issue 15 step 1:
 * init, the streaming file backup (commit/generation2.ts, v2/backup2.ts) and a minimal reader
 * (v2/read2.ts) use it; leases, the v1 adapter and upgrade are not built yet
 * (native-notes/v2-backup.md).
 */
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { type ConfigV2, checkFeatures, decodeConfigV2, encodeConfigV2, newRepoDefaults } from '../../format/v2/config.js'
import { decodeEnvelope2, encodeEnvelope2, encodeEnvelope2Parts, type Envelope2Kind } from '../../format/v2/envelope.js'
import { MANIFEST2_RE, RUN_RE, keys2, logicalName } from '../../format/v2/layout.js'
import { type ManifestV2, type RunRecord, type StreamRecord, decodeManifestV2, decodeRunRecord, decodeStreamRecord, encodeRunRecord, guardLock } from '../../format/v2/records.js'
import { FormatError } from '../../format/errors.js'
import { DiskStore } from '../../store/disk.js'
import { storeAt } from '../../store/open.js'
import { isS3Url } from '../../store/s3-url.js'
import { StoreError, syncOf, type Store, type SyncStore } from '../../store/store.js'
import { BfsError } from '../errors.js'
import { checkNewRepoDir, parseGenRef } from '../repository.js'
import { testStore2 } from '../test-hooks.js'
import { type KdfParams, type NamedKind, type RepoKeys, SCRYPT_DEFAULTS, checkConfigMac, configMac, deriveRepoKeys, nameId, newMasterKey, objectKey } from '../../crypto/keys.js'
import { NONCE_TAG, newSalt, open as aeadOpen, seal as aeadSeal } from '../../crypto/aead.js'
import { openEnvelope, openHashes, sealEnvelope, sealHashes } from '../../crypto/envelope.js'
import type { AeadName } from '../../format/v2/keyfile.js'
import { addKey, unlock } from './keys.js'
import type { UnitSealing } from '../../blocks/units.js'
import type { TapeRepo, TapeSeal } from '../tiers.js'
import { UNENCRYPTED_SEED, pageCutHash } from '../../codec/hash.js'
import type { Xxh64Fn } from '../../format/v2/common.js'

/** An uncompressed, unencrypted envelope v2 around a JSON (or binary) payload. */
export function envelope2(kind: Envelope2Kind, payload: Buffer): Buffer {
  return encodeEnvelope2(kind, 0, payload.length, payload)
}

/** The payload of an unencrypted, uncompressed envelope v2 (what this step writes). */
export function payloadOf(kind: Envelope2Kind, file: Buffer, what: string): Buffer {
  const env = decodeEnvelope2(kind, file, what)
  if (env.flags !== 0) throw new FormatError('UNSUPPORTED_FEATURE', `${what}: compressed or encrypted ${kind} envelopes are not read by this bfs yet`)
  return env.stored
}

/** A format 2 repository as the tape tier's modules take it (a disk repository only). */
export function tapeRepoOf(repo: Repo2): TapeRepo & { config: { repoId: string } } {
  if (isS3Url(repo.dir)) throw new BfsError('BAD_INPUT', `${repo.dir} is on S3: a tape tier needs a repository on local disk`)
  // (a test layer may wrap the store: the tier's files are the directory's either way)
  const store = repo.store instanceof DiskStore ? repo.store : DiskStore.open(repo.dir)
  return { dir: repo.dir, store, config: repo.config, tapeSeal: tapeSealOf(repo) }
}

/**
 * How the repository's tier files and tape catalog records are sealed (format.md §2.18):
 * null when it is not encrypted; an encrypted one must be unlocked first (the catalog is
 * never read or written before: a programming error otherwise).
 */
export function tapeSealOf(repo: Repo2): TapeSeal | null {
  if (!repo.encrypted) return null
  if (!repo.unlocked) throw new Error(`${repo.dir}: the tape tier of an encrypted repository used before unlock()`)
  const keys = repo.keys
  return {
    seal: (kind, key, payload) => repo.seal(kind, key, payload),
    open: (kind, key, file) => repo.unseal(kind, key, file),
    // a tape file's header record (§2.18): salt ‖ AEAD(objKey(salt, "object"), nonce (0, 0), aad, list) ‖ tag
    tapeFile: {
      seal: (aad, plain) => {
        const salt = newSalt()
        return Buffer.concat([salt, aeadSeal(objectKey(keys, salt, 'object'), NONCE_TAG.envelope, 0, aad, plain)])
      },
      open: (aad, sealed, what) => {
        const salt = sealed.subarray(0, 32)
        if (salt.length < 32 || salt.every((x) => x === 0)) throw new FormatError('BAD_VALUE', `${what}: bad salt`)
        return aeadOpen(objectKey(keys, salt, 'object'), NONCE_TAG.envelope, 0, aad, sealed.subarray(32), what)
      },
    },
  }
}

/** Whether `keys/` holds anything (a missing `keys/` holds nothing). */
function hasKeyFiles(s: SyncStore): boolean {
  try {
    return s.listSync(keys2.keys).length > 0
  } catch (err) {
    if (err instanceof StoreError && err.code === 'ENOENT') return false
    throw err
  }
}

export class Repo2 {
  private readonly streams = new Map<number, StreamRecord>()

  private constructor(
    readonly dir: string,
    readonly store: Store,
    readonly config: ConfigV2,
    /** An unknown rocompat feature: no writer may run. */
    readonly readOnly: boolean,
  ) {}

  get sync(): SyncStore {
    return syncOf(this.store)
  }

  private dataStore: Store | null = null

  /**
   * The store units are read from: the repository's store, or — with units on tape — the
   * tiered store a reading command made its readers' (useData; format.md §2.18).
   */
  get data(): Store {
    return this.dataStore ?? this.store
  }

  /** Makes `s` the store every reader of units made from now on reads through (null: the repository's own). */
  useData(s: Store | null): void {
    this.dataStore = s
  }

  /**
   * `bfs init --format 2`: the guard lock first (format.md §2.23.1: a format 1 writer stops at
   * it, exit 5), then config-copy, then config (a directory without config is not a
   * repository yet). Features: `pieces` (incompat), and `v1-streams` (compat) because this
   * step's stream writer still writes format 1 unit files (§2.9 says a format 2 reader reads
   * both; see native-notes/v2-backup.md). Defaults: newRepoDefaults (`dedupMinBytes` 1024
   * unless given: `bfs init --dedup-min-bytes`).
   */
  static init(dir: string, o: { dedupMinBytes?: number } = {}): Repo2 {
    return Repo2.create(dir, null, o.dedupMinBytes)
  }

  /**
   * An encrypted format 2 repository (§2.21–2.22): `init` with the `encryption` feature, a
   * config with its MAC, and the first key file wrapping a new master key under `passphrase`.
   * The key file is written before the config (a directory without config is not a
   * repository yet. `bfs init --encrypt` calls it.
   */
  static async initEncrypted(dir: string, o: { passphrase: string | Buffer; aead?: AeadName; label?: string; scrypt?: KdfParams; noDedup?: boolean; dedupMinBytes?: number }): Promise<Repo2> {
    const aead = o.aead ?? 'aes-256-gcm'
    const masterKey = newMasterKey()
    return Repo2.create(dir, { aead, masterKey, noDedup: o.noDedup === true, addFirstKey: (store, repoId) => addKey(store, repoId, aead, masterKey, o.passphrase, { host: os.hostname(), user: os.userInfo().username, label: o.label ?? '' }, o.scrypt ?? SCRYPT_DEFAULTS) }, o.dedupMinBytes)
  }

  private static create<T extends Repo2 | Promise<Repo2>>(dir: string, enc: { aead: AeadName; masterKey: Buffer; noDedup: boolean; addFirstKey: (store: Store, repoId: string) => Promise<string> } | null, dedupMinBytes: number | undefined): T {
    // dedupMinBytes 1024 unless `init --dedup-min-bytes` (§2.7, §2.17: smaller files are not indexed); checked before anything is made
    const defaults = newRepoDefaults({ dedupMinBytes })
    let abs: string
    let store: Store
    if (isS3Url(dir)) {
      // an S3 prefix has no empty directories to make; it must hold no repository yet
      abs = dir
      store = storeAt(dir)
      if (syncOf(store).hasSync(keys2.config)) throw new BfsError('EXISTS', `${dir} is already a bfs repository`)
      if (syncOf(store).listSync('').length > 0) throw new BfsError('BAD_INPUT', `${dir} is not empty; refusing to make it a repository`)
    } else {
      abs = checkNewRepoDir(dir)
      const disk = DiskStore.create(abs)
      for (const d of [keys2.manifests, keys2.gens, keys2.runs, keys2.leases, keys2.locks, keys2.retired, keys2.tmp, ...(enc ? [keys2.keys] : [])]) disk.makePrefix(d)
      store = disk
    }
    const created = new Date().toISOString()
    const config: ConfigV2 = {
      format: 2,
      repoId: randomBytes(16).toString('hex'),
      created,
      blockBytes: 4096,
      hashAlg: 'xxh64',
      compression: 'zstd',
      // `init --encrypt --no-dedup`: the rocompat `no-dedup` (§2.7, §2.17): no content dedup, no index
      features: { incompat: enc ? ['pieces', 'encryption'] : ['pieces'], rocompat: enc?.noDedup ? ['no-dedup'] : [], compat: ['v1-streams'] },
      defaults,
      encryption: enc ? { aead: enc.aead, keys: `${keys2.keys}/` } : null,
      mac: null,
      extra: {},
    }
    const s = syncOf(store)
    s.putSync(keys2.guardLock, guardLock(created))
    const finish = (keys: RepoKeys | null): Repo2 => {
      const repo = new Repo2(abs, store, config, false)
      repo.repoKeys = keys
      const file = repo.configFile(config)
      s.putSync(keys2.configCopy, file)
      s.putSync(keys2.config, file)
      return repo
    }
    if (!enc) return finish(null) as T
    const keys = deriveRepoKeys(enc.masterKey, config.repoId, enc.aead)
    return enc.addFirstKey(store, config.repoId).then(
      () => (enc.masterKey.fill(0), finish(keys)),
      (err: unknown) => {
        enc.masterKey.fill(0)
        throw err
      },
    ) as T
  }

  /**
   * Whether backups dedup content across files (§2.17): not when the config's rocompat
   * features hold `no-dedup` (`init --encrypt --no-dedup`: no digest, lookup or index object).
   */
  get dedupContent(): boolean {
    return !this.config.features.rocompat.includes('no-dedup')
  }

  /** The repository's keys once unlocked (null: not encrypted, or not unlocked yet). */
  private repoKeys: RepoKeys | null = null

  /** Whether the repository is encrypted (its config has `encryption`; §2.22). */
  get encrypted(): boolean {
    return this.config.encryption !== null
  }

  /** The keys of an encrypted repository (unlock() first); a programming error otherwise. */
  get keys(): RepoKeys {
    if (!this.repoKeys) throw new Error(this.encrypted ? `${this.dir}: encrypted repository used before unlock()` : `${this.dir}: not encrypted`)
    return this.repoKeys
  }

  /** The keys for sealed packs, units and hashes: an encrypted repository's (unlocked), else undefined. */
  get sealing(): RepoKeys | undefined {
    return this.encrypted ? this.keys : undefined
  }

  /** What a unit reader needs of an encrypted repository's keys (null: not encrypted). */
  get unitSealing(): UnitSealing | null {
    return this.encrypted ? { aead: this.keys.aead, kEnc: this.keys.kEnc } : null
  }

  /**
   * The XXH64 seed of block hashes, frame checks, page cuts and BI record checks (format.md
   * §2.22): an encrypted repository's blockSeed (unlock() first), else UNENCRYPTED_SEED (0).
   * The one place a format 2 repository's seed comes from.
   */
  get blockSeed(): bigint {
    return this.encrypted ? this.keys.blockSeed : UNENCRYPTED_SEED
  }

  /** The page-cut hash of this repository's directory and identity-table pages (§2.13.5, §2.22). */
  get pageCut(): Xxh64Fn {
    return pageCutHash(this.blockSeed)
  }

  /** Whether the keys are there (an encrypted repository after unlock()). */
  get unlocked(): boolean {
    return this.repoKeys !== null
  }

  /**
   * Opens the master key with `passphrase` (the first key file it opens; PassphraseError, exit
   * 7, when none), derives the repository keys once and checks the config's MAC (a config that
   * does not check is damage, exit 6: §2.22's downgrade refusal). A no-op when not encrypted.
   */
  async unlock(passphrase: string | Buffer): Promise<void> {
    if (!this.encrypted || this.repoKeys) return
    ;(await this.unlockWithMaster(passphrase)).masterKey.fill(0)
  }

  /** unlock(), handing the master key and the key file that opened to the caller (bfs key add), who zeroes it. */
  async unlockWithMaster(passphrase: string | Buffer): Promise<{ keyId: string; masterKey: Buffer }> {
    if (!this.encrypted) throw new Error(`${this.dir}: not encrypted`)
    const { masterKey, keyId } = await unlock(this.store, this.config.repoId, passphrase)
    const keys = deriveRepoKeys(masterKey, this.config.repoId, this.config.encryption!.aead)
    // the MAC of the config this process read (config, or its copy when config does not read)
    try {
      checkConfigMac(keys, this.configPayload!, this.configWhere)
    } catch (err) {
      masterKey.fill(0)
      if (err instanceof FormatError) throw new BfsError('CORRUPT', err.message)
      throw err
    }
    this.repoKeys = keys
    return { keyId, masterKey }
  }

  /** The config payload this process read, and where (the MAC is checked over it). */
  private configPayload: Buffer | null = null
  private configWhere = ''

  /** The bytes of `config` (and `config-copy`) for `c`: with its MAC when encrypted. */
  configFile(c: ConfigV2): Buffer {
    if (c.encryption === null) return envelope2('config', encodeConfigV2({ ...c, mac: null }))
    const payload = encodeConfigV2({ ...c, mac: null })
    return envelope2('config', encodeConfigV2({ ...c, mac: configMac(this.keys, payload) }))
  }

  /** Decodes a config's bytes read now (features.ts re-reads it under the lock): its MAC checked when encrypted. */
  decodeConfig(file: Buffer, what: string): ConfigV2 {
    const payload = payloadOf('config', file, what)
    const c = decodeConfigV2(payload, what)
    if (c.encryption !== null || this.encrypted) checkConfigMac(this.keys, payload, what)
    return c
  }

  /**
   * An envelope object's bytes for store key `key` (§2.6): plain, or — encrypted repository —
   * sealed under a fresh salt with the key's logical name in its AAD (§2.22).
   */
  seal(kind: Envelope2Kind, key: string, payload: Buffer): Buffer {
    if (!this.encrypted) return envelope2(kind, payload)
    return sealEnvelope(this.keys, kind, logicalName(key), payload, payload.length)
  }

  /**
   * The object id that stands for a user-given name in an encrypted repository (§2.14.2: a
   * file group is `groups/<id>`, so its name is not an object name). Unlock first.
   */
  nameId(kind: NamedKind, name: string): string {
    return nameId(this.keys, kind, name)
  }

  /** A stream's hashes file (§2.10): plain, or sealed in chunks. */
  sealHashes(stream: number, hashes: Buffer): Buffer[] {
    // (plain: the header and the hashes themselves, not a copy of them: 8 MB at 1M blocks)
    return this.encrypted ? [sealHashes(this.keys, stream, hashes)] : encodeEnvelope2Parts('hashes', 0, hashes.length, [hashes])
  }

  /** The hashes of stream `stream`'s hashes file read as `file` (FormatError on damage). */
  unsealHashes(stream: number, file: Buffer): Buffer {
    const what = this.store.where(keys2.hashes(stream))
    return this.encrypted ? openHashes(this.keys, stream, file, what) : payloadOf('hashes', file, what)
  }

  /**
   * The payload of envelope object `key` read as `file`: checked (plain), or authenticated and
   * decrypted (encrypted; a plain envelope there is refused as damage, §2.22). FormatError
   * on damage, as payloadOf.
   */
  unseal(kind: Envelope2Kind, key: string, file: Buffer): Buffer {
    const what = this.store.where(key)
    if (!this.encrypted) return payloadOf(kind, file, what)
    const o = openEnvelope(this.keys, kind, logicalName(key), file, what)
    if (o.compressed) throw new FormatError('UNSUPPORTED_FEATURE', `${what}: compressed encrypted ${kind} envelopes are not read by this bfs yet`)
    return o.stored
  }

  /** Opens a format 2 repository; its config's features are checked (§2.7). */
  static open(dir: string, warn?: (m: string) => void): Repo2 {
    const abs = isS3Url(dir) ? dir : path.resolve(dir)
    const store = testStore2(storeAt(abs))
    const s = syncOf(store)
    let config: ConfigV2 | null = null
    let payload: Buffer | null = null
    let where = ''
    let problem = ''
    for (const key of [keys2.config, keys2.configCopy]) {
      try {
        payload = payloadOf('config', s.getSync(key), store.where(key))
        where = store.where(key)
        config = decodeConfigV2(payload, store.where(key))
        if (key === keys2.configCopy) warn?.(`${problem}; using its copy ${store.where(key)}`)
        break
      } catch (err) {
        if (!(err instanceof FormatError) && !(err instanceof StoreError)) throw err
        problem ||= err.message
      }
    }
    if (!config) throw new BfsError('CORRUPT', `${problem}, and its copy cannot be read either`)
    let access
    try {
      access = checkFeatures(config, store.where(keys2.config))
    } catch (err) {
      if (err instanceof FormatError) throw new BfsError('CORRUPT', err.message)
      throw err
    }
    // §2.22 downgrade refusal: a repository with key files is encrypted, whatever its config says
    if (config.encryption === null && hasKeyFiles(s)) throw new BfsError('CORRUPT', `${store.where(keys2.config)}: says the repository is not encrypted, but it has key files in ${store.where(keys2.keys)} (a tampered config: refused)`)
    if (process.env.BFS_REQUIRE_ENCRYPTION === '1' && config.encryption === null) throw new BfsError('BAD_INPUT', `${abs}: not an encrypted repository, and BFS_REQUIRE_ENCRYPTION=1 refuses unencrypted ones`)
    const repo = new Repo2(abs, store, config, access.readOnly)
    repo.configPayload = payload
    repo.configWhere = where
    return repo
  }

  /** Names (the last key component) of the direct children of a prefix. */
  private names(prefix: string): string[] {
    return this.sync.listSync(prefix).map((k) => k.slice(k.lastIndexOf('/') + 1))
  }

  /** Ids of the committed generations, ascending. */
  generationIds(): number[] {
    return this.names(keys2.manifests).map((n) => MANIFEST2_RE.exec(n)).filter((m): m is RegExpExecArray => !!m).map((m) => Number(m[1])).sort((a, b) => a - b)
  }

  manifest(id: number): ManifestV2 {
    const key = keys2.manifest(id)
    let file: Buffer
    try {
      file = this.sync.getSync(key)
    } catch (err) {
      if (err instanceof StoreError && err.code === 'ENOENT') throw new BfsError('NO_SUCH_GEN', `no generation ${id} in ${this.dir}`)
      throw err
    }
    try {
      return decodeManifestV2(this.unseal('manifest', key, file), this.store.where(key))
    } catch (err) {
      if (err instanceof FormatError) throw new BfsError('CORRUPT', err.message)
      throw err
    }
  }

  /**
   * Committed generations, ascending, each its manifest or, when it does not read, the
   * problem (§2.20.10: a damaged manifest makes only its generation damaged).
   */
  generations(): Array<{ id: number; manifest: ManifestV2 } | { id: number; problem: string }> {
    return this.generationIds().map((id) => {
      try {
        return { id, manifest: this.manifest(id) }
      } catch (err) {
        if (!(err instanceof BfsError) || err.code !== 'CORRUPT') throw err
        return { id, problem: err.message }
      }
    })
  }

  /**
   * `N`, `genN`, `latest` or `latest~K` (format 1's names, parseGenRef: anything else is a
   * usage error). `latest` counts the generations whose manifest reads (§2.20.10), of
   * `source` when given; a generation named by number must be of it.
   */
  resolve(ref: string, source?: string): ManifestV2 {
    return this.resolveRef(ref, { source }).manifest
  }

  /**
   * resolve() with format 1's notes (Repository.resolveRef): a bare `latest` is within
   * `sourceHint` when the repository holds generations of it (a path argument); else, with
   * several sources, a note says which generation and source it took; and a warning names the
   * damaged generations newer than the one taken (not considered).
   */
  resolveRef(ref: string, opts: { source?: string; sourceHint?: string } = {}): { manifest: ManifestV2; notes: string[] } {
    const parsed = parseGenRef(ref)
    if ('id' in parsed) return { manifest: this.resolveOne(ref, opts.source), notes: [] }
    const all = this.generations()
    const sources = [...new Set(all.flatMap((g) => ('manifest' in g ? [g.manifest.sources[0]?.path ?? ''] : [])))]
    if (opts.source !== undefined && !sources.includes(opts.source)) {
      throw new BfsError('NO_SUCH_GEN', `no generations of ${opts.source} in ${this.dir}${sources.length ? ` (it holds generations of ${sources.slice(0, 4).join(', ')}${sources.length > 4 ? ', …' : ''})` : ''}`)
    }
    const within = opts.source ?? (opts.sourceHint !== undefined && sources.includes(opts.sourceHint) ? opts.sourceHint : undefined)
    // the manifests just read (each read and decoded once per resolve, not twice)
    const m = this.resolveOne(ref, within, all)
    const notes: string[] = []
    if (within === undefined && sources.length > 1) notes.push(`${ref} is gen${m.id} (${m.sources[0]?.path}); the repository holds ${sources.length} sources, pick one with --source`)
    const skipped = all.filter((g) => 'problem' in g && g.id > m.id)
    if (skipped.length) notes.push(`warning: ${ref} is gen${m.id}; ${skipped.map((d) => `gen${d.id}`).join(', ')} ${skipped.length > 1 ? 'are' : 'is'} damaged and ${skipped.length > 1 ? 'were' : 'was'} not considered (see bfs verify --all)`)
    return { manifest: m, notes }
  }

  private resolveOne(ref: string, source?: string, all?: ReturnType<Repo2['generations']>): ManifestV2 {
    const parsed = parseGenRef(ref)
    if ('id' in parsed) {
      let m: ManifestV2
      try {
        m = this.manifest(parsed.id)
      } catch (err) {
        // named as the user wrote it (`gen99` or `99`), as format 1 does
        if (err instanceof BfsError && err.code === 'NO_SUCH_GEN') throw new BfsError('NO_SUCH_GEN', `no generation ${ref} in ${this.dir}`)
        throw err
      }
      if (source !== undefined && m.sources[0]?.path !== source) throw new BfsError('BAD_INPUT', `gen${m.id} is a generation of ${m.sources[0]?.path}, not of ${source}`)
      return m
    }
    const gens = (all ?? this.generations()).flatMap((g) => ('manifest' in g && (source === undefined || g.manifest.sources[0]?.path === source) ? [g.manifest] : []))
    const m = gens[gens.length - 1 - parsed.back]
    if (!m) throw new BfsError('NO_SUCH_GEN', `no generation ${ref}${source !== undefined ? ` of ${source}` : ''} in ${this.dir}`)
    return m
  }

  /** The stream record of run `n` (cached: immutable). */
  stream(n: number): StreamRecord {
    let r = this.streams.get(n)
    if (!r) {
      const key = keys2.stream(n)
      try {
        r = decodeStreamRecord(this.unseal('stream', key, this.sync.getSync(key)), this.store.where(key), this.encrypted)
      } catch (err) {
        if (err instanceof FormatError) throw new BfsError('CORRUPT', err.message)
        throw err
      }
      this.streams.set(n, r)
    }
    return r
  }

  /** Run records (unreadable ones are skipped: recovery leaves them for verify). */
  runs(): RunRecord[] {
    const out: RunRecord[] = []
    for (const name of this.names(keys2.runs)) {
      const m = RUN_RE.exec(name)
      if (!m) continue
      const key = keys2.run(Number(m[1]))
      try {
        out.push(decodeRunRecord(this.unseal('run', key, this.sync.getSync(key)), this.store.where(key)))
      } catch (err) {
        if (!(err instanceof FormatError) && !(err instanceof StoreError)) throw err
      }
    }
    return out
  }

  /** The highest number in runs/, manifests/ and gens/ (§2.20.3 step 2). */
  highestId(): number {
    let hi = 0
    for (const n of this.names(keys2.runs)) if (RUN_RE.test(n)) hi = Math.max(hi, Number(n))
    for (const n of this.names(keys2.gens)) if (RUN_RE.test(n)) hi = Math.max(hi, Number(n))
    for (const id of this.generationIds()) hi = Math.max(hi, id)
    return hi
  }

  /** Writes a run record (§2.8.4): `exclusive` claims runs/N, `replace` moves its state on. */
  putRun(r: RunRecord, mode: 'exclusive' | 'replace'): void {
    this.sync.putSync(keys2.run(r.run), this.seal('run', keys2.run(r.run), encodeRunRecord(r)), { mode })
  }

  /**
   * Claims the next run id: runs/N created exclusively with the record `make(N)`, N+1 when
   * another writer got N (§2.20.3 step 2).
   */
  claimRun(make: (n: number) => RunRecord): RunRecord {
    for (let n = this.highestId() + 1; ; n++) {
      const r = make(n)
      try {
        this.putRun(r, 'exclusive')
        return r
      } catch (err) {
        if (err instanceof StoreError && err.code === 'EEXIST') continue
        throw err
      }
    }
  }

  static host(): string {
    return os.hostname()
  }
}
