/**
 * The passphrase opens none of the repository's key files (exit 7, README "Exit status").
 * In a module of its own, importing nothing: the CLI's error report maps it without loading
 * the rest of the crypto layer (a mount loads only what it needs).
 */
export class PassphraseError extends Error {
  override readonly name = 'PassphraseError'
  readonly code = 'BAD_PASSPHRASE'
}
