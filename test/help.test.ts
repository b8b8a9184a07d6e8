import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BFS, bfs, newRepo, sh, tmpdir } from './helpers.js'

// `bfs help COMMAND`, the man page and the shell completions: all generated from the one
// set of command definitions, checked here against the CLI's own --help and real shells.

let work: string
let repo: string
let oneGenRepo: string
/** Every command path as `bfs --help` and its groups' --help list them (e.g. `backup`, `group add`). */
let commands: string[][]

/** The command names a --help text lists under "Commands:" (the first word of each entry). */
function listed(helpText: string): string[] {
  const part = helpText.split(/^Commands:\n/m)[1]
  if (!part) return []
  return part.split(/\n(?!  )/)[0]!.split('\n').map((l) => /^  (\S+)/.exec(l)?.[1]).filter((x): x is string => !!x).map((n) => n.split('|')[0]!)
}

/** `bfs … --help`, each run once. */
const helps = new Map<string, Promise<Awaited<ReturnType<typeof bfs>>>>()
const helpOf = (c: string[]): ReturnType<typeof bfs> => {
  const k = c.join(' ')
  if (!helps.has(k)) helps.set(k, bfs([...c, '--help']))
  return helps.get(k)!
}

/** fn over items, four at a time (every call is a Node start-up). */
async function each<T>(items: T[], fn: (x: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += 4) await Promise.all(items.slice(i, i + 4).map(fn))
}

beforeAll(async () => {
  work = tmpdir('bfs-help-')
  repo = await newRepo(path.join(work, 'repo'))
  oneGenRepo = await newRepo(path.join(work, 'repo1'))
  const src = path.join(work, 'src')
  fs.mkdirSync(src)
  fs.writeFileSync(path.join(src, 'f'), 'x\n')
  for (const r of [repo, repo, repo, oneGenRepo]) expect((await bfs(['backup', src], { repo: r })).code).toBe(0)
  commands = []
  const top = await helpOf([])
  for (const c of listed(top.stdout)) {
    commands.push([c])
    if (c === 'help') continue
    for (const s of listed((await helpOf([c])).stdout)) if (s !== 'help') commands.push([c, s])
  }
})
afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true })
})

describe('bfs help COMMAND', () => {
  it('prints the same text as bfs COMMAND --help, for every command and subcommand', async () => {
    expect(commands.length).toBeGreaterThan(15) // init, backup, … group add, tier status: the list itself was read
    await each(commands, async (c) => {
      const [viaHelp, viaFlag] = await Promise.all([bfs(['help', ...c]), helpOf(c)])
      expect(viaFlag.code, c.join(' ')).toBe(0)
      expect(viaHelp.code, c.join(' ')).toBe(0)
      expect(viaHelp.stdout, c.join(' ')).toBe(viaFlag.stdout)
      expect(viaHelp.stdout).toMatch(new RegExp(`^Usage: bfs ${c.join(' ')}[ |]`))
    })
    // bare `bfs help` is the program's help
    expect((await bfs(['help'])).stdout).toBe((await bfs(['--help'])).stdout)
  })

  it('an unknown command is one line on stderr and exit 2 (commander printed the program help, exit 0)', async () => {
    for (const args of [['help', 'nosuch'], ['help', 'group', 'nosuch'], ['help', 'backup', 'x']]) {
      const r = await bfs(args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr).toBe(`bfs: unknown command '${args.slice(1).join(' ')}' (see 'bfs --help')\n`)
    }
  })
})

describe('man page', () => {
  it('renders with man -l and documents every command, option and exit code', async () => {
    const page = path.join(work, 'bfs.1')
    const g = await bfs(['generate', 'man'])
    expect(g.code).toBe(0)
    fs.writeFileSync(page, g.stdout)
    const r = await sh(`MANWIDTH=200 man -l '${page}' 2>&1 >/dev/null; MANWIDTH=200 man -l '${page}' | col -b`)
    // man writes troff's warnings to stderr (first command): none
    const [warnings, text] = [(await sh(`MANWIDTH=200 man --warnings -l '${page}' 2>&1 >/dev/null`)).stdout, r.stdout]
    expect(warnings).toBe('')
    expect(text).toMatch(/^BFS\(1\)/)
    for (const c of commands) expect(text, c.join(' ')).toMatch(new RegExp(`^ {3}bfs ${c.join(' ')}[ |\\n]`, 'm'))
    // every option of every command's --help is in the page, and each exit code of --help
    for (const c of commands) {
      const h = (await helpOf(c)).stdout
      const opts = h.split(/^Options:\n/m)[1]?.split(/\n(?! )/)[0] ?? ''
      for (const term of opts.split('\n').map((l) => /^  (-\S.*?)(?:  |$)/.exec(l)?.[1]).filter((x): x is string => !!x)) expect(text, `${c.join(' ')} ${term}`).toContain(term)
    }
    for (const code of ['0', '1', '2', '3', '4', '5', '6', '70', '130']) expect(text).toMatch(new RegExp(`^ {7}${code}\\s`, 'm'))
    expect(text).toContain('BFS_REPO')
  })
})

