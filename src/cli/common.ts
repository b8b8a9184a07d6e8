/** What several commands share: option parsers, GEN[:PATH], signals. */
import { InvalidArgumentError } from 'commander'

/**
 * A whole-number option in [min, max] (min ≥ 0), written in decimal digits: Number() alone
 * took '' and ' ' as 0, '1e3' as 1000, '0x10' as 16.
 */
export const int = (name: string, min: number, max: number) => (v: string): number => {
  const n = Number(v)
  if (!/^\s*\d+\s*$/.test(v) || !Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`)
  return n
}

export const SOURCE_HELP = 'latest and latest~K count only the generations of this source (the repository may hold several)'

/** Splits GEN[:PATH]. */
export function splitRef(ref: string): { gen: string; path: string } {
  const i = ref.indexOf(':')
  return i < 0 ? { gen: ref, path: '' } : { gen: ref.slice(0, i), path: ref.slice(i + 1) }
}

/** Runs `fn` with an AbortSignal that fires on SIGINT/SIGTERM. */
export async function withSignals<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController()
  const onSig = (): void => ac.abort()
  process.on('SIGINT', onSig)
  process.on('SIGTERM', onSig)
  try {
    return await fn(ac.signal)
  } finally {
    process.off('SIGINT', onSig)
    process.off('SIGTERM', onSig)
  }
}

/** Parses 64M, 1G, 512K or plain bytes. */
export function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(v.trim())
  if (!m) throw new InvalidArgumentError('a size like 64M, 1G or 1048576')
  return Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf((m[2] || ' ').toLowerCase()))
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 }

/** `0`, `90s`, `30m`, `12h`, `2d`, `1w` → milliseconds. */
export function parseGrace(v: string): number {
  const m = /^(\d{1,9})([smhdw]?)$/.exec(v.trim())
  if (!m || (m[2] === '' && m[1] !== '0')) throw new InvalidArgumentError('a duration like 0, 90s, 30m, 12h, 2d or 1w')
  return Number(m[1]) * (m[2] ? UNIT_MS[m[2]]! : 0)
}
