// Every setting of a `quire node`, in one table: name, type, default, environment variable, flag
// and a one-line doc. The command's options, the config-file check, the resolution and the
// table in docs/operations.md are all derived from it, so a setting exists in all of them or in none.
// Precedence: flag > environment > config file (JSON, --config) > default.
// Invariants: a resolved NodeSettings holds only valid values; an unknown config key, a value of
// the wrong type or out of range is QuireError INVALID_CONFIG naming the setting and where the
// value came from. An empty environment variable counts as unset.

import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { ROLE_DEFAULTS } from '../machines/defaults.ts'
import { QuireError } from '../machines/errors.ts'

/** Roles a node can run. Which of them this build can start is decided in cli/nodeCmd.ts. */
export const ROLE_NAMES = ['bookie', 'auditor', 'replicator'] as const
export type RoleName = (typeof ROLE_NAMES)[number]

export interface NodeSettings {
  nats: string[]
  roles: RoleName[]
  data: string | undefined
  bookieId: string | undefined
  heartbeatMs: number
  journalGroupWaitMs: number
  journalGroupBytes: number
  checkpointMs: number
  maxEntryBytes: number
  diskUsageThreshold: number
  diskUsageLwmThreshold: number
  diskCheckIntervalMs: number
  diskQuotaBytes: number
  gcIntervalMs: number
  minorCompactionThreshold: number
  majorCompactionThreshold: number
  majorCompactionIntervalMs: number
  lostBookieRecoveryDelayMs: number
  auditorLeaseMs: number
  auditIntervalMs: number
  replicationGraceMs: number
  claimLeaseMs: number
  httpPort: number
  httpHost: string
  httpToken: string | undefined
  httpTokenFile: string | undefined
  metadataReplicas: number
  metadataStartTimeoutMs: number
  inspect: boolean
  natsUser: string | undefined
  natsPassword: string | undefined
  natsPasswordFile: string | undefined
  natsToken: string | undefined
  natsTokenFile: string | undefined
  natsNkeySeedFile: string | undefined
  natsCredsFile: string | undefined
  natsTlsCaFile: string | undefined
  natsTlsCertFile: string | undefined
  natsTlsKeyFile: string | undefined
  natsInboxPrefix: string | undefined
}

export type SettingName = keyof NodeSettings
export type SettingSource = 'flag' | 'env' | 'config' | 'default'

type Kind =
  | { type: 'urls' }
  | { type: 'roles' }
  | { type: 'path' }
  | { type: 'id' }
  | { type: 'integer'; min: number; max?: number }
  | { type: 'fraction' }
  | { type: 'host' }
  | { type: 'boolean' }
  | { type: 'name' }
  | { type: 'secret' }

interface SettingSpec<T> {
  kind: Kind
  default: T
  env: string
  /** Absent for a secret: argv is visible to every user of the host (`ps`), so it comes from env or config only. */
  flag?: string
  doc: string
}

/** Settings whose value is a secret: never a flag, never logged (see redactSettings). */
export const SECRET_SETTINGS: readonly SettingName[] = ['natsPassword', 'natsToken', 'httpToken']

const int = (min: number): Kind => ({ type: 'integer', min })

