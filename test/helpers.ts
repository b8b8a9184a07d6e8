import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { expect } from 'vitest'

export const ROOT = path.resolve(import.meta.dirname, '..')
export const BFS = path.join(ROOT, 'bin', 'bfs')

export interface Run {
  code: number
  stdout: string
  stderr: string
  out: Buffer
}

/**
 * Runs the real CLI (compiled dist/) in its own process. Asynchronous on purpose: a
 * synchronous child blocks this worker's event loop, and on a loaded machine vitest's RPC
 * (birpc, 60 s) then times out although the test passed ("Timeout calling onTaskUpdate").
 */
export function bfs(args: string[], opts: { repo?: string; cwd?: string; input?: string | Buffer; env?: Record<string, string> } = {}): Promise<Run> {
  const env = { ...process.env, ...opts.env }
  delete env.BFS_REPO
  if (opts.repo) env.BFS_REPO = opts.repo
  return run(BFS, args, { cwd: opts.cwd, env, input: opts.input })
}

/** `bfs ARGS` on `repo`, expected to exit 0 (the message names the command and its stderr); its stdout. */
export async function okBfs(args: string[], repo: string, env?: Record<string, string>): Promise<string> {
  const res = await bfs(args, { repo, env })
  expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(0)
  return res.stdout
}

/** Unmounts a bfs mount for a test's teardown: `bfs umount`, else `--lazy`, and fusermount -uz if /proc/mounts still lists it. */
export async function umountBfs(mnt: string): Promise<void> {
  if ((await bfs(['umount', mnt])).code !== 0) await bfs(['umount', '--lazy', mnt])
  if ((await sh(`grep -q ' ${mnt} ' /proc/mounts`)).code === 0) await sh(`fusermount -uz '${mnt}'`)
}

/** Every child is killed after this, so that a hang (a stuck mount, say) fails its test instead of stalling the run. */
const RUN_TIMEOUT_MS = 480_000

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string | Buffer }): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    let note = ''
    const timer = setTimeout(() => {
      note = `\n[test helper: killed after ${RUN_TIMEOUT_MS} ms]`
      child.kill('SIGKILL')
    }, RUN_TIMEOUT_MS)
    child.stdout!.on('data', (b: Buffer) => out.push(b))
    child.stderr!.on('data', (b: Buffer) => err.push(b))
    if (opts.input !== undefined) {
      child.stdin!.on('error', () => undefined) // a child that exits without reading its input
      child.stdin!.end(opts.input)
    }
    child.on('error', (e) => {
      note += `\n[test helper: ${e.message}]`
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      const stdout = Buffer.concat(out)
      if (signal && !note) note = `\n[test helper: killed by ${signal}]`
      resolve({ code: code ?? -1, stdout: stdout.toString(), stderr: Buffer.concat(err).toString() + note, out: stdout })
    })
  })
}

/** Makes a repository with `bfs init` (the only command that creates one; the default format, 2) and returns its path. */
export async function newRepo(dir: string, owner?: number): Promise<string> {
  return initRepo(['init'], dir, owner)
}

/** The repository formats tests run on when they run on both (`bfs init --format N`). */
export const FORMATS = [1, 2] as const

/** A new repository of format `fmt` (and, with `owner`, owned by that uid). */
export async function newRepoF(fmt: 1 | 2, dir: string, owner?: number): Promise<string> {
  return initRepo(['init', '--format', String(fmt)], dir, owner)
}

async function initRepo(args: string[], dir: string, owner?: number): Promise<string> {
  const r = await bfs(args, { repo: dir })
  if (r.code !== 0) throw new Error(`bfs ${args.join(' ')} ${dir}: ${r.stderr.trim()}`)
  if (owner !== undefined) {
    const c = await sh(`chown -R ${owner}:${owner} '${dir}'`)
    if (c.code !== 0) throw new Error(`chown ${dir}: ${c.stderr.trim()}`)
  }
  return dir
}

