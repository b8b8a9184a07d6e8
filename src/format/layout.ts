/**
 * Where each file of a repository lives: the store keys of native-notes/format.md
 * "Layout of a repository". The only place keys are spelled; stores know nothing of them.
 * (repo/repository.ts re-exports `keys` for its older importers.)
 */

const pad8 = (n: number): string => String(n).padStart(8, '0')

export const keys = {
  config: 'config',
  /** A second, immutable copy of config (written by init, or by the first writer of an older repository). */
  configCopy: 'config-copy',
  manifests: 'manifests',
  manifest: (gen: number) => `manifests/gen-${pad8(gen)}`,
  gens: 'gens',
  genDir: (gen: number) => `gens/${pad8(gen)}`,
  unit: (gen: number, unit: number) => `gens/${pad8(gen)}/unit-${pad8(unit)}`,
  catalog: (gen: number) => `gens/${pad8(gen)}/catalog`,
  maps: (gen: number) => `gens/${pad8(gen)}/maps`,
  hashes: (gen: number) => `gens/${pad8(gen)}/hashes`,
  /** The generation's before-image log (--online backups that logged images of files they stored). */
  bilog: (gen: number) => `gens/${pad8(gen)}/bilog`,
  /** Marks gens/N as being written: created right after the mkdir, removed after the commit. */
  marker: (gen: number) => `gens/${pad8(gen)}/${MARKER}`,
  groups: 'groups',
  group: (name: string) => `groups/${name}`,
  /** The writer lock. */
  lock: 'lock',
  /** Writers' temporary files that are not next to their final key (lock candidates). */
  tmp: 'tmp',
  /** The disk buffer cache of units recalled from tape: a local directory, not store blobs (native-notes/tape.md). */
  cache: 'cache',
} as const

/** Name of the in-progress marker file inside gens/N. */
export const MARKER = 'in-progress'

/** Name (last key segment) of a manifest: `gen-NNNNNNNN`. */
export const MANIFEST_RE = /^gen-(\d{8})$/

/** Name of a unit file: `unit-UUUUUUUU`. */
export const UNIT_RE = /^unit-(\d{8})$/
