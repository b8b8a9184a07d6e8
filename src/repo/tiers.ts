import fs from 'node:fs'
import path from 'node:path'
import { envelopeFor } from './repository.js'
import { decodeEnvelope } from '../format/envelope.js'
import { FormatError } from '../format/errors.js'
import { BfsError } from './errors.js'
import { syncOf, type SyncStore } from '../store/store.js'
import type { DiskStore } from '../store/disk.js'
import { TapeError } from '../tape/device.js'
import { modelByName, MODELS } from '../tape/model.js'
import { VirtualTapeLibrary } from '../tape/vtl.js'
import type { TapeFileSealer } from '../tape/tapefile.js'

/**
 * Storage tiers (issue 13): REPO/tiers/NAME, a BFSTIER envelope holding JSON. A tier is,
 * for now, a virtual tape library in a directory of its own (src/tape/vtl.ts); the library
 * keeps its own state there, the repository only where it is and what it is. Replaced
 * atomically (tmp → fsync → rename), never edited in place.
 */
export interface Tier {
  name: string
  kind: 'vtl'
  /** Absolute path of the library directory. */
  dir: string
  model: string
  created: string
}

/**
 * What the tape tier needs of a repository, of either format: where it is and its disk store
 * (tiers, the tape catalog and the buffer cache are files of a disk repository). A format 1
 * Repository is one; a format 2 repository gives one with v2/tape2.ts tapeRepoOf.
 */
export interface TapeRepo {
  readonly dir: string
  readonly store: DiskStore
  /**
   * An encrypted repository's sealing of its tier files and tape catalog records (format.md
   * §2.18 "Encrypted repositories"), given only once it is unlocked; absent or null: the
   * plain envelopes of format 1, byte for byte as before.
   */
  readonly tapeSeal?: TapeSeal | null
}

/** Seals and opens the envelopes of the tape tier in an encrypted repository (store key → logical name, §2.6). */
export interface TapeSeal {
  /** The object's bytes for store key `key` (`tiers/NAME`, `tape/rec-N`). */
  seal(kind: 'tier' | 'tapecat', key: string, payload: Buffer): Buffer
  /** The payload of `file` read at `key`; FormatError when it does not open (damage, tampering, or a plain object). */
  open(kind: 'tier' | 'tapecat', key: string, file: Buffer): Buffer
  /** The header records of the tape files migration writes (src/tape/tapefile.ts). */
  readonly tapeFile: TapeFileSealer
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const tierKey = (name: string): string => `tiers/${name}`
/** Tier files are read and written through the store's synchronous face. */
const meta = (repo: TapeRepo): SyncStore => syncOf(repo.store)

/** A TapeError as the CLI reports it. */
export function tapeToBfs(err: unknown): unknown {
  if (!(err instanceof TapeError)) return err
  switch (err.code) {
    case 'BUSY':
      return new BfsError('LOCKED', err.message)
    case 'NOT_A_LIBRARY':
    case 'MEDIUM_ERROR':
      return new BfsError('CORRUPT', err.message)
    default:
      return new BfsError('BAD_INPUT', err.message)
  }
}

function checkName(name: string): void {
  if (!NAME_RE.test(name)) throw new BfsError('BAD_INPUT', `'${name}' is not a valid tier name (letters, digits, . _ -)`)
}

export function readTier(repo: TapeRepo, name: string): Tier {
  checkName(name)
  let file: Buffer
  try {
    file = meta(repo).getSync(tierKey(name))
  } catch {
    throw new BfsError('BAD_INPUT', `no tier '${name}' in ${repo.dir} (add one with 'bfs tier add ${name} --vtl DIR')`)
  }
  try {
    const payload = repo.tapeSeal ? repo.tapeSeal.open('tier', tierKey(name), file) : decodeEnvelope('tier', file, repo.store.where(tierKey(name))).stored
    const t = JSON.parse(payload.toString('utf8')) as Tier
    if (t.name !== name || t.kind !== 'vtl' || typeof t.dir !== 'string' || typeof t.model !== 'string') throw new FormatError('BAD_VALUE', 'bad tier')
    return t
  } catch (err) {
    throw new BfsError('CORRUPT', err instanceof FormatError ? err.message : `${repo.store.where(tierKey(name))}: not a valid tier file`)
  }
}

export function listTiers(repo: TapeRepo): Tier[] {
  return meta(repo)
    .listSync('tiers')
    .map((k) => path.basename(k))
    .filter((n) => NAME_RE.test(n))
    .sort()
    .map((n) => readTier(repo, n))
}

export interface AddVtlOptions {
  dir: string
  model: string
  cartridges: number
  drives: number
  clockScale: number
}

/**
 * Creates the library directory (which must not exist), then records the tier. A crash
 * between the two leaves a library no tier names; `bfs tier add` then refuses its
 * directory, which can be removed by hand.
 */
export function addVtlTier(repo: TapeRepo, name: string, o: AddVtlOptions): { tier: Tier; library: VirtualTapeLibrary } {
  checkName(name)
  if (meta(repo).hasSync(tierKey(name))) throw new BfsError('EXISTS', `tier '${name}' already exists in ${repo.dir}`)
  const model = modelByName(o.model)
  if (!model) throw new BfsError('USAGE', `unknown tape model '${o.model}' (known: ${Object.keys(MODELS).join(', ')})`)
  const dir = path.resolve(o.dir)
  if (fs.existsSync(dir)) throw new BfsError('EXISTS', `${dir} already exists (bfs tier add creates the library directory)`)
  if (!fs.existsSync(path.dirname(dir))) throw new BfsError('BAD_INPUT', `${path.dirname(dir)} does not exist`)
  try {
    VirtualTapeLibrary.create(dir, { model, cartridges: o.cartridges, drives: o.drives, clockScale: o.clockScale })
  } catch (err) {
    throw tapeToBfs(err)
  }
  const tier: Tier = { name, kind: 'vtl', dir, model: model.name, created: new Date().toISOString() }
  try {
    // written once (tmp → fsync → rename → fsync tiers/)
    const payload = Buffer.from(JSON.stringify(tier))
    meta(repo).putSync(tierKey(name), repo.tapeSeal ? repo.tapeSeal.seal('tier', tierKey(name), payload) : envelopeFor('tier', payload, false))
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true })
    throw err
  }
  return { tier, library: VirtualTapeLibrary.open(dir) }
}

/** Opens a tier's library. */
export function openTier(repo: TapeRepo, name: string): { tier: Tier; library: VirtualTapeLibrary } {
  const tier = readTier(repo, name)
  try {
    return { tier, library: VirtualTapeLibrary.open(tier.dir) }
  } catch (err) {
    throw tapeToBfs(err)
  }
}