/** A backup summary's parent (format 1: `parent`; format 2: its one source's). */
export const parentOf = (j: { parent?: number; sources?: Array<{ parent: number }> }): number | undefined => j.parent ?? j.sources?.[0]?.parent

export function sh(cmd: string, opts: { cwd?: string } = {}): Promise<Run> {
  return run('bash', ['-c', cmd], { cwd: opts.cwd })
}

export function tmpdir(prefix = 'bfs-test-'): string {
  // Under /var/tmp: a real disk filesystem here (xattrs, SEEK_HOLE), not tmpfs.
  const base = fs.existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir()
  return fs.mkdtempSync(path.join(base, prefix))
}

/**
 * The tree the damage tests rot: a/f0…f4 (small files) and z/big.bin, 2 MiB of incompressible
 * bytes (a fixed LCG), so that most of the unit's bytes are big.bin's frames and a flipped byte
 * in the middle of the unit lands in one of them.
 */
export function makeRotTree(dir: string): void {
  fs.mkdirSync(path.join(dir, 'a'), { recursive: true })
  fs.mkdirSync(path.join(dir, 'z'), { recursive: true })
  for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(dir, 'a', `f${i}`), `small ${i}\n`)
  const big = Buffer.alloc(2 << 20)
  let x = 7
  for (let i = 0; i < big.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    big[i] = x >>> 24
  }
  fs.writeFileSync(path.join(dir, 'z', 'big.bin'), big)
}

/**
 * A tree with every file type bfs must keep: odd names (newline, invalid UTF-8), hard
 * links, a symlink, a sparse file, xattrs, a fifo, empty file and dir, a deep path,
 * setuid and read-only modes, ns mtimes, a multi-unit file.
 */
export async function makeTree(dir: string): Promise<void> {
  // a tool missing here would leave the tree without what it makes, and fail far away
  const must = async (cmd: string): Promise<void> => {
    const r = await sh(cmd)
    if (r.code !== 0) throw new Error(`makeTree: ${cmd}: ${r.stderr.trim()}`)
  }
  fs.mkdirSync(dir, { recursive: true })
  const w = (p: string | Buffer, data: string | Buffer): void => fs.writeFileSync(typeof p === 'string' ? path.join(dir, p) : Buffer.concat([Buffer.from(dir + '/'), p]), data)
  w('hello.txt', 'hello world\n')
  w('empty', '')
  fs.mkdirSync(path.join(dir, 'emptydir'))
  fs.mkdirSync(path.join(dir, 'a/b/c/d/e/f/g/h'), { recursive: true })
  w('a/b/c/d/e/f/g/h/deep.txt', 'deep\n')
  w(Buffer.from('odd\nname\xff\xfe.txt', 'latin1'), 'odd name\n')
  w('seq.txt', Array.from({ length: 50000 }, (_, i) => `line ${i}`).join('\n'))
  // incompressible and multi-frame
  const rnd = Buffer.alloc(3 << 20)
  let x = 12345
  for (let i = 0; i < rnd.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0
    rnd[i] = x >>> 24
  }
  w('random.bin', rnd)
  fs.linkSync(path.join(dir, 'hello.txt'), path.join(dir, 'a/hardlink.txt'))
  fs.symlinkSync('../hello.txt', path.join(dir, 'a/link'))
  fs.symlinkSync('/nonexistent/target', path.join(dir, 'dangling'))
  await must(`truncate -s 64M '${dir}/sparse.img' && printf 'data-in-the-middle' | dd of='${dir}/sparse.img' bs=1 seek=33554432 conv=notrunc status=none && printf 'tail' | dd of='${dir}/sparse.img' bs=1 seek=67108860 conv=notrunc status=none`)
  await must(`mkfifo '${dir}/fifo' && setfattr -n user.color -v blue '${dir}/hello.txt' && setfattr -n user.bin -v 0x00ff10 '${dir}/seq.txt' && setfattr -n user.dir -v yes '${dir}/emptydir'`)
  fs.writeFileSync(path.join(dir, 'setuid'), '#!/bin/sh\n')
  fs.chmodSync(path.join(dir, 'setuid'), 0o4755)
  fs.writeFileSync(path.join(dir, 'readonly'), 'ro\n')
  fs.chmodSync(path.join(dir, 'readonly'), 0o444)
  await must(`touch -d '2001-02-03 04:05:06.123456789' '${dir}/hello.txt' && touch -h -d '1999-12-31 23:59:59.5' '${dir}/a/link'`)
  if (process.getuid?.() === 0) {
    fs.chownSync(path.join(dir, 'seq.txt'), 1234, 5678)
    await must(`mknod '${dir}/chardev' c 1 3`)
  }
}

