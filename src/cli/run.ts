// Entry point of tsc's modules (bin/bfs runs them when the bundle is older) and of the
// bundle (dist/cli/bfs.cjs, loaded by load.cts). The threadpool size must be fixed before
// libuv first uses it, so it is set before anything else is loaded. No top-level await: the
// bundle is CommonJS (so that V8 can take a code cache for it; see load.cts).
import { watchReadyFd } from '../fuse/ready.js'

if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '16'
// a background `bfs mount` (bin/bfs): its exit status goes to the launcher on the ready pipe
if (process.env.BFS_READY_FD) {
  const fd = Number(process.env.BFS_READY_FD)
  delete process.env.BFS_READY_FD
  if (Number.isInteger(fd) && fd > 2) watchReadyFd(fd)
}
import('./main.js')
  .then(({ main }) => main(process.argv))
  .catch((err: unknown) => {
    process.stderr.write(`bfs: internal error: ${(err as Error)?.message ?? String(err)}\n`)
    process.exit(70)
  })
