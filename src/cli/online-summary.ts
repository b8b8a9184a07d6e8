import type { ManifestOnline } from '../format/manifest.js'
import { count, humanBytes } from './output.js'

/** The summary lines of an `--online` backup (format 1 and 2 alike). */
export function onlineSummary(online: ManifestOnline, what: 'tree' | 'image'): string {
  if (!online.captured) return `  online: not available (${online.unavailable}); files were read as they were at the time\n`
  let s =
    `  online: the ${what} as it was at T0 ${online.t0}` +
    (online.uncovered.length ? `, except ${count(online.uncovered.length, 'file')} below` : '') +
    `; ${count(online.events, 'event')} of other processes intercepted, ${humanBytes(online.imageBytes)} of before-images logged` +
    (online.preReads ? `, ${count(online.preReads, 'small file')} (${humanBytes(online.preReadBytes ?? 0)}) read whole at their first write` : '') +
    (online.biBlocks ? `, ${humanBytes(online.biBlocks * 4096)} of them kept in the generation's BI log` : '') +
    '\n'
  if (online.uncovered.length) s += `  not covered (stored as read, may be inconsistent):\n${online.uncovered.map((u) => `    ${u.path} (${u.reason})\n`).join('')}`
  return s
}