/** The table. Its key order is the order of `--help` and of docs/operations.md. */
export const SETTINGS: { readonly [K in SettingName]: SettingSpec<NodeSettings[K]> } = {
  nats: { kind: { type: 'urls' }, default: ['nats://127.0.0.1:4222'], env: 'QUIRE_NATS', flag: '--nats <urls>', doc: 'NATS server URLs, comma-separated (a list in the config file); the first is the home server' },
  roles: { kind: { type: 'roles' }, default: ['bookie'], env: 'QUIRE_ROLES', flag: '--roles <list>', doc: 'roles this node runs, comma-separated: bookie, auditor, replicator' },
  data: { kind: { type: 'path' }, default: undefined, env: 'QUIRE_DATA', flag: '--data <dir>', doc: 'the bookie\'s data folder (journal, entry store, bookie-id, cookie.json); required by the bookie role' },
  bookieId: { kind: { type: 'id' }, default: undefined, env: 'QUIRE_BOOKIE_ID', flag: '--id <id>', doc: 'bookie id; default: the one kept in the data folder, generated on first start' },
  heartbeatMs: { kind: int(50), default: ROLE_DEFAULTS.heartbeatMs, env: 'QUIRE_HEARTBEAT_MS', flag: '--heartbeat-ms <ms>', doc: 'registration heartbeat interval; a bookie 5 beats late is dead' },
  journalGroupWaitMs: { kind: int(0), default: ROLE_DEFAULTS.journalGroupWaitMs, env: 'QUIRE_JOURNAL_GROUP_WAIT_MS', flag: '--journal-group-wait-ms <ms>', doc: 'longest wait of a journal record before its group commit (0: next event-loop turn)' },
  journalGroupBytes: { kind: int(1), default: ROLE_DEFAULTS.journalGroupBytes, env: 'QUIRE_JOURNAL_GROUP_BYTES', flag: '--journal-group-bytes <n>', doc: 'bytes waiting that start a group commit at once' },
  checkpointMs: { kind: int(100), default: ROLE_DEFAULTS.checkpointMs, env: 'QUIRE_CHECKPOINT_MS', flag: '--checkpoint-ms <ms>', doc: 'interval between entry store checkpoints (older journal segments are then deleted)' },
  maxEntryBytes: { kind: int(1024), default: ROLE_DEFAULTS.maxEntryBytes, env: 'QUIRE_MAX_ENTRY_BYTES', flag: '--max-entry-bytes <n>', doc: 'largest entry the bookie accepts, header and digest included (published in its registration; writers refuse larger entries at append)' },
  diskUsageThreshold: { kind: { type: 'fraction' }, default: ROLE_DEFAULTS.diskUsageThreshold, env: 'QUIRE_DISK_USAGE_THRESHOLD', flag: '--disk-usage-threshold <f>', doc: 'fraction of the disk in use at which the bookie turns read-only' },
  diskUsageLwmThreshold: { kind: { type: 'fraction' }, default: ROLE_DEFAULTS.diskUsageLwmThreshold, env: 'QUIRE_DISK_USAGE_LWM_THRESHOLD', flag: '--disk-usage-lwm-threshold <f>', doc: 'fraction in use under which a read-only bookie turns writable again (<= diskUsageThreshold)' },
  diskCheckIntervalMs: { kind: int(10), default: ROLE_DEFAULTS.diskCheckIntervalMs, env: 'QUIRE_DISK_CHECK_INTERVAL_MS', flag: '--disk-check-interval-ms <ms>', doc: 'interval between disk usage checks' },
  diskQuotaBytes: { kind: int(0), default: ROLE_DEFAULTS.diskQuotaBytes, env: 'QUIRE_DISK_QUOTA_BYTES', flag: '--disk-quota-bytes <n>', doc: 'bytes the data folder may use; 0: use the filesystem\'s usage' },
  gcIntervalMs: { kind: int(0), default: ROLE_DEFAULTS.gcIntervalMs, env: 'QUIRE_GC_INTERVAL_MS', flag: '--gc-interval-ms <ms>', doc: 'interval between garbage collections of deleted ledgers\' entries (0: only when the disk fills)' },
  minorCompactionThreshold: { kind: { type: 'fraction' }, default: ROLE_DEFAULTS.minorCompactionThreshold, env: 'QUIRE_MINOR_COMPACTION_THRESHOLD', flag: '--minor-compaction-threshold <f>', doc: 'after a garbage collection that deleted ledgers, entry logs with less live data than this fraction are rewritten (minor compaction)' },
  majorCompactionThreshold: { kind: { type: 'fraction' }, default: ROLE_DEFAULTS.majorCompactionThreshold, env: 'QUIRE_MAJOR_COMPACTION_THRESHOLD', flag: '--major-compaction-threshold <f>', doc: 'the threshold of a major compaction (one per major-compaction-interval-ms)' },
  majorCompactionIntervalMs: { kind: int(0), default: ROLE_DEFAULTS.majorCompactionIntervalMs, env: 'QUIRE_MAJOR_COMPACTION_INTERVAL_MS', flag: '--major-compaction-interval-ms <ms>', doc: 'least time between major compactions (0: every compaction is major)' },
  lostBookieRecoveryDelayMs: { kind: int(0), default: ROLE_DEFAULTS.lostBookieRecoveryDelayMs, env: 'QUIRE_LOST_BOOKIE_RECOVERY_DELAY_MS', flag: '--lost-bookie-recovery-delay-ms <ms>', doc: 'how long a bookie must be dead before the auditor marks its ledgers under-replicated' },
  auditorLeaseMs: { kind: int(100), default: ROLE_DEFAULTS.auditorLeaseMs, env: 'QUIRE_AUDITOR_LEASE_MS', flag: '--auditor-lease-ms <ms>', doc: 'lease of the elected auditor; another node takes over after it lapses' },
  auditIntervalMs: { kind: int(100), default: ROLE_DEFAULTS.auditIntervalMs, env: 'QUIRE_AUDIT_INTERVAL_MS', flag: '--audit-interval-ms <ms>', doc: 'interval between full audits of ledger placement' },
  replicationGraceMs: { kind: int(0), default: ROLE_DEFAULTS.replicationGraceMs, env: 'QUIRE_REPLICATION_GRACE_MS', flag: '--replication-grace-ms <ms>', doc: 'how long a replicator leaves an open ledger to its writer before fencing it to re-replicate' },
  claimLeaseMs: { kind: int(100), default: ROLE_DEFAULTS.claimLeaseMs, env: 'QUIRE_CLAIM_LEASE_MS', flag: '--claim-lease-ms <ms>', doc: 'lease of a replicator\'s claim on an under-replicated ledger' },
  httpPort: { kind: { type: 'integer', min: 0, max: 65535 }, default: 0, env: 'QUIRE_HTTP_PORT', flag: '--http-port <port>', doc: 'port of the HTTP server (/metrics, /heartbeat, the admin API); 0: no HTTP server' },
  httpHost: { kind: { type: 'host' }, default: '127.0.0.1', env: 'QUIRE_HTTP_HOST', flag: '--http-host <host>', doc: 'address the HTTP server listens on (0.0.0.0: every interface)' },
  httpToken: { kind: { type: 'secret' }, default: undefined, env: 'QUIRE_HTTP_TOKEN', doc: 'bearer token every request to the HTTP server must carry (Authorization: Bearer ...), /metrics and /heartbeat included; unset: none needed (environment or config file only; or httpTokenFile)' },
  httpTokenFile: { kind: { type: 'path' }, default: undefined, env: 'QUIRE_HTTP_TOKEN_FILE', flag: '--http-token-file <file>', doc: 'file whose first line is the httpToken' },
  metadataReplicas: { kind: { type: 'integer', min: 0, max: 5 }, default: 0, env: 'QUIRE_METADATA_REPLICAS', flag: '--metadata-replicas <n>', doc: 'replicas of the metadata buckets (created so, or scaled up to it, never down); 0: min(3, servers in the NATS cluster)' },
  metadataStartTimeoutMs: { kind: int(0), default: 60_000, env: 'QUIRE_METADATA_START_TIMEOUT_MS', flag: '--metadata-start-timeout-ms <ms>', doc: 'how long a starting node retries opening the metadata buckets while the NATS cluster has no leader for them (servers starting, buckets electing); each retry is logged; 0: try once' },
  inspect: { kind: { type: 'boolean' }, default: false, env: 'QUIRE_INSPECT', flag: '--inspect', doc: 'publish the roles\' actors (bookie, its ledgers, auditor, replicator) on quire.inspect.> for `quire inspector`; off: nothing is published there (with many ledgers it is the largest share of a bookie\'s NATS messages)' },
  natsUser: { kind: { type: 'name' }, default: undefined, env: 'QUIRE_NATS_USER', flag: '--nats-user <name>', doc: 'NATS user name, with natsPassword or natsPasswordFile' },
  natsPassword: { kind: { type: 'secret' }, default: undefined, env: 'QUIRE_NATS_PASSWORD', doc: 'NATS password of natsUser (environment or config file only; or natsPasswordFile)' },
  natsPasswordFile: { kind: { type: 'path' }, default: undefined, env: 'QUIRE_NATS_PASSWORD_FILE', flag: '--nats-password-file <file>', doc: 'file holding the NATS password of natsUser (one line)' },
  natsToken: { kind: { type: 'secret' }, default: undefined, env: 'QUIRE_NATS_TOKEN', doc: 'NATS token (environment or config file only; or natsTokenFile)' },
  natsTokenFile: { kind: { type: 'path' }, default: undefined, env: 'QUIRE_NATS_TOKEN_FILE', flag: '--nats-token-file <file>', doc: 'file holding the NATS token (one line)' },
  natsNkeySeedFile: { kind: { type: 'path' }, default: undefined, env: 'QUIRE_NATS_NKEY_SEED_FILE', flag: '--nats-nkey-seed-file <file>', doc: 'file holding a NATS user nkey seed (SU...)' },
  natsCredsFile: { kind: { type: 'path' }, default: undefined, env: 'QUIRE_NATS_CREDS_FILE', flag: '--nats-creds-file <file>', doc: 'NATS .creds file (user JWT and nkey seed: decentralised auth)' },
  natsTlsCaFile: { kind: { type: 'path' }, default: undefined, env: 'QUIRE_NATS_TLS_CA_FILE', flag: '--nats-tls-ca-file <file>', doc: 'PEM file of the CA that signed the NATS servers\' certificates; any natsTls* setting requires TLS' },
  natsTlsCertFile: { kind: { type: 'path' }, default: undefined, env: 'QUIRE_NATS_TLS_CERT_FILE', flag: '--nats-tls-cert-file <file>', doc: 'PEM file of this node\'s client certificate, for NATS servers that verify clients (mutual TLS)' },
  natsTlsKeyFile: { kind: { type: 'path' }, default: undefined, env: 'QUIRE_NATS_TLS_KEY_FILE', flag: '--nats-tls-key-file <file>', doc: 'PEM file of the key of natsTlsCertFile' },
  natsInboxPrefix: { kind: { type: 'name' }, default: undefined, env: 'QUIRE_NATS_INBOX_PREFIX', flag: '--nats-inbox-prefix <prefix>', doc: 'prefix of this process\'s NATS reply subjects (default _INBOX), for a NATS user allowed to subscribe under its own prefix only' },
}

