import fs from 'node:fs'

/**
 * Unattended output under systemd. When stderr is the journal's stream ($JOURNAL_STREAM
 * holds its device and inode, systemd.exec(5)), lines get a syslog priority prefix that
 * journald turns into the entry's priority (SyslogLevelPrefix=, on by default): `<4>` for
 * `bfs: warning: …`, `<3>` for the one-line error bfs exits with. Everything else stays at
 * the stream's default (info). Anywhere else nothing changes.
 */
let journal = false

/** Whether stderr is the journal's stream (checked once, at start). */
export function stderrIsJournal(): boolean {
  const js = process.env.JOURNAL_STREAM
  if (!js) return false
  const m = /^(\d+):(\d+)$/.exec(js)
  if (!m) return false
  try {
    const st = fs.fstatSync(2, { bigint: true })
    return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!)
  } catch {
    return false
  }
}

/** Installs the warning prefix on stderr when it is the journal's stream. */
export function journalPriorities(): void {
  journal = stderrIsJournal()
  if (!journal) return
  const write = process.stderr.write.bind(process.stderr) as (chunk: unknown, ...rest: unknown[]) => boolean
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) =>
    write(typeof chunk === 'string' ? chunk.replace(/^bfs: warning: /gm, '<4>$&') : chunk, ...rest)) as typeof process.stderr.write
}

/** Writes the error line bfs exits with (with `<3>` for the journal). */
export function writeError(line: string): void {
  process.stderr.write(journal ? `<3>${line}` : line)
}