/** Runs bash with the generated completion sourced and reports COMPREPLY for each word list. */
async function bashComplete(cases: string[][]): Promise<string[]> {
  const script = path.join(work, 'bfs.bash')
  fs.writeFileSync(script, (await bfs(['generate', 'bash'])).stdout)
  const probe = path.join(work, 'probe.bash')
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`
  fs.writeFileSync(probe, [
    `set -u`,
    `PATH=${q(path.dirname(BFS))}:$PATH`,
    `unset BFS_REPO`,
    `source ${q(script)}`,
    `complete -p bfs`,
    `c() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=\${#COMP_LINE}; COMPREPLY=(); _bfs; echo "=> \${COMPREPLY[*]}"; }`,
    ...cases.map((ws) => `c ${ws.map(q).join(' ')}`),
  ].join('\n') + '\n')
  const r = await sh(`cd ${q(work)} && bash ${q(probe)}`)
  expect(r.stderr).toBe('')
  expect(r.code).toBe(0)
  const lines = r.stdout.trimEnd().split('\n')
  expect(lines[0]).toBe('complete -F _bfs bfs')
  return lines.slice(1).map((l) => l.replace(/^=> ?/, ''))
}

describe('bash completion', () => {
  it('completes commands, subcommands, options, choices, generations of the repository named, and files', async () => {
    fs.mkdirSync(path.join(work, 'restore-here'), { recursive: true })
    const out = await bashComplete([
      ['bfs', 'ba'],
      ['bfs', 'gro'],
      ['bfs', 'group', ''],
      ['bfs', 'backup', '--one'],
      ['bfs', 'backup', '--mode', ''],
      ['bfs', '--repo', repo, 'ls', ''],
      ['bfs', '--repo', repo, 'verify', 'gen'],
      ['bfs', `--repo=${oneGenRepo}`, 'restore', ''],
      ['bfs', '--repo', repo, 'backup', '--base', 'gen2'],
      ['bfs', '--repo', repo, 'restore', 'gen1', 'restore-h'],
      ['bfs', '--repo', path.join(work, 'nothing-here'), 'cat', ''],
      ['bfs', 'help', 'gr'],
      ['bfs', 'help', 'tier', 's'],
      ['bfs', 'generate', ''],
      ['bfs', '--re'],
      ['bfs', '--repo', 'rep'],
    ])
    expect(out).toEqual([
      'backup',
      'group',
      'add ls show rm help',
      '--one-file-system',
      'auto file volume',
      'latest gen1 gen2 gen3',
      'gen1 gen2 gen3',
      'latest gen1',
      'gen2',
      'restore-here',
      'latest', // no repository there: only the name that needs none
      'group',
      'status',
      'man bash zsh',
      '--repo',
      'repo repo1',
    ])
  })

  it('the repository comes from $BFS_REPO when the command line names none', async () => {
    const script = path.join(work, 'bfs.bash')
    fs.writeFileSync(script, (await bfs(['generate', 'bash'])).stdout)
    const r = await sh(`PATH='${path.dirname(BFS)}':$PATH BFS_REPO='${oneGenRepo}' bash -c 'source ${script}; COMP_WORDS=(bfs restore ""); COMP_CWORD=2; _bfs; echo "\${COMPREPLY[*]}"'`)
    expect(r.stdout).toBe('latest gen1\n')
  })
})

describe('zsh completion', () => {
  it('completes in a real interactive zsh (zpty): commands, options, choices, generations', async () => {
    if ((await sh('command -v zsh')).code !== 0) {
      // `make test` installs zsh (APT_PKGS); say so rather than pass quietly
      throw new Error('zsh is not installed (apt-get install zsh)')
    }
    const dir = path.join(work, 'zfunc')
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, '_bfs'), (await bfs(['generate', 'zsh'])).stdout)
    expect((await sh(`zsh -n '${dir}/_bfs'`)).code).toBe(0)
    const probes = ['bfs ba', 'bfs backup --one', 'bfs generate z', `bfs --repo ${oneGenRepo} restore ge`, `bfs --repo ${oneGenRepo} ls gen1 --so`, 'bfs help tier st']
    const script = path.join(work, 'probe.zsh')
    // A zle widget bound to ^T appends the edited line to a file (not to the terminal, whose
    // redraws would garble it); Tab runs the completion installed from the generated file.
    const out = path.join(work, 'zsh-lines')
    fs.writeFileSync(out, '')
    fs.writeFileSync(script, `zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z 'PATH=${path.dirname(BFS)}:$PATH; fpath=(${dir} $fpath); autoload -U compinit; compinit -u -D; show() { print -r -- "<$BUFFER>" >> ${out} }; zle -N show; bindkey "^T" show'
n=0
probe() {
  zpty -w -n z "$1"$'\\t\\x14'
  (( n++ ))
  local junk
  while (( $(wc -l < ${out}) < n )); do zpty -r -t z junk; sleep 0.1; done
  zpty -w -n z $'\\x15' # ^U, only now: with typeahead pending zle does not complete
}
${probes.map((p) => `probe '${p}'`).join('\n')}
zpty -d z
`)
    const r = await sh(`timeout 120 zsh -f '${script}'`)
    expect(r.code).toBe(0)
    expect(fs.readFileSync(out, 'utf8').trimEnd().split('\n')).toEqual([
      '<bfs backup >',
      '<bfs backup --one-file-system >',
      '<bfs generate zsh >',
      `<bfs --repo ${oneGenRepo} restore gen1 >`,
      `<bfs --repo ${oneGenRepo} ls gen1 --source >`,
      '<bfs help tier status >',
    ])
  })
})
