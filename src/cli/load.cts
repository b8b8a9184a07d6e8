/**
 * What bin/bfs runs: the whole CLI is one CommonJS bundle (dist/cli/bfs.cjs, made by esbuild
 * from tsc's dist/cli/run.js), compiled here with the V8 code cache the build took for it
 * (issue 15, mount ready: compiling the 0.7 MB bundle from source cost ~25 ms of every
 * command's start, the ESM loader and its CommonJS translation of commander ~10 ms more, and
 * an ES module bundle loaded every builtin any command imports before the first line ran).
 *
 * V8 accepts a cache only when its flags match those it was taken with, so there is one
 * per set of Node options bin/bfs uses (`bfs.cjs.<options>.cache`, made by
 * scripts/code-cache.mjs). A cache that is missing, stale or rejected costs only the
 * compile; BFS_CODE_CACHE=write (the build) writes the one for this process's options at exit.
 */
import fs = require('node:fs')
import path = require('node:path')
import vm = require('node:vm')
import { createRequire } from 'node:module'

const file = path.join(__dirname, 'bfs.cjs')
const flags = process.execArgv.join(' ').replace(/[^A-Za-z0-9=.-]+/g, '_') || 'default'
const cacheFile = path.join(__dirname, `bfs.cjs.${flags}.cache`)
const source = fs.readFileSync(file, 'utf8')
let cachedData: Buffer | undefined
try {
  cachedData = fs.readFileSync(cacheFile)
} catch {
  // none (yet): compiled from source
}
// the wrapper Node gives every CommonJS module; "use strict" heads the bundle (ES modules are strict)
const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData })
if (process.env.BFS_CODE_CACHE === 'write') {
  delete process.env.BFS_CODE_CACHE
  // at exit: with the functions this run compiled, not only the top level
  process.on('exit', () => fs.writeFileSync(cacheFile, script.createCachedData()))
} else if (process.env.BFS_CODE_CACHE === 'check') {
  process.stderr.write(`code cache ${cacheFile}: ${cachedData === undefined ? 'none' : script.cachedDataRejected ? 'rejected' : 'accepted'}\n`)
}
const mod = { exports: {} }
;(script.runInThisContext() as (...a: unknown[]) => void)(mod.exports, createRequire(file), mod, file, path.dirname(file))
