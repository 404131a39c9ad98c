// A node's NATS login and TLS settings (cli/settings.ts, cli/natsSettings.ts): secrets have no flag
// and come from the environment, the config file or a file; an invalid secret is refused without
// echoing it; the settings as logged show *** for every secret set; the settings turn into the
// NatsAuth the node's connections present, and contradictory or unreadable ones are INVALID_CONFIG.

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { natsAuthFromSettings } from '../../cli/natsSettings.ts'
import { SECRET_SETTINGS, SETTINGS, redactSettings, resolveSettings } from '../../cli/settings.ts'
import { isQuireError } from '../../machines/errors.ts'

const PASSWORD = 'pw-77d1'

function invalidConfig(f: () => unknown, pattern: RegExp): string {
  try {
    f()
  } catch (err) {
    assert.ok(isQuireError(err, 'INVALID_CONFIG'), String(err))
    assert.match((err as Error).message, pattern)
    return (err as Error).message
  }
  assert.unreachable('accepted')
  return ''
}

test('secrets have no flag, come from the environment or the config file, and show as *** in the settings as logged', () => {
  for (const name of SECRET_SETTINGS) assert.is(SETTINGS[name].flag, undefined, `${name} has a flag`)
  const fromEnv = resolveSettings({ env: { QUIRE_NATS_USER: 'alice', QUIRE_NATS_PASSWORD: PASSWORD } })
  assert.is(fromEnv.settings.natsPassword, PASSWORD)
  assert.is(fromEnv.sources.natsPassword, 'env')
  const fromConfig = resolveSettings({ env: {}, config: { natsToken: 'tok' } })
  assert.is(fromConfig.settings.natsToken, 'tok')
  const logged = redactSettings(fromEnv.settings)
  assert.is(logged['natsPassword'], '***')
  assert.is(logged['natsUser'], 'alice')
  assert.is(logged['natsToken'], undefined, 'an unset secret stays unset')
  assert.not.ok(JSON.stringify(logged).includes(PASSWORD))
  // A bad value is named by where it came from, never echoed.
  const message = invalidConfig(() => resolveSettings({ env: {}, config: { natsPassword: 12345678 } }), /"natsPassword" in the config file must be a non-empty string, got a number/)
  assert.not.ok(message.includes('12345678'))
  invalidConfig(() => resolveSettings({ env: { QUIRE_NATS_USER: 'al ice' } }), /QUIRE_NATS_USER must be a name without spaces/)
})

test('settings to NatsAuth: a value or a file (its first line), not both; TLS from any natsTls* setting; none is undefined', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-nats-settings-'))
  try {
    const none = resolveSettings({ env: {} }).settings
    assert.is(natsAuthFromSettings(none), undefined)
    const file = path.join(dir, 'pw')
    await writeFile(file, `${PASSWORD}\nignored second line\n`)
    assert.equal(natsAuthFromSettings({ ...none, natsUser: 'alice', natsPasswordFile: file }), { user: 'alice', pass: PASSWORD })
    assert.equal(natsAuthFromSettings({ ...none, natsUser: 'alice', natsPassword: PASSWORD }), { user: 'alice', pass: PASSWORD })
    assert.equal(natsAuthFromSettings({ ...none, natsToken: 'tok' }), { token: 'tok' })
    assert.equal(natsAuthFromSettings({ ...none, natsCredsFile: '/c.creds', natsTlsCaFile: '/ca.pem' }), { credsFile: '/c.creds', tls: { caFile: '/ca.pem' } })
    assert.equal(natsAuthFromSettings({ ...none, natsNkeySeedFile: '/u.nk', natsTlsCertFile: '/c.pem', natsTlsKeyFile: '/k.pem' }),
      { nkeySeedFile: '/u.nk', tls: { certFile: '/c.pem', keyFile: '/k.pem' } })
    const both = invalidConfig(() => natsAuthFromSettings({ ...none, natsPassword: PASSWORD, natsPasswordFile: file }), /give natsPassword or natsPasswordFile, not both/)
    assert.not.ok(both.includes(PASSWORD))
    invalidConfig(() => natsAuthFromSettings({ ...none, natsTokenFile: path.join(dir, 'missing') }), /cannot read natsTokenFile .*missing \(ENOENT\)/)
    const empty = path.join(dir, 'empty')
    await writeFile(empty, '\n')
    invalidConfig(() => natsAuthFromSettings({ ...none, natsTokenFile: empty }), /natsTokenFile .*empty is empty/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test.run()
