/** The S3 sync face's request thread (store/s3-sync.ts): runs one S3Store, answers one blocked caller at a time. */
import { workerData, type MessagePort } from 'node:worker_threads'
import { S3Store, type S3Description } from './s3.js'
import { CHUNK, checkFetched, fetchWhole, FILL_PARALLEL, giveWay, Limiter, ObjectCache, ORDERED_FILLS } from './objcache.js'
import type { SyncOp } from './s3-sync.js'
import type { ByteRange, PutOptions } from './store.js'

/** `busy`: a mount's fill thread only: its reads waiting for a GET, to which fills give way. */
const { desc, port, flag, busy } = workerData as { desc: S3Description; port: MessagePort; flag: Int32Array; busy?: Int32Array }
const gate = busy ? (): Promise<void> => giveWay(busy) : undefined
const store = new S3Store(desc.location, desc.options)
// the SDK loads as the thread starts, not at its first request (a failure is the request's to report)
store.preload().catch(() => undefined)
const caches = new Map<string, ObjectCache>()
/** Range GETs of fills in flight in this thread (a mount's fill thread fills many objects at once). */
const fillLimit = new Limiter(FILL_PARALLEL)
/**
 * Whole fills asked for well ahead of need (Store.warm's `ahead`: a restore's early units,
 * asked for all at once): they run in the order asked, a few at a time, with no turn of the
 * asker's event loop between them (a restore's main thread reads the tree for ~1 s without
 * one). Other fills (a unit a restore job needs now) do not wait for these slots.
 */
const orderedFills = new Limiter(ORDERED_FILLS)

async function run(op: SyncOp, key: string, args: unknown[]): Promise<unknown> {
  switch (op) {
    case 'get':
      return store.get(key, args[0] as ByteRange | undefined)
    case 'head':
      return (await store.head(key)) ?? null
    case 'getRange':
      return store.getRange(key, args[0] as ByteRange, args[1] as string)
    case 'put':
      return store.put(key, args[0] as Uint8Array, args[1] as PutOptions)
    case 'list':
      return store.list(key)
    case 'remove':
      return store.remove(key, args[0] as { recursive?: boolean })
    case 'fill': {
      // the read cache's fill for a synchronous open (objcache.ts): the whole object, ranges in parallel
      const dir = args[0] as string
      let oc = caches.get(dir)
      if (!oc) caches.set(dir, (oc = ObjectCache.open(dir, { owner: false })))
      const ordered = args[3] === true
      if (ordered) await orderedFills.acquire()
      try {
        const f = await fetchWhole(store, key, (args[1] as { sizeBytes: number; etag: string } | undefined) ?? undefined, undefined, fillLimit, (args[2] as number | undefined) ?? CHUNK, gate)
        // hashing and writing megabytes: after the reads waiting now
        await gate?.()
        return await oc.put(key, f, checkFetched(store.where(key), key, f))
      } finally {
        if (ordered) orderedFills.release()
      }
    }
    default:
      throw new Error(`unknown S3 sync operation ${String(op)}`)
  }
}

// `id`: the answer names its request (a caller with several in flight: the read cache's fill thread)
port.on('message', (m: { op: SyncOp; key: string; args: unknown[]; id?: number }) => {
  void run(m.op, m.key, m.args).then(
    (r) => port.postMessage({ id: m.id, r }),
    (e: { name?: string; code?: string; key?: string; message?: string }) => port.postMessage({ id: m.id, e: { name: e?.name ?? 'Error', code: e?.code ?? 'EIO', key: e?.key ?? m.key, message: e?.message ?? String(e) } }),
  ).finally(() => {
    Atomics.store(flag, 0, 1)
    Atomics.notify(flag, 0)
  })
})
