// The node settings table (cli/settings.ts): defaults, precedence flag > env > config file >
// default, INVALID_CONFIG for unknown config keys and bad values (naming where they came from),
// the config file reader, the roles check of cli/nodeCmd.ts, and docs/operations.md carrying the table.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT } from '../../cli/cluster.ts'
import { checkRoles } from '../../cli/nodeCmd.ts'
import { SETTINGS, SETTING_NAMES, loadConfigFile, renderSettingsTable, resolveSettings, type SettingInputs } from '../../cli/settings.ts'
import { ROLE_DEFAULTS } from '../../machines/defaults.ts'
import { isQuireError } from '../../machines/errors.ts'

function invalid(inputs: SettingInputs): string {
  try {
    resolveSettings(inputs)
  } catch (err) {
    assert.ok(isQuireError(err, 'INVALID_CONFIG'), `expected INVALID_CONFIG, got ${String(err)}`)
    return (err as Error).message
  }
  assert.unreachable(`no error for ${JSON.stringify(inputs)}`)
  return ''
}

test('defaults: every setting from the table, sourced from the default', () => {
  const { settings, sources } = resolveSettings({ env: {} })
  assert.equal(settings.nats, ['nats://127.0.0.1:4222'])
  assert.equal(settings.roles, ['bookie'])
  assert.is(settings.data, undefined)
  assert.is(settings.bookieId, undefined)
  const expected: Record<string, number> = {
    heartbeatMs: 1000, journalGroupWaitMs: 0, journalGroupBytes: 524288, checkpointMs: 30000,
    diskUsageThreshold: 0.95, diskUsageLwmThreshold: 0.9, diskCheckIntervalMs: 10000, diskQuotaBytes: 0,
    gcIntervalMs: 60000, lostBookieRecoveryDelayMs: 30000, auditorLeaseMs: 10000, auditIntervalMs: 60000,
    replicationGraceMs: 10000, claimLeaseMs: 30000, metadataReplicas: 0, metadataStartTimeoutMs: 60000,
  }
  for (const [k, v] of Object.entries(expected)) assert.is(settings[k as keyof typeof settings], v, k)
  for (const n of SETTING_NAMES) assert.is(sources[n], 'default', n)
})

test('the roles\' defaults are the table\'s: each one in machines/defaults.ts is a setting with that default', () => {
  for (const [name, value] of Object.entries(ROLE_DEFAULTS)) {
    assert.ok(name in SETTINGS, `${name} is a setting`)
    assert.is(SETTINGS[name as keyof typeof SETTINGS].default, value, name)
  }
  assert.is(resolveSettings({ env: {} }).settings.heartbeatMs, ROLE_DEFAULTS.heartbeatMs)
})

test('precedence: flag > env > config file > default, per setting', () => {
  const config = { heartbeatMs: 300, checkpointMs: 3000, journalGroupBytes: 4096, gcIntervalMs: 700 }
  const env = { QUIRE_HEARTBEAT_MS: '250', QUIRE_CHECKPOINT_MS: '2500', QUIRE_GC_INTERVAL_MS: '' }
  const flags = { heartbeatMs: '200' }
  const { settings, sources } = resolveSettings({ flags, env, config, configPath: '/etc/quire.json' })
  assert.is(settings.heartbeatMs, 200)
  assert.is(sources.heartbeatMs, 'flag')
  assert.is(settings.checkpointMs, 2500)
  assert.is(sources.checkpointMs, 'env')
  assert.is(settings.journalGroupBytes, 4096)
  assert.is(sources.journalGroupBytes, 'config')
  assert.is(settings.gcIntervalMs, 700, 'an empty env var is unset: the config file value stands')
  assert.is(sources.gcIntervalMs, 'config')
  assert.is(settings.journalGroupWaitMs, 0)
  assert.is(sources.journalGroupWaitMs, 'default')
})

test('lists: comma-separated in flags and env, JSON arrays or strings in the config file', () => {
  const a = resolveSettings({ env: { QUIRE_NATS: 'nats://a:1, nats://b:2' }, config: { roles: ['bookie'] } })
  assert.equal(a.settings.nats, ['nats://a:1', 'nats://b:2'])
  const b = resolveSettings({ config: { nats: ['nats://c:3', 'nats://d:4'], roles: 'bookie,auditor' } })
  assert.equal(b.settings.nats, ['nats://c:3', 'nats://d:4'])
  assert.equal(b.settings.roles, ['bookie', 'auditor'])
})

test('data: relative to the config file in the file, to the working directory elsewhere', () => {
  const fromFile = resolveSettings({ config: { data: 'disk1' }, configPath: '/etc/quire/node.json' })
  assert.is(fromFile.settings.data, '/etc/quire/disk1')
  const fromFlag = resolveSettings({ flags: { data: 'disk1' }, config: { data: 'other' }, configPath: '/etc/quire/node.json' })
  assert.is(fromFlag.settings.data, path.resolve('disk1'))
})

test('unknown config keys are INVALID_CONFIG naming the key and a near setting', () => {
  const msg = invalid({ config: { heartbeatMS: 100 }, configPath: '/x/quire.json' })
  assert.match(msg, /unknown setting "heartbeatMS" in \/x\/quire.json/)
  assert.match(msg, /did you mean heartbeatMs/)
  assert.match(invalid({ config: { nope: 1 } }), /unknown setting "nope"/)
})

