/**
 * Store keys of a format 2 repository (native-notes/format.md §2.3): the only place they are
 * spelled. Numbers are 8 digits (revisions 4), zero-padded, so that sorted = numeric.
 */
const pad = (n: number, width: number): string => {
  if (!Number.isSafeInteger(n) || n < 0 || String(n).length > width) throw new RangeError(`${n} does not fit ${width} digits`)
  return String(n).padStart(width, '0')
}
const pad8 = (n: number): string => pad(n, 8)
const dictHex = (id: number): string => {
  if (!Number.isInteger(id) || id < 1 || id > 0xffffffff) throw new RangeError(`dictionary id ${id} is not 1 … 2^32 - 1`)
  return id.toString(16).padStart(8, '0')
}

export const keys2 = {
  config: 'config',
  configCopy: 'config-copy',
  /** The format 1 guard lock (§2.23.1); format 2 never takes or removes it. */
  guardLock: 'lock',
  keys: 'keys',
  keyFile: (keyId: string) => `keys/${keyId}`,
  runs: 'runs',
  run: (n: number) => `runs/${pad8(n)}`,
  manifests: 'manifests',
  manifest: (gen: number) => `manifests/gen-${pad8(gen)}`,
  retired: 'retired',
  retiredManifest: (gen: number, rev: number) => `retired/gen-${pad8(gen)}-r${pad(rev, 4)}`,
  gens: 'gens',
  genDir: (n: number) => `gens/${pad8(n)}`,
  stream: (n: number) => `gens/${pad8(n)}/stream`,
  unit: (n: number, unit: number) => `gens/${pad8(n)}/unit-${pad8(unit)}`,
  hashes: (n: number) => `gens/${pad8(n)}/hashes`,
  /** A compression dictionary of stream n (§2.9.1), by its 32-bit id. */
  dict: (n: number, id: number) => `gens/${pad8(n)}/dict-${dictHex(id)}`,
  pack: (n: number, pack: number) => `gens/${pad8(n)}/pack-${pad8(pack)}`,
  index: 'index',
  dedup: (run: number, seq: number) => `index/dedup-${pad8(run)}-${pad(seq, 4)}`,
  history: 'history',
  leases: 'leases',
  lease: (name: string) => `leases/${name}`,
  locks: 'locks',
  maintenanceLock: 'locks/maintenance',
  prune: 'prune',
  plan: (run: number) => `prune/plan-${pad8(run)}`,
  groups: 'groups',
  group: (name: string) => `groups/${name}`,
  tiers: 'tiers',
  upgrade: 'upgrade',
  upgradeManifest: (gen: number) => `upgrade/manifests/gen-${pad8(gen)}`,
  upgradeRun: (n: number) => `upgrade/runs/${pad8(n)}`,
  upgradeV1Manifest: (gen: number) => `upgrade/v1/gen-${pad8(gen)}`,
  tmp: 'tmp',
} as const

export const RUN_RE = /^(\d{8})$/
export const MANIFEST2_RE = /^gen-(\d{8})$/
export const RETIRED_RE = /^gen-(\d{8})-r(\d{4})$/
export const PACK_RE = /^pack-(\d{8})$/
export const UNIT2_RE = /^unit-(\d{8})$/
export const DICT_RE = /^dict-([0-9a-f]{8})$/
export const LEASE_RE = /^[0-9a-f]{16}$/

/**
 * The logical name of an envelope object (§2.6, §2.22.1), bound by an encrypted envelope's
 * AAD: its kind and numbers, not its store key, so upgrade's staging renames
 * (`upgrade/manifests/…` → `manifests/…`) keep it. A committed manifest is `manifest/N`
 * (a reader cannot know its revision before opening it: §2.22.1), a retired one
 * `retired/N/rR`. Throws RangeError for a key that holds no envelope.
 */
export function logicalName(key: string): string {
  const num = (s: string): string => String(Number(s))
  let m: RegExpExecArray | null
  if (key === keys2.config || key === keys2.configCopy) return 'config'
  if ((m = /^(?:upgrade\/)?runs\/(\d{8})$/.exec(key))) return `run/${num(m[1]!)}`
  if ((m = /^(?:upgrade\/)?manifests\/gen-(\d{8})$/.exec(key))) return `manifest/${num(m[1]!)}`
  if ((m = /^retired\/gen-(\d{8})-r(\d{4})$/.exec(key))) return `retired/${num(m[1]!)}/r${num(m[2]!)}`
  if ((m = /^gens\/(\d{8})\/stream$/.exec(key))) return `stream/${num(m[1]!)}`
  if ((m = /^gens\/(\d{8})\/hashes$/.exec(key))) return `hashes/${num(m[1]!)}`
  if ((m = /^leases\/([^/]+)$/.exec(key))) return `lease/${m[1]}`
  if ((m = /^locks\/([^/]+)$/.exec(key))) return `lock/${m[1]}`
  if ((m = /^history\/([^/]+)$/.exec(key))) return `history/${m[1]}`
  if ((m = /^prune\/plan-(\d{8})$/.exec(key))) return `plan/${num(m[1]!)}`
  if ((m = /^groups\/([^/]+)$/.exec(key))) return `group/${m[1]}`
  if ((m = /^tiers\/([^/]+)$/.exec(key))) return `tier/${m[1]}`
  if ((m = /^tape\/rec-(\d{8,})$/.exec(key))) return `tapecat/${num(m[1]!)}`
  throw new RangeError(`${key} is not an envelope object of a format 2 repository`)
}
