// Entry point of tsc's modules (bin/bfs runs them when the bundle is older) and of the
// bundle (dist/cli/bfs.cjs, loaded by load.cts). The threadpool size must be fixed before
// libuv first uses it, so it is set before anything else is loaded. No top-level await: the
// bundle is CommonJS (so that V8 can take a code cache for it; see load.cts).
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '16'
import('./main.js')
  .then(({ main }) => main(process.argv))
  .catch((err: unknown) => {
    process.stderr.write(`bfs: internal error: ${(err as Error)?.message ?? String(err)}\n`)
    process.exit(70)
  })
