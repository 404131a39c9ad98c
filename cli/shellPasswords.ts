// Ledger passwords for the shell commands that open or re-replicate ledgers: `--password` (kept for
// scripts, but visible to every user of the host in `ps`), `--password-file FILE` (one password per
// line), or the QUIRE_PASSWORD variable; none of them: the empty password.
// Invariants: --password and --password-file together are INVALID_CONFIG; a file that cannot be
// read is INVALID_CONFIG naming it, never showing what it holds; a password never reaches a message.

import { QuireError } from '../machines/errors.ts'
import { readSettingFile } from './settings.ts'

export const PASSWORD_ENV = 'QUIRE_PASSWORD'

export interface PasswordOptions {
  password?: string | string[]
  passwordFile?: string
}

/** Every password given (in order), or [''] when none is. */
export function ledgerPasswords(o: PasswordOptions, env: Record<string, string | undefined> = process.env): string[] {
  if (o.password !== undefined && o.passwordFile !== undefined) {
    throw new QuireError('INVALID_CONFIG', 'give --password or --password-file, not both')
  }
  if (o.password !== undefined) return Array.isArray(o.password) ? o.password : [o.password]
  if (o.passwordFile !== undefined) {
    const lines = readSettingFile(o.passwordFile, '--password-file').split(/\r?\n/)
    if (lines[lines.length - 1] === '') lines.pop()
    if (lines.length === 0) throw new QuireError('INVALID_CONFIG', `--password-file ${o.passwordFile} holds no password`, { file: o.passwordFile })
    return lines
  }
  const fromEnv = env[PASSWORD_ENV]
  return fromEnv === undefined || fromEnv === '' ? [''] : [fromEnv]
}

/** The one password of a command that opens one ledger: the first given. */
export function ledgerPassword(o: PasswordOptions, env: Record<string, string | undefined> = process.env): string {
  return ledgerPasswords(o, env)[0]!
}
