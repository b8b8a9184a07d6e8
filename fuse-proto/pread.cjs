// Random 4 KiB preads on a file (run in its own process, never in the FUSE server's).
// Usage: node pread.cjs FILE [count=2000]  -> prints median and p99 in microseconds
'use strict'
const fs = require('fs')
const file = process.argv[2]
const count = Number(process.argv[3] || 2000)
const fd = fs.openSync(file, 'r')
const size = fs.fstatSync(fd).size
const buf = Buffer.alloc(4096)
let seed = 1
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
const lat = []
for (let i = 0; i < count; i++) {
  const off = Math.floor(rnd() * (size / 4096)) * 4096
  const t = process.hrtime.bigint()
  fs.readSync(fd, buf, 0, 4096, off)
  lat.push(Number(process.hrtime.bigint() - t) / 1000)
}
fs.closeSync(fd)
lat.sort((a, b) => a - b)
console.log('pread 4KiB x%d: median %s us, p99 %s us', count, lat[Math.floor(count / 2)].toFixed(1), lat[Math.floor(count * 0.99)].toFixed(1))
