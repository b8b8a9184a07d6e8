// Entry point (bin/bfs runs it). The threadpool size must be fixed before libuv
// first uses it, so it is set before anything else is loaded.
if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = '16'
try {
  const { main } = await import('./main.js')
  await main(process.argv)
} catch (err) {
  process.stderr.write(`bfs: internal error: ${(err as Error)?.message ?? String(err)}\n`)
  process.exit(70)
}