export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[]

/** Where each given value came from, for error messages. */
function origin(name: SettingName, source: SettingSource, configPath?: string): string {
  const spec = SETTINGS[name]
  switch (source) {
    case 'flag': return `${(spec.flag ?? name).split(' ')[0]}`
    case 'env': return spec.env
    case 'config': return `"${name}" in ${configPath ?? 'the config file'}`
    case 'default': return `the default of ${name}`
  }
}

function bad(name: SettingName, source: SettingSource, configPath: string | undefined, what: string, got: unknown): QuireError {
  const shown = SECRET_SETTINGS.includes(name) ? `a ${typeof got}` : JSON.stringify(got)
  return new QuireError('INVALID_CONFIG', `${origin(name, source, configPath)} ${what}, got ${shown}`, { setting: name, source, ...(SECRET_SETTINGS.includes(name) ? {} : { value: got }) })
}

/** A list from a comma-separated string (flag, env) or, in the config file, a JSON array of strings or a string. */
function list(raw: unknown): string[] | null {
  if (typeof raw === 'string') return raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  if (Array.isArray(raw) && raw.every((s) => typeof s === 'string')) return raw.map((s) => s.trim()).filter((s) => s.length > 0)
  return null
}

/** Parse one raw value (a string from a flag or env, any JSON value from the config file). */
function parse(name: SettingName, raw: unknown, source: SettingSource, configPath: string | undefined): unknown {
  const kind = SETTINGS[name].kind
  const fail = (what: string): never => { throw bad(name, source, configPath, what, raw) }
  // Numbers: JSON numbers in the config file; decimal strings from flags and env.
  const num = (): number => {
    if (typeof raw === 'number') return raw
    if (typeof raw === 'string' && source !== 'config' && /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/.test(raw)) return Number(raw)
    return fail('must be a number')
  }
  switch (kind.type) {
    case 'integer': {
      const n = num()
      if (!Number.isSafeInteger(n) || n < kind.min || (kind.max !== undefined && n > kind.max)) {
        fail(`must be an integer >= ${kind.min}${kind.max !== undefined ? ` and <= ${kind.max}` : ''}`)
      }
      return n
    }
    case 'fraction': {
      const n = num()
      if (!(n > 0 && n <= 1)) fail('must be a fraction in (0, 1]')
      return n
    }
    case 'urls': {
      const urls = list(raw)
      if (urls === null || urls.length === 0) return fail('must name at least one NATS URL')
      for (const u of urls) if (/\s/.test(u)) fail(`holds a URL with a space (${JSON.stringify(u)})`)
      return urls
    }
    case 'roles': {
      const roles = list(raw)
      if (roles === null || roles.length === 0) return fail(`must name at least one role of ${ROLE_NAMES.join(', ')}`)
      for (const r of roles) if (!(ROLE_NAMES as readonly string[]).includes(r)) fail(`names an unknown role ${JSON.stringify(r)} (roles: ${ROLE_NAMES.join(', ')})`)
      if (new Set(roles).size !== roles.length) fail('names a role twice')
      return roles
    }
    case 'path': {
      if (typeof raw !== 'string' || raw.trim() === '') return fail('must be a path')
      // A relative path in the config file is relative to the file, so the file can move with its data.
      return source === 'config' && configPath !== undefined ? path.resolve(path.dirname(configPath), raw) : path.resolve(raw)
    }
    case 'id': {
      if (typeof raw !== 'string' || !/^[A-Za-z0-9_-]+$/.test(raw)) return fail('must be letters, digits, - and _ only')
      return raw
    }
    case 'host': {
      if (typeof raw !== 'string' || !/^[A-Za-z0-9.:_-]+$/.test(raw.trim())) return fail('must be a host name or an IP address')
      return raw.trim()
    }
    case 'name': {
      if (typeof raw !== 'string' || raw.trim() === '' || /\s/.test(raw.trim())) return fail('must be a name without spaces')
      return raw.trim()
    }
    case 'secret': {
      if (typeof raw !== 'string' || raw === '') return fail('must be a non-empty string')
      return raw
    }
    case 'boolean': {
      // A JSON boolean in the config file; true/false/1/0 from a flag or env.
      if (typeof raw === 'boolean') return raw
      if (typeof raw === 'string' && source !== 'config' && /^\s*(true|false|1|0)\s*$/i.test(raw)) return /^\s*(true|1)\s*$/i.test(raw)
      return fail('must be true or false')
    }
  }
}

