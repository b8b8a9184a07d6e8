/** bfs diff on a format 2 repository: the same tree, changes and expectations as diff.test.ts. */
process.env.BFS_DIFF_TEST_FORMAT = '2'
await import('./diff.test.js')
delete process.env.BFS_DIFF_TEST_FORMAT // a worker reused for diff.test.ts tests format 1
