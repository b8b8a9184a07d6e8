/**
 * The key files of an encrypted format 2 repository (native-notes/format.md §2.21): list,
 * unlock with a passphrase, add a passphrase, remove one. Through the store interface only,
 * so they work on every store (local disk, S3). The wrapping is src/crypto's.
 *
 * Issue 18, core only: no command calls these yet (`bfs init --encrypt` and `bfs key` come
 * with the session that encrypts every object; a repository with an `encryption` config is
 * refused by this bfs's feature check until then). add and remove change `keys/`, which
 * §2.3 puts under the maintenance lock: the caller holds it, so two removals cannot each
 * see another key left and remove the last two.
 */
import { FormatError } from '../../format/errors.js'
import type { AeadName, KeyFile } from '../../format/v2/keyfile.js'
import { keys2 } from '../../format/v2/layout.js'
import { type KdfParams, PassphraseError, makeKeyFile, readKeyFile, unwrapKeyFile } from '../../crypto/keys.js'
import { StoreError, type Store } from '../../store/store.js'
import { BfsError } from '../errors.js'

/** A key file as `bfs key list` shows it, or why it does not read. */
export type KeyListing = { keyId: string; record: KeyFile } | { keyId: string; problem: string }

const nameOf = (key: string): string => key.slice(key.lastIndexOf('/') + 1)

/** Every `keys/*` object, by name, decoded (a key file whose keyId is not its name is a problem). */
export async function listKeys(store: Store): Promise<KeyListing[]> {
  const out: KeyListing[] = []
  for (const key of await store.list(keys2.keys)) {
    const keyId = nameOf(key)
    try {
      const record = readKeyFile(await store.get(keys2.keyFile(keyId)), store.where(keys2.keyFile(keyId)))
      if (record.keyId !== keyId) throw new FormatError('BAD_VALUE', `${store.where(keys2.keyFile(keyId))}: holds key ${record.keyId}, not ${keyId}`)
      out.push({ keyId, record })
    } catch (err) {
      if (!(err instanceof FormatError) && !(err instanceof StoreError)) throw err
      out.push({ keyId, problem: err.message })
    }
  }
  return out
}

/**
 * The master key, from the first key file the passphrase opens (each try costs one scrypt).
 * PassphraseError when it opens none; BfsError CORRUPT when no key file reads at all.
 */
export async function unlock(store: Store, repoId: string, passphrase: string | Buffer): Promise<{ masterKey: Buffer; keyId: string }> {
  const keys = await listKeys(store)
  const readable = keys.filter((k): k is { keyId: string; record: KeyFile } => 'record' in k)
  if (readable.length === 0) {
    const first = keys.find((k): k is { keyId: string; problem: string } => 'problem' in k)
    throw new BfsError('CORRUPT', first ? `no key file of ${store.where(keys2.keys)} reads: ${first.problem}` : `${store.where(keys2.keys)} holds no key file`)
  }
  for (const k of readable) {
    const masterKey = await unwrapKeyFile(k.record, repoId, passphrase)
    if (masterKey) return { masterKey, keyId: k.keyId }
  }
  throw new PassphraseError(`wrong passphrase: it opens none of the ${readable.length} key${readable.length > 1 ? 's' : ''} in ${store.where(keys2.keys)}`)
}

export interface KeyMeta {
  host: string
  user: string
  label: string
}

/**
 * Adds a key file wrapping `masterKey` under `passphrase` (a new keyId; created exclusively,
 * so it never replaces another). Returns its keyId. Caller holds the maintenance lock.
 */
export async function addKey(store: Store, repoId: string, aead: AeadName, masterKey: Buffer, passphrase: string | Buffer, meta: KeyMeta, scrypt?: KdfParams): Promise<string> {
  for (;;) {
    const k = await makeKeyFile({ repoId, masterKey, passphrase, aead, ...meta, scrypt })
    try {
      await store.put(keys2.keyFile(k.keyId), k.file, { mode: 'exclusive' })
      return k.keyId
    } catch (err) {
      if (err instanceof StoreError && err.code === 'EEXIST') continue // 64 random bits met another key: draw again
      throw err
    }
  }
}

/**
 * Removes key `keyId`. Refused (BfsError BAD_INPUT) when it is the last key file that reads
 * (the master key would be lost with it) or when there is no such key. The caller has
 * unlocked the repository (proved a passphrase) and holds the maintenance lock.
 */
export async function removeKey(store: Store, keyId: string): Promise<void> {
  const keys = await listKeys(store)
  const target = keys.find((k) => k.keyId === keyId)
  if (!target) throw new BfsError('BAD_INPUT', `no key ${keyId} in ${store.where(keys2.keys)}`)
  const others = keys.filter((k) => k.keyId !== keyId && 'record' in k)
  if (others.length === 0) throw new BfsError('BAD_INPUT', `key ${keyId} is the last key of the repository: add another before removing it (without a key, nothing in it can be read)`)
  await store.remove(keys2.keyFile(keyId))
}
