import { Command, InvalidArgumentError, Option } from 'commander'
import { addVtlTier, listTiers, openTier, tapeToBfs } from '../repo/tiers.js'
import { openTapeRepo } from './taperepo.js'
import { MODELS } from '../tape/model.js'
import { TAPE_OPS } from '../tape/model.js'
import type { LibraryStatus } from '../tape/vtl.js'
import { VirtualTapeLibrary } from '../tape/vtl.js'
import { count, humanBytes, simTime } from './output.js'
import type { Ctx } from './context.js'
import { registerServe, serviceStatus } from './recall.js'
import { int } from './common.js'

const scale = (v: string): number => {
  const n = Number(v)
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('--clock-scale must be a number ≥ 0 (1 = real time, 0 = account only)')
  return n
}

export { simTime } from './output.js'

function statusText(name: string, st: LibraryStatus): string {
  const out: string[] = []
  out.push(`tier ${name}: virtual tape library ${st.dir}`)
  out.push(`  model ${st.model}, clock scale ${st.clockScale}${st.clockScale === 0 ? ' (accounting only)' : st.clockScale === 1 ? ' (real time)' : ''}`)
  out.push(`  library clock ${simTime(st.now)} (simulated)`)
  out.push(`drives:`)
  for (const d of st.drives) {
    const what = d.cartridge ? `${d.cartridge} ${d.loaded ? `loaded, block ${d.block}` : 'not loaded'}` : 'empty'
    out.push(`  ${d.index}  ${what}; clock ${simTime(d.clock)}${d.backhitches ? `, ${count(d.backhitches, 'backhitch', 'backhitches')}` : ''}`)
  }
  out.push(`slots:`)
  st.slots.forEach((s, i) => out.push(`  ${i}  ${s ?? 'empty'}`))
  out.push(`cartridges:`)
  for (const c of st.cartridges) out.push(`  ${c.label}  ${c.where}, ${humanBytes(c.fileBytes)} on disk`)
  const ops = TAPE_OPS.filter((op) => st.totals[op].count > 0)
  out.push(`operations:${ops.length ? '' : ' none yet'}`)
  for (const op of ops) out.push(`  ${op.padEnd(8)} ${String(st.totals[op].count).padStart(7)} × ${simTime(st.totals[op].seconds)}`)
  return out.join('\n') + '\n'
}

export function registerTier(program: Command, ctx: Ctx): void {
  const tier = program.command('tier').description('storage tiers: virtual tape libraries that old generations will migrate to')
  tier
    .command('add')
    .description('add a tier: creates a virtual tape library in DIR (which must not exist) with its cartridges in slots and its drives empty')
    .argument('<name>', 'tier name (letters, digits, . _ -)')
    .requiredOption('--vtl <dir>', 'directory of the virtual tape library to create')
    .addOption(new Option('--model <model>', 'tape drive and media model').choices(Object.keys(MODELS)).default('lto9'))
    .option('--cartridges <n>', 'cartridges (labelled BFS001L9, BFS002L9, …), one per slot', int('--cartridges', 1, 999), 10)
    .option('--drives <n>', 'tape drives', int('--drives', 1, 64), 1)
    .option('--clock-scale <f>', 'real seconds slept per simulated second: 1 = real time, 0 = account the time only', scale, 1)
    .option('--json', 'print the tier as JSON')
    .action(async (name: string, o) => {
      const repo = await openTapeRepo(ctx)
      const { tier: t, library } = addVtlTier(repo, name, { dir: o.vtl, model: o.model, cartridges: o.cartridges, drives: o.drives, clockScale: o.clockScale })
      const st = library.status()
      if (o.json) process.stdout.write(JSON.stringify({ ...t, cartridges: st.cartridges.map((c) => c.label), drives: st.drives.length, clockScale: st.clockScale }) + '\n')
      else process.stdout.write(`added tier ${t.name}: virtual tape library ${t.dir} (${t.model}, ${count(st.cartridges.length, 'cartridge')} ${st.cartridges[0]!.label}…, ${count(st.drives.length, 'drive')}, clock scale ${st.clockScale})\n`)
    })
  tier
    .command('ls')
    .description('list the tiers')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const rows = listTiers(await openTapeRepo(ctx)).map((t) => {
        try {
          const s = VirtualTapeLibrary.readState(t.dir)
          return { ...t, cartridges: s.cartridges.length, drives: s.drives.length, clockScale: s.clockScale, ok: true, error: '' }
        } catch (err) {
          return { ...t, cartridges: 0, drives: 0, clockScale: 0, ok: false, error: (tapeToBfs(err) as Error).message }
        }
      })
      if (o.json) {
        process.stdout.write(JSON.stringify(rows) + '\n')
        return
      }
      const head = ['NAME', 'KIND', 'MODEL', 'CARTRIDGES', 'DRIVES', 'SCALE', 'DIR']
      const cells = rows.map((r) => [r.name, r.kind, r.model, r.ok ? String(r.cartridges) : '?', r.ok ? String(r.drives) : '?', r.ok ? String(r.clockScale) : '?', r.ok ? r.dir : `${r.dir} (${r.error})`])
      const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
      for (const r of [head, ...cells]) process.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n')
    })
  tier
    .command('status')
    .description("a tier's library (drives, what is loaded where, positions, the simulated clock and what it was spent on), the recall service (drives, queue) and the buffer cache")
    .argument('<name>')
    .option('--json', 'print JSON')
    .action(async (name: string, o) => {
      const repo = await openTapeRepo(ctx)
      const { library } = openTier(repo, name)
      let st: LibraryStatus
      try {
        st = library.status()
      } catch (err) {
        throw tapeToBfs(err)
      }
      const svc = await serviceStatus(repo)
      process.stdout.write(o.json ? JSON.stringify({ name, ...st, ...svc.json }) + '\n' : statusText(name, st) + svc.text.join('\n') + '\n')
    })
  registerServe(tier, ctx)
}
