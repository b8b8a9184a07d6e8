// Prototype FUSE server for the patched fuse-native (patches/fuse-native+2.2.6.patch).
// Serves, from memory:
//   /big          1 GiB file (an 8 MiB buffer repeated)
//   /tree/dN/fM   800 dirs x 100 empty files (80,800 entries + /tree)
//   /wide/wN      one directory with 10,000 files (for ls -l)
//   /links/a, /links/b   two hard links to one file: ino 2^40+7, nlink 2,
//                 mtime 1700000000.123456789 (9-digit nanoseconds)
//   /odd          BigInt ino 12345678901234567890, blksize 65536, blocks 7, nlink 3,
//                 mtime -1.5 s (BigInt ns, before 1970), atime {sec: 10n, nsec: 5}, ctime 1234.5678 ms
// Usage: node memfs-patched.cjs MOUNTPOINT ['{"statCache":true, ...fuse options}']
// Extra (non-fuse) keys in the JSON: "readdirStats": false (readdir returns names only),
// "preload": true (after mounting, push every /tree stat with fuse.cacheStats()).
// FUSE_NATIVE_PATH=/path/to/fuse-native selects the binding (default: require('fuse-native')).
// Never touch the mountpoint from this process; SIGTERM/SIGINT unmounts and exits.
'use strict'
const Fuse = require(process.env.FUSE_NATIVE_PATH || 'fuse-native')

const mnt = process.argv[2]
const opts = JSON.parse(process.argv[3] || '{}')
const readdirStats = opts.readdirStats !== false
const preload = !!opts.preload
delete opts.readdirStats
delete opts.preload

const SIZE = 1 << 30
const data = Buffer.alloc(8 << 20, 7)
const T = { sec: 1700000000, nsec: 123456789 } // {sec, nsec} form
const TNS = 1700000000123456789n // BigInt ns form
const DIR_T = new Date(1600000000000) // Date form (ms)
const INO_BASE = 2 ** 33 // > 2^32 on purpose

// On the stock (unpatched) binding, for A/B runs only: Dates and 32-bit inodes.
const PATCHED = !!Fuse.STAT_FIELDS
const compat = st => PATCHED ? st : Object.assign({}, st, {
  ino: Number(BigInt.asUintN(32, BigInt(st.ino))), mtime: st.mtime instanceof Date ? st.mtime : new Date(1700000000123), atime: DIR_T, ctime: DIR_T
})

const NDIRS = 800, NFILES = 100, NWIDE = 10000
const dirNames = Array.from({ length: NDIRS }, (_, i) => 'd' + i)
const fileNames = Array.from({ length: NFILES }, (_, i) => 'f' + i)
const wideNames = Array.from({ length: NWIDE }, (_, i) => 'w' + i)

function dirStat (ino, nlink) {
  return { ino, mode: 0o40755, nlink, size: 4096, uid: 0, gid: 0, mtime: DIR_T, atime: DIR_T, ctime: DIR_T, noXattrs: true }
}
function fileStat (ino, size, nlink = 1) {
  return { ino, mode: 0o100644, nlink, size, uid: 0, gid: 0, mtimeNs: TNS, atime: T, ctime: T, blksize: 4096, noXattrs: true }
}
const LINK_INO = 2 ** 40 + 7
const linkStat = { ino: LINK_INO, mode: 0o100644, nlink: 2, size: 5, uid: 0, gid: 0, mtime: T, atime: T, ctime: T, noXattrs: true }

const rootStat = dirStat(1, 6)
const treeStat = dirStat(2, NDIRS + 2)
const wideStat = dirStat(3, 2)
const linksStat = dirStat(4, 2)
const bigStat = fileStat(5, SIZE)
const oddStat = { ino: 12345678901234567890n, mode: 0o100644, nlink: 3, size: 1000, blksize: 65536, blocks: 7, mtimeNs: -1500000000n, atime: { sec: 10n, nsec: 5 }, ctime: 1234.5678, noXattrs: true }

