import fs from 'node:fs'
import os from 'node:os'
import { spawnSync } from 'node:child_process'

/**
 * Background work (compact): every thread of this process at nice 19 and at the lowest
 * best-effort I/O priority (class 2, level 7), so that mounts, restores and backups on the
 * machine go first. Not the idle class: under steady I/O from anything else an idle-class
 * process gets no disk time at all, and a compaction must still end (a test of it at load
 * timed out at 600 s beside a benchmark reading 1.3 GB through FUSE).
 *
 * On Linux both are per thread: setpriority(PRIO_PROCESS, tid) and ioprio_set(IOPRIO_WHO_PROCESS,
 * tid) change one thread, and a thread made later inherits its creator's. So every thread in
 * /proc/self/task is set. Node has os.setPriority for the nice value but nothing for ioprio_set;
 * rather than a native call, util-linux's `ionice -c 2 -n 7 -p TID…` (ioprio_set of each;
 * honoured by the bfq and mq-deadline schedulers, ignored by `none`) is run once — util-linux is already a dependency (Makefile APT_PKGS).
 * Failures are reported, not fatal: this is a courtesy, not a promise.
 */
export function backgroundPriority(): { nice: number | null; ioLow: boolean; problem?: string } {
  let tids: number[]
  try {
    tids = fs.readdirSync('/proc/self/task').map(Number).filter((n) => n > 0)
  } catch {
    tids = [process.pid]
  }
  let nice: number | null = null
  for (const tid of tids) {
    try {
      os.setPriority(tid, 19)
      if (tid === process.pid) nice = os.getPriority(tid)
    } catch {
      // gone, or not allowed
    }
  }
  const r = spawnSync('ionice', ['-c', '2', '-n', '7', '-p', ...tids.map(String)], { encoding: 'utf8' })
  if (r.error || r.status !== 0) {
    return { nice, ioLow: false, problem: r.error ? `ionice: ${r.error.message}` : `ionice: ${(r.stderr || `exit ${r.status}`).trim()}` }
  }
  return { nice, ioLow: true }
}

/** The I/O class of a thread as `ionice -p` prints it (tests), or null. */
export function ioClassOf(tid: number): string | null {
  const r = spawnSync('ionice', ['-p', String(tid)], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : null
}
