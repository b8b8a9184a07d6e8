/**
 * Every command but mount and umount (main.ts loads this lazily: `bfs mount` loads only what
 * a mount needs). One file per command; this only registers them, in help order.
 */
import type { Command } from 'commander'
import type { Ctx } from './context.js'
import { registerTier } from './tier.js'
import { registerMigrate } from './migrate.js'
import { registerRecall } from './recall.js'
import { registerInit } from './init.js'
import { registerBackup } from './backup.js'
import { registerGenerations } from './generations.js'
import { registerGroup } from './group.js'
import { registerLs } from './ls.js'
import { registerCat } from './cat.js'
import { registerDiff } from './diff.js'
import { registerFind } from './find.js'
import { registerRestore } from './restore.js'
import { registerVerify } from './verify.js'
import { registerForget } from './forget.js'
import { registerPrune } from './prune.js'
import { registerMerge } from './merge.js'
import { registerCompact } from './compact.js'
import { registerHistory } from './history.js'
import { registerKey } from './key.js'

export function registerCommands(program: Command, ctx: Ctx): void {
  registerTier(program, ctx)
  registerMigrate(program, ctx)
  registerRecall(program, ctx)
  registerInit(program, ctx)
  registerBackup(program, ctx)
  registerGenerations(program, ctx)
  registerGroup(program, ctx)
  registerLs(program, ctx)
  registerDiff(program, ctx)
  registerFind(program, ctx)
  registerCat(program, ctx)
  registerRestore(program, ctx)
  registerVerify(program, ctx)
  registerForget(program, ctx)
  registerMerge(program, ctx)
  registerPrune(program, ctx)
  registerCompact(program, ctx)
  registerHistory(program, ctx)
  registerKey(program, ctx)
}