function lookup (p) {
  const st = lookupRaw(p)
  return st && compat(st)
}

function lookupRaw (p) {
  if (p === '/') return rootStat
  if (p === '/big') return bigStat
  if (p === '/odd') return oddStat
  if (p === '/tree') return treeStat
  if (p === '/wide') return wideStat
  if (p === '/links') return linksStat
  if (p === '/links/a' || p === '/links/b') return linkStat
  let m = /^\/tree\/d(\d+)(?:\/f(\d+))?$/.exec(p)
  if (m) {
    const d = +m[1]
    if (d >= NDIRS) return null
    if (m[2] === undefined) return dirStat(INO_BASE + d * 1000, 2)
    const f = +m[2]
    if (f >= NFILES) return null
    return fileStat(INO_BASE + d * 1000 + 1 + f, 0)
  }
  m = /^\/wide\/w(\d+)$/.exec(p)
  if (m && +m[1] < NWIDE) return fileStat(INO_BASE + 10000000 + +m[1], 0)
  return null
}

function listing (p) {
  if (p === '/') return ['big', 'tree', 'wide', 'links', 'odd']
  if (p === '/tree') return dirNames
  if (p === '/wide') return wideNames
  if (p === '/links') return ['a', 'b']
  if (/^\/tree\/d\d+$/.test(p) && lookup(p)) return fileNames
  return null
}

let jsGetattr = 0, jsReaddir = 0
const ops = {
  readdir (p, cb) {
    jsReaddir++
    const names = listing(p)
    if (!names) return cb(Fuse.ENOENT)
    if (!readdirStats) return cb(0, names)
    const base = p === '/' ? '/' : p + '/'
    cb(0, names, names.map(n => lookup(base + n)))
  },
  getattr (p, cb) {
    jsGetattr++
    const st = lookup(p)
    if (!st) return cb(Fuse.ENOENT)
    cb(0, st)
  },
  open (p, flags, cb) { cb(0, 1) },
  release (p, fd, cb) { cb(0) },
  read (p, fd, buf, len, pos, cb) {
    if (p === '/links/a' || p === '/links/b') {
      const s = Buffer.from('link\n').subarray(pos, pos + len)
      s.copy(buf)
      return cb(s.length)
    }
    if (pos >= SIZE) return cb(0)
    const n = Math.min(len, SIZE - pos)
    const off = pos % (data.length - n)
    data.copy(buf, 0, off, off + n)
    cb(n)
  },
  // xattrs are "implemented" so that ls -l would ask; entries carry noXattrs: true,
  // so the patched binding answers ENODATA natively for them.
  getxattr (p, name, pos, cb) { cb(0, null) },
  listxattr (p, cb) { cb(0, []) }
}

const fuse = new Fuse(mnt, ops, Object.assign({ timeout: false }, opts))
fuse.mount(err => {
  if (err) { console.error('mount failed:', err.message); process.exit(1) }
  if (preload) {
    const t0 = process.hrtime.bigint()
    fuse.cacheStats('/tree', dirNames, dirNames.map(n => lookup('/tree/' + n)))
    for (const d of dirNames) fuse.cacheStats('/tree/' + d, fileNames, fileNames.map(n => lookup('/tree/' + d + '/' + n)))
    console.error('preloaded %j in %d ms', fuse.statCacheInfo(), Number(process.hrtime.bigint() - t0) / 1e6)
  }
  console.log('ready')
})

let stopping = false
function stop () {
  if (stopping) return
  stopping = true
  console.error('stats: js getattr=%d js readdir=%d cache=%j', jsGetattr, jsReaddir, PATCHED ? fuse.statCacheInfo() : null)
  fuse.unmount(err => {
    if (err) console.error('unmount:', err.message)
    process.exit(0)
  })
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
process.on('SIGUSR2', () => console.error('stats: js getattr=%d js readdir=%d cache=%j', jsGetattr, jsReaddir, PATCHED ? fuse.statCacheInfo() : null))
