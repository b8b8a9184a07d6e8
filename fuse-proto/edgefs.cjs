// Edge-case FUSE server for the patched fuse-native: a small writable in-memory fs
// with statCache {getattr: true, ttl} and attr/entry timeouts 0, so every stat
// reaches the binding and must reflect writes (native cache invalidation), plus
// malformed readdir replies that must not hang the kernel request.
// Usage: node edgefs.cjs MOUNTPOINT
'use strict'
const Fuse = require(process.env.FUSE_NATIVE_PATH || 'fuse-native')
const mnt = process.argv[2]

const files = new Map() // path -> { mode, data: Buffer, mtimeNs: bigint, ino }
const dirs = new Map([['/', 1], ['/bad', 2], ['/badstats', 3]])
let nextIno = 100
const nowNs = () => process.hrtime.bigint() - process.hrtime.bigint() + BigInt(Date.now()) * 1000000n
const parent = p => p.slice(0, p.lastIndexOf('/')) || '/'
const base = p => p.slice(p.lastIndexOf('/') + 1)
let clockReads = 0

function stat (p) {
  if (p === '/clock') { clockReads++; return { ino: 50, mode: 0o100444, size: clockReads, mtime: new Date() } }
  if (dirs.has(p)) return { ino: dirs.get(p), mode: 0o40755, nlink: 2, size: 0, mtime: new Date(0) }
  const f = files.get(p)
  if (f) return { ino: f.ino, mode: f.mode, size: f.data.length, mtimeNs: f.mtimeNs, ctimeNs: f.mtimeNs, atimeNs: f.mtimeNs }
  return null
}

const ops = {
  getattr (p, cb) { const s = stat(p); s ? cb(0, s) : cb(Fuse.ENOENT) },
  readdir (p, cb) {
    if (p === '/bad') return cb(0, ['ok', 42, null, 'ok2'], [{ mode: 0o100644 }, {}, null, 'junk'])
    if (p === '/badstats') return cb(0, ['x', 'y'], [{ mode: 0o100644, size: 1 }]) // length mismatch: names only
    if (!dirs.has(p)) return cb(Fuse.ENOENT)
    const names = []
    for (const k of [...dirs.keys(), ...files.keys()]) if (k !== '/' && parent(k) === p) names.push(base(k))
    if (p === '/') names.push('clock')
    cb(0, names, names.map(n => stat((p === '/' ? '' : p) + '/' + n)))
  },
  create (p, mode, cb) { files.set(p, { mode: 0o100000 | (mode & 0o7777), data: Buffer.alloc(0), mtimeNs: nowNs(), ino: nextIno++ }); cb(0, 1) },
  open (p, flags, cb) { cb(files.has(p) || p === '/clock' ? 0 : Fuse.ENOENT, 1) },
  release (p, fd, cb) { cb(0) },
  read (p, fd, buf, len, pos, cb) {
    const f = files.get(p); if (!f) return cb(0)
    const s = f.data.subarray(pos, pos + len); s.copy(buf); cb(s.length)
  },
  write (p, fd, buf, len, pos, cb) {
    const f = files.get(p); if (!f) return cb(Fuse.ENOENT)
    const need = pos + len
    if (need > f.data.length) { const n = Buffer.alloc(need); f.data.copy(n); f.data = n }
    buf.copy(f.data, pos, 0, len); f.mtimeNs = nowNs(); cb(len)
  },
  truncate (p, size, cb) {
    const f = files.get(p); if (!f) return cb(Fuse.ENOENT)
    const n = Buffer.alloc(size); f.data.copy(n, 0, 0, Math.min(size, f.data.length)); f.data = n; f.mtimeNs = nowNs(); cb(0)
  },
  utimens (p, atime, mtime, cb) { const f = files.get(p); if (f) f.mtimeNs = BigInt(Math.round(mtime)) * 1000000n; cb(0) },
  unlink (p, cb) { files.delete(p) ? cb(0) : cb(Fuse.ENOENT) },
  mkdir (p, mode, cb) { dirs.set(p, nextIno++); cb(0) },
  rmdir (p, cb) { dirs.delete(p) ? cb(0) : cb(Fuse.ENOENT) },
  rename (a, b, cb) {
    if (files.has(a)) { files.set(b, files.get(a)); files.delete(a); return cb(0) }
    if (dirs.has(a)) {
      for (const m of [dirs, files]) for (const k of [...m.keys()]) if (k === a || k.startsWith(a + '/')) { m.set(b + k.slice(a.length), m.get(k)); m.delete(k) }
      return cb(0)
    }
    cb(Fuse.ENOENT)
  }
}

const fuse = new Fuse(mnt, ops, { timeout: false, useIno: true, attrTimeout: 0, entryTimeout: 0, statCache: { getattr: true, ttl: 1 } })
fuse.mount(err => { if (err) { console.error(err.message); process.exit(1) } console.log('ready') })
function stop () { fuse.unmount(() => process.exit(0)) }
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