test('bad values are INVALID_CONFIG naming the flag, variable or config key', () => {
  assert.match(invalid({ flags: { heartbeatMs: '10' } }), /--heartbeat-ms must be an integer >= 50, got "10"/)
  assert.match(invalid({ env: { QUIRE_HEARTBEAT_MS: 'abc' } }), /QUIRE_HEARTBEAT_MS must be a number/)
  assert.match(invalid({ config: { heartbeatMs: '1000' }, configPath: 'q.json' }), /"heartbeatMs" in q.json must be a number/)
  assert.match(invalid({ config: { checkpointMs: 1.5 } }), /must be an integer/)
  assert.match(invalid({ env: { QUIRE_DISK_USAGE_THRESHOLD: '1.5' } }), /QUIRE_DISK_USAGE_THRESHOLD must be a fraction in \(0, 1\]/)
  assert.match(invalid({ config: { diskUsageThreshold: 0 } }), /fraction/)
  assert.match(invalid({ config: { diskUsageThreshold: 0.8 } }), /diskUsageLwmThreshold \(0.9.*must not exceed diskUsageThreshold \(0.8/)
  assert.match(invalid({ flags: { roles: 'bookie,nobody' } }), /unknown role "nobody"/)
  assert.match(invalid({ flags: { roles: 'bookie,bookie' } }), /twice/)
  assert.match(invalid({ flags: { bookieId: 'a.b' } }), /--id must be letters, digits/)
  assert.match(invalid({ config: { nats: [] } }), /at least one NATS URL/)
  assert.match(invalid({ config: { data: 5 } }), /must be a path/)
})

test('loadConfigFile: JSON object only, INVALID_CONFIG otherwise', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-settings-'))
  try {
    const good = path.join(dir, 'good.json')
    await writeFile(good, JSON.stringify({ heartbeatMs: 400 }))
    assert.equal(await loadConfigFile(good), { heartbeatMs: 400 })
    const cases: Array<[string, string | null, RegExp]> = [
      ['bad.json', '{ heartbeatMs: 4', /not valid JSON/],
      ['array.json', '[1]', /JSON object/],
      ['missing.json', null, /cannot read config file/],
    ]
    for (const [name, text, re] of cases) {
      const file = path.join(dir, name)
      if (text !== null) await writeFile(file, text)
      const err = await loadConfigFile(file).then(() => null, (e: unknown) => e)
      assert.ok(isQuireError(err, 'INVALID_CONFIG'), `${name}: ${String(err)}`)
      assert.match((err as Error).message, re)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('roles: the auditor and the replicator need no data folder; the bookie needs --data', () => {
  const roles = (r: string, data?: string) => resolveSettings({ flags: { roles: r, ...(data ? { data } : {}) } }).settings
  checkRoles(roles('bookie', '/tmp/x'))
  checkRoles(roles('bookie,auditor,replicator', '/tmp/x'))
  checkRoles(roles('auditor,replicator'))
  try {
    checkRoles(roles('bookie'))
    assert.unreachable('no data')
  } catch (err) {
    assert.ok(isQuireError(err, 'INVALID_CONFIG'), String(err))
    assert.match((err as Error).message, /--data/)
  }
})

test('the Markdown table has a row per setting with its env var and flag, and docs/operations.md carries it', async () => {
  const table = renderSettingsTable()
  const rows = table.split('\n')
  assert.is(rows.length, SETTING_NAMES.length + 2)
  for (const n of SETTING_NAMES) {
    const row = rows.find((r) => r.startsWith(`| \`${n}\` |`))
    assert.ok(row, `row for ${n}`)
    const flag = SETTINGS[n].flag
    assert.ok(row!.includes(SETTINGS[n].env) && (flag === undefined ? row!.includes('(none: a secret)') : row!.includes(flag)), row)
  }
  const doc = await readFile(path.join(REPO_ROOT, 'docs/operations.md'), 'utf8')
  for (const n of SETTING_NAMES) assert.ok(doc.includes(`\`${n}\``), `docs/operations.md names ${n}`)
  assert.ok(doc.includes(table), 'docs/operations.md holds the table as renderSettingsTable() prints it (quire node --print-settings)')
})

test('metadataReplicas: 0 (the cluster decides) to 5; anything else is INVALID_CONFIG', () => {
  assert.is(resolveSettings({ flags: { metadataReplicas: '3' } }).settings.metadataReplicas, 3)
  assert.is(resolveSettings({ env: { QUIRE_METADATA_REPLICAS: '1' } }).settings.metadataReplicas, 1)
  for (const bad of ['6', '-1', 'three']) {
    try {
      resolveSettings({ flags: { metadataReplicas: bad } })
      assert.unreachable(bad)
    } catch (err) {
      assert.ok(isQuireError(err, 'INVALID_CONFIG'), String(err))
    }
  }
})

test('inspect: off by default; true/false/1/0 from a flag or env, a JSON boolean in the config file', () => {
  assert.is(resolveSettings({ env: {} }).settings.inspect, false)
  assert.is(resolveSettings({ flags: { inspect: 'true' } }).settings.inspect, true)
  assert.is(resolveSettings({ env: { QUIRE_INSPECT: '1' } }).settings.inspect, true)
  assert.is(resolveSettings({ env: { QUIRE_INSPECT: 'false' }, config: { inspect: true } }).settings.inspect, false)
  assert.is(resolveSettings({ config: { inspect: true }, configPath: '/etc/quire.json' }).settings.inspect, true)
  assert.match(invalid({ env: { QUIRE_INSPECT: 'yes' } }), /QUIRE_INSPECT must be true or false, got "yes"/)
  assert.match(invalid({ config: { inspect: 'true' }, configPath: '/etc/quire.json' }), /"inspect" in \/etc\/quire.json must be true or false/)
})

test.run()
