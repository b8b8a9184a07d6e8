/**
 * A builtin module loaded when first used rather than when the module naming it is (issue 15,
 * mount ready). Every module a command reaches is initialised at its start (the bundle runs
 * static imports eagerly), and builtins outside Node's start-up snapshot are compiled then:
 * worker_threads, zlib, net and perf_hooks cost a format 2 mount ~10 ms of its start for code
 * only a tape tier, an S3 store, a restore or the fault injection of the tests run.
 */
import { createRequire } from 'node:module'

const req = createRequire(import.meta.url)

export function lazyBuiltin<T>(id: string): () => T {
  let mod: T | undefined
  return () => (mod ??= req(id) as T)
}