export interface SettingInputs {
  /** Values given as flags (commander's attribute names are mapped by the caller): strings. */
  flags?: Partial<Record<SettingName, string>>
  /** The environment (process.env). */
  env?: Record<string, string | undefined>
  /** The parsed config file, if any; `configPath` names it in messages and anchors relative paths. */
  config?: Record<string, unknown>
  configPath?: string
}

export interface ResolvedSettings {
  settings: NodeSettings
  sources: Record<SettingName, SettingSource>
}

/** flag > env > config file > default, each value checked. */
export function resolveSettings(inputs: SettingInputs): ResolvedSettings {
  const config = inputs.config ?? {}
  for (const key of Object.keys(config)) {
    if (!(SETTING_NAMES as string[]).includes(key)) {
      const near = SETTING_NAMES.filter((n) => n.toLowerCase() === key.toLowerCase() || n.toLowerCase().includes(key.toLowerCase()))
      throw new QuireError('INVALID_CONFIG',
        `unknown setting "${key}" in ${inputs.configPath ?? 'the config file'}${near.length > 0 ? ` (did you mean ${near.join(', ')}?)` : ''}; settings: ${SETTING_NAMES.join(', ')}`,
        { setting: key })
    }
  }
  const settings: Record<string, unknown> = {}
  const sources = {} as Record<SettingName, SettingSource>
  for (const name of SETTING_NAMES) {
    const spec = SETTINGS[name]
    const flag = inputs.flags?.[name]
    const env = inputs.env?.[spec.env]
    let source: SettingSource
    let raw: unknown
    if (flag !== undefined) [source, raw] = ['flag', flag]
    else if (env !== undefined && env !== '') [source, raw] = ['env', env]
    else if (config[name] !== undefined && config[name] !== null) [source, raw] = ['config', config[name]]
    else [source, raw] = ['default', spec.default]
    settings[name] = source === 'default' ? spec.default : parse(name, raw, source, inputs.configPath)
    sources[name] = source
  }
  const s = settings as unknown as NodeSettings
  if (s.diskUsageLwmThreshold > s.diskUsageThreshold) {
    throw new QuireError('INVALID_CONFIG',
      `diskUsageLwmThreshold (${s.diskUsageLwmThreshold}, from ${origin('diskUsageLwmThreshold', sources.diskUsageLwmThreshold, inputs.configPath)}) must not exceed diskUsageThreshold (${s.diskUsageThreshold}, from ${origin('diskUsageThreshold', sources.diskUsageThreshold, inputs.configPath)})`,
      { diskUsageLwmThreshold: s.diskUsageLwmThreshold, diskUsageThreshold: s.diskUsageThreshold })
  }
  return { settings: s, sources }
}

