/** bfs find and bfs log on a format 2 repository: the same tree, changes and expectations as find.test.ts. */
process.env.BFS_FIND_TEST_FORMAT = '2'
await import('./find.test.js')
delete process.env.BFS_FIND_TEST_FORMAT // a worker reused for find.test.ts tests format 1