/** `stat` of every entry (type, mode, owner, size, ns mtime, link count, target), sorted, for comparing trees with real tools. */
export async function statTree(dir: string): Promise<string> {
  return (await sh(`cd '${dir}' && find . -mindepth 1 -not -type d -print0 | sort -z | xargs -0 stat -c '%n|%F|%a|%u:%g|%s|%y|%h|%N' ; find . -mindepth 1 -type d -print0 | sort -z | xargs -0 stat -c '%n|%F|%a|%u:%g'`)).stdout
}

/** `diff -r` of two trees; returns its output minus the lines diff prints for matching fifos and device nodes (those are compared by statTree). */
export async function diffTree(a: string, b: string): Promise<string> {
  return (await sh(`diff -r --no-dereference '${a}' '${b}'`)).stdout.split('\n').filter((l) => l && !/^File .* is a (fifo|character special file|block special file|socket) while file .* is a \1$/.test(l)).join('\n')
}

export function spawnBfs(args: string[], repo: string) {
  const env = { ...process.env, BFS_REPO: repo }
  return spawn(BFS, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
}

/**
 * The native read path's counters of a mount started by `bfs mount` (its stdout names the
 * daemon: "(pid N, log PATH);"): SIGUSR2 makes it log its stats line; waits up to 60 s for it.
 */
export async function mountNativeStats(mountStdout: string): Promise<Record<string, number>> {
  const [, pid, log] = /\(pid (\d+), log (.*)\);/.exec(mountStdout)!
  const lines = (): string[] => fs.readFileSync(log!, 'utf8').split('\n').filter((l) => l.includes(' native reads: '))
  const n0 = lines().length
  process.kill(Number(pid), 'SIGUSR2')
  for (let t = Date.now() + 60_000; lines().length === n0 && Date.now() < t; ) await new Promise((r) => setTimeout(r, 50))
  return JSON.parse(/ native reads: (\{[^}]*\});/.exec(lines().pop()!)![1]!) as Record<string, number>
}

/**
 * SIGSTOP to pid, then waits (up to 60 s) until every thread of it is stopped. A process's
 * threads stop only as each next runs: under load a SCHED_FIFO listener of a BI capture can
 * still answer an event after kill() returned, before the thread that took the signal has
 * run and stopped the others. Tests that need "stopped" wait for it.
 */
export async function sigstop(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP')
  for (let end = Date.now() + 60_000; ; await new Promise((r) => setTimeout(r, 10))) {
    let all = true
    try {
      for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
        const st = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')
        const state = st[st.lastIndexOf(')') + 2]
        if (state !== 'T' && state !== 't') {
          all = false
          break
        }
      }
    } catch {
      all = false // a thread gone between the listing and its stat: look again
    }
    if (all) return
    // a process that exited (or is exiting) never stops: say so now, not after a minute
    let main = ''
    try {
      main = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      throw new Error(`process ${pid} exited before it stopped`)
    }
    if (['Z', 'X'].includes(main[main.lastIndexOf(')') + 2]!)) throw new Error(`process ${pid} exited before it stopped`)
    if (Date.now() > end) throw new Error(`process ${pid} did not stop`)
  }
}