/**
 * The text of a file a setting or flag names (a password, a token): INVALID_CONFIG naming `what`
 * and the file, with the system's reason (ENOENT, EACCES), never what the file holds. (The client's
 * own files are read in transport/natsAuth.ts, which the command line's help must not load.)
 */
export function readSettingFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err))
    throw new QuireError('INVALID_CONFIG', `cannot read ${what} ${file} (${why})`, { file })
  }
}

/** Read a JSON config file: an object whose keys are setting names. */
export async function loadConfigFile(file: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new QuireError('INVALID_CONFIG', `cannot read config file ${file}: ${(err as Error).message}`, { file })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new QuireError('INVALID_CONFIG', `config file ${file} is not valid JSON: ${(err as Error).message}`, { file })
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new QuireError('INVALID_CONFIG', `config file ${file} must hold a JSON object of settings`, { file })
  }
  return parsed as Record<string, unknown>
}

function showDefault(name: SettingName): string {
  const d = SETTINGS[name].default
  if (name === 'bookieId') return '(kept in the data folder)'
  if (d === undefined) return '(none)'
  return Array.isArray(d) ? d.join(',') : String(d)
}

/** The table as Markdown, for docs/operations.md (`quire node --print-settings` prints it). */
export function renderSettingsTable(): string {
  const rows = SETTING_NAMES.map((name) => {
    const s = SETTINGS[name]
    const type = s.kind.type === 'integer' ? `integer >= ${s.kind.min}` : s.kind.type
    return `| \`${name}\` | ${type} | \`${showDefault(name)}\` | \`${s.env}\` | ${s.flag === undefined ? '(none: a secret)' : `\`${s.flag}\``} | ${s.doc} |`
  })
  return ['| setting | type | default | env | flag | meaning |', '|---|---|---|---|---|---|', ...rows].join('\n')
}

/** The settings as they may be logged: every secret that is set shows as `***`. */
export function redactSettings(settings: NodeSettings): Record<string, unknown> {
  const out: Record<string, unknown> = { ...settings }
  for (const name of SECRET_SETTINGS) if (out[name] !== undefined) out[name] = '***'
  return out
}

/** The text commander shows for a setting's flag. */
export function flagHelp(name: SettingName): string {
  const s = SETTINGS[name]
  return `${s.doc} (env ${s.env}, default ${showDefault(name)})`
}
