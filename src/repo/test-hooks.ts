import { FaultyStore } from '../store/faulty.js'
import type { FaultRule, Store } from '../store/store.js'
import { BLOCK_BYTES } from '../codec/hash.js'
import type { Claimer } from '../blocks/extents.js'
import { setReadLayers, type ReadLayers } from './stream-source.js'
import type { Repository } from './repository.js'

/**
 * Test-only hooks of the composition root (cli/main.ts), read from the environment and
 * ignored unless NODE_ENV=test, so that black-box tests can run the real CLI and a real
 * mount over a misbehaving store:
 *
 * - BFS_TEST_FAULTS='{"seed":1,"rules":[{"keys":"gens/*\/unit-*","ops":["read"],"fault":"EIO"}],"exposeFd":false}'
 *   wraps the data store in a FaultyStore (store/faulty.ts; FaultRule in store/store.ts).
 *   Worker threads get the same faults (the store's description carries them). Without
 *   exposeFd no unit has a local descriptor, so the native read path defers every read.
 * - BFS_TEST_CLAIM='{"fileBlock":1,"count":2,"byte":90}' installs a Claimer that claims those
 *   blocks of every object (clipped to its size) and serves them as that byte: the mount's
 *   deferred extents, end to end (the native read path hands them back to JavaScript).
 *   Restore and verify workers do not see claims (issue 12: they read data and holes only).
 *
 * A format 2 repository (testStore2) takes BFS_TEST_FAULTS over its whole store, metadata
 * and units alike (the rules' key globs choose what fails, e.g. `manifests/*`).
 */
export function applyTestHooks(repo: Repository, env: NodeJS.ProcessEnv = process.env): Repository {
  if (env.NODE_ENV !== 'test' || (!env.BFS_TEST_FAULTS && !env.BFS_TEST_CLAIM)) return repo
  const l: ReadLayers = {}
  if (env.BFS_TEST_FAULTS) {
    const o = JSON.parse(env.BFS_TEST_FAULTS) as { seed?: number; rules: FaultRule[]; exposeFd?: boolean }
    l.wrap = (data) => new FaultyStore(data, { seed: o.seed ?? 1, rules: o.rules, exposeFd: o.exposeFd })
  }
  if (env.BFS_TEST_CLAIM) {
    const o = JSON.parse(env.BFS_TEST_CLAIM) as { fileBlock: number; count: number; byte: number }
    l.claimers = [testClaimer(o.fileBlock, o.count, o.byte)]
  }
  setReadLayers(repo, l)
  return repo
}

/** A Claimer serving blocks [fileBlock, fileBlock+count) of every object as `byte`. */
export function testClaimer(fileBlock: number, count: number, byte: number): Claimer {
  return {
    id: 'test',
    claims: (_o, sizeBytes) => {
      const end = Math.min(fileBlock + count, Math.ceil(sizeBytes / BLOCK_BYTES))
      return end > fileBlock ? [{ fileBlock, count: end - fileBlock }] : []
    },
    read: async (_o, _pos, dst) => {
      dst.fill(byte)
    },
    readSync: (_o, _pos, dst) => {
      dst.fill(byte)
    },
  }
}

/** Format 2: the repository's store wrapped in a FaultyStore when BFS_TEST_FAULTS is set (NODE_ENV=test only). */
export function testStore2(store: Store, env: NodeJS.ProcessEnv = process.env): Store {
  if (env.NODE_ENV !== 'test' || !env.BFS_TEST_FAULTS) return store
  const o = JSON.parse(env.BFS_TEST_FAULTS) as { seed?: number; rules: FaultRule[]; exposeFd?: boolean }
  return new FaultyStore(store, { seed: o.seed ?? 1, rules: o.rules, exposeFd: o.exposeFd })
}
