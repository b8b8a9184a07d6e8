import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from './helpers.js'

// The patched fuse-native binding (patches/fuse-native+2.2.6.patch, native-notes/fuse-native.md).

/** The hook table's definition: from its magic to the end of the typedef. */
function hookStruct(file: string): string {
  const text = fs.readFileSync(file, 'utf8')
  const m = /#define FUSE_NATIVE_HOOKS_MAGIC[\s\S]*?\} fuse_native_hooks_t;/.exec(text)
  if (!m) throw new Error(`no fuse_native_hooks_t in ${file}`)
  return m[0]
}

describe('the hook table', () => {
  it('is defined identically in bfs (native/fuse_hooks.h) and in the patched binding', () => {
    const ours = hookStruct(path.join(ROOT, 'native/fuse_hooks.h'))
    expect(ours).toMatch(/int \(\*read\)\(void \*ctx, uint64_t fh, char \*buf, size_t len, int64_t offset\);/)
    expect(hookStruct(path.join(ROOT, 'node_modules/fuse-native/fuse-native.c'))).toBe(ours)
  })
})
