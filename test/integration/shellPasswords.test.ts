// Ledger passwords of the shell commands (cli/shellPasswords.ts): --password, --password-file (one
// per line), QUIRE_PASSWORD, in that order, the empty password when none is given; both flags, or a
// file that cannot be read or holds nothing, are INVALID_CONFIG that never show a password.

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { ledgerPassword, ledgerPasswords } from '../../cli/shellPasswords.ts'
import { isQuireError } from '../../machines/errors.ts'

function invalid(f: () => unknown, pattern: RegExp): void {
  try {
    f()
  } catch (err) {
    assert.ok(isQuireError(err, 'INVALID_CONFIG'), String(err))
    assert.match((err as Error).message, pattern)
    assert.not.ok((err as Error).message.includes('pw-'), 'a password in the message')
    return
  }
  assert.unreachable('accepted')
}

test('flag, then file, then QUIRE_PASSWORD, else the empty password; a file gives one password per line', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-passwords-'))
  try {
    const file = path.join(dir, 'passwords')
    await writeFile(file, 'pw-one\r\npw-two\n\npw-four\n')
    assert.equal(ledgerPasswords({ passwordFile: file }), ['pw-one', 'pw-two', '', 'pw-four'])
    assert.is(ledgerPassword({ passwordFile: file }), 'pw-one')
    assert.equal(ledgerPasswords({ password: ['pw-a', 'pw-b'] }, { QUIRE_PASSWORD: 'pw-env' }), ['pw-a', 'pw-b'])
    assert.is(ledgerPassword({ password: 'pw-a' }, { QUIRE_PASSWORD: 'pw-env' }), 'pw-a')
    assert.is(ledgerPassword({}, { QUIRE_PASSWORD: 'pw-env' }), 'pw-env')
    assert.equal(ledgerPasswords({}, {}), [''])
    assert.equal(ledgerPasswords({}, { QUIRE_PASSWORD: '' }), [''])
    invalid(() => ledgerPasswords({ password: 'pw-a', passwordFile: file }), /not both/)
    invalid(() => ledgerPasswords({ passwordFile: path.join(dir, 'missing') }), /cannot read --password-file .*missing \(ENOENT\)/)
    const empty = path.join(dir, 'empty')
    await writeFile(empty, '')
    invalid(() => ledgerPasswords({ passwordFile: empty }), /holds no password/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
