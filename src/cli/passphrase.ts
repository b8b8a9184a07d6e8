/**
 * Where an encrypted repository's passphrase comes from (issue 18): `--password-file FILE`,
 * else `$BFS_PASSWORD`, else a prompt on the terminal (no echo). No command uses it yet:
 * `bfs init --encrypt` and `bfs key` arrive with the encryption of every object.
 */
import fs from 'node:fs'
import { BfsError } from '../repo/errors.js'

export interface PassphraseSource {
  /** `--password-file FILE`: its content without one trailing newline (\n or \r\n). */
  passwordFile?: string
  /** The environment ($BFS_PASSWORD); default process.env. */
  env?: NodeJS.ProcessEnv
  /** What the prompt says, e.g. `passphrase for /repo: `. */
  prompt: string
  /** A new passphrase: asked twice at the terminal, and refused when the two differ. */
  confirm?: boolean
  /** The terminal; default process.stdin and process.stderr. */
  tty?: { input: NodeJS.ReadStream; output: NodeJS.WriteStream }
}

export async function readPassphrase(o: PassphraseSource): Promise<string> {
  if (o.passwordFile !== undefined) {
    let text: string
    try {
      text = fs.readFileSync(o.passwordFile, 'utf8')
    } catch (err) {
      throw new BfsError('BAD_INPUT', `cannot read the password file ${o.passwordFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    const pass = text.replace(/\r?\n$/, '')
    if (pass === '') throw new BfsError('BAD_INPUT', `the password file ${o.passwordFile} is empty`)
    return pass
  }
  const env = (o.env ?? process.env).BFS_PASSWORD
  if (env !== undefined && env !== '') return env
  const tty = o.tty ?? { input: process.stdin, output: process.stderr }
  if (!tty.input.isTTY) throw new BfsError('USAGE', 'no passphrase: give --password-file FILE or set BFS_PASSWORD (no terminal to ask on)')
  const first = await ask(tty, o.prompt)
  if (first === '') throw new BfsError('BAD_INPUT', 'an empty passphrase')
  if (o.confirm && (await ask(tty, 'again: ')) !== first) throw new BfsError('BAD_INPUT', 'the two passphrases differ')
  return first
}

/** One line from the terminal in raw mode, not echoed; Ctrl-C interrupts, Ctrl-D on an empty line ends it. */
function ask(tty: { input: NodeJS.ReadStream; output: NodeJS.WriteStream }, prompt: string): Promise<string> {
  const { input, output } = tty
  // raw (no echo) before the prompt shows: what is typed after it is never echoed
  const wasRaw = input.isRaw
  input.setRawMode(true)
  input.resume()
  output.write(prompt)
  return new Promise((resolve, reject) => {
    let line = ''
    const done = (err: Error | null): void => {
      input.off('data', onData)
      input.setRawMode(wasRaw)
      input.pause()
      output.write('\n')
      if (err) reject(err)
      else resolve(line)
    }
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done(null)
        if (ch === '\u0003') return done(new BfsError('INTERRUPTED', 'interrupted'))
        if (ch === '\u0004') {
          if (line === '') return done(null)
        } else if (ch === '\u007f' || ch === '\b') line = [...line].slice(0, -1).join('')
        else if (ch === '\u0015') line = '' // Ctrl-U
        else if (ch >= ' ') line += ch
      }
    }
    input.on('data', onData)
  })
}
