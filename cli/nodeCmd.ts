// `quire node`: the actor nodes of one host in one process, chosen by --roles (bookie, auditor,
// replicator), configured from cli/settings.ts (flag > env > config file > default).
// - One pino logger on stdout; each role logs through a child with its `role` field.
// - One NATS connection and metadata store per process, handed to every role (the Bookie class
//   still opens its own connection for its traffic).
// - SIGTERM/SIGINT drain every role, in the reverse of their start order (a bookie finishes its
//   in-flight adds and removes its registration), then exit 0; a failed drain exits 1.
// - A role that cannot start stops those already started and exits 1 with `error CODE: ...`.
// - The metadata store is opened with retries while it answers TIMEOUT (a NATS cluster starting
//   with the node, fresh buckets electing leaders), each retry logged, for at most
//   metadataStartTimeoutMs; then the node exits 1 with `error TIMEOUT: ...`.
// - With httpPort set, an HTTP server (cli/httpServer.ts: /metrics, /heartbeat, the admin API)
//   starts before the roles, so a port in use fails the node before a bookie registers; it
//   stops after them.
// - Light to load: only commander, node built-ins, machines/errors.ts, cli/settings.ts and cli/natsSettings.ts are
//   imported statically, so that `quire --help` and `quire node --help` (which declare this
//   command's options from the settings table) load none of the roles, storage, NATS or pino;
//   those are imported when a node starts.
// Adding a role is one entry in ROLES.

import { mkdir } from 'node:fs/promises'
import { Command, Option } from 'commander'
import type { Logger } from 'pino'
import type { Bookie } from '../actors/bookie.ts'
import { QuireError } from '../machines/errors.ts'
import type { MetadataStore } from '../storage/metadataStore.ts'
import type { NatsAuth, NatsConnection } from '../transport/nats.ts'
import type { BookieStateReport } from './adminApi.ts'
import type { RunningHttpServer } from './httpServer.ts'
import { natsAuthFromSettings, settingSecret } from './natsSettings.ts'
import {
  SETTINGS, SETTING_NAMES, flagHelp, loadConfigFile, redactSettings, renderSettingsTable, resolveSettings,
  type NodeSettings, type ResolvedSettings, type RoleName, type SettingName,
} from './settings.ts'

export interface RoleContext {
  settings: NodeSettings
  /** The NATS login of the node's connections (read once from the settings' files). */
  natsAuth: NatsAuth | undefined
  nc: NatsConnection
  metadata: MetadataStore
  /** The process's logger with this role's `role` field. */
  log: Logger
}

export interface RunningRole {
  stop(): Promise<void>
  /** The bookie role's state, for /api/v1/bookie/state. */
  bookieState?(): BookieStateReport
}

export interface RoleEntry {
  /** Settings the role cannot run without, checked before anything starts (INVALID_CONFIG). */
  check?(settings: NodeSettings): void
  start(ctx: RoleContext): Promise<RunningRole>
}

/**
 * The roles this build can start; null: a known role not wired in yet. Wiring one is its entry,
 * e.g. `auditor: { start: async (ctx) => (await import('../actors/auditor.ts')).startAuditor({ nc: ctx.nc, ... }) }`
 * (imported when the role starts, not with this file).
 */
export const ROLES: Readonly<Record<RoleName, RoleEntry>> = {
  bookie: { check: checkBookieSettings, start: startBookieRole },
  auditor: {
    start: async (ctx) => (await import('../actors/auditor.ts')).startAuditor({
      nc: ctx.nc, metadata: ctx.metadata, log: ctx.log,
      lostBookieRecoveryDelayMs: ctx.settings.lostBookieRecoveryDelayMs,
      auditorLeaseMs: ctx.settings.auditorLeaseMs,
      auditIntervalMs: ctx.settings.auditIntervalMs,
      inspect: ctx.settings.inspect,
    }),
  },
  replicator: {
    start: async (ctx) => (await import('../actors/replicator.ts')).startReplicator({
      nc: ctx.nc, metadata: ctx.metadata, log: ctx.log,
      replicationGraceMs: ctx.settings.replicationGraceMs,
      claimLeaseMs: ctx.settings.claimLeaseMs,
      inspect: ctx.settings.inspect,
    }),
  },
}

/** INVALID_CONFIG unless every role asked for can start with these settings. */
export function checkRoles(settings: NodeSettings): void {
  for (const r of settings.roles) ROLES[r].check?.(settings)
}

function checkBookieSettings(s: NodeSettings): void {
  if (s.data === undefined) {
    throw new QuireError('INVALID_CONFIG', 'the bookie role needs a data folder: --data DIR (or QUIRE_DATA, or "data" in the config file)')
  }
}

async function startBookieRole(ctx: RoleContext): Promise<RunningRole> {
  const s = ctx.settings
  checkBookieSettings(s)
  const dataDir = s.data!
  const [{ Bookie }, { verifyCookie, resolveBookieId }, { bookieMetrics }] = await Promise.all([
    import('../actors/bookie.ts'), import('../actors/cookie.ts'), import('../actors/metrics.ts'),
  ])
  await mkdir(dataDir, { recursive: true })
  const bookieId = await resolveBookieId(dataDir, s.bookieId)
  const refused = (err: unknown): never => {
    const msg = `bookie ${bookieId} refused to start: ${err instanceof Error ? err.message : String(err)}`
    if (err instanceof QuireError) throw new QuireError(err.code, msg, err.info)
    throw new Error(msg, { cause: err })
  }
  const check = await verifyCookie(ctx.metadata.clusterKv, dataDir, bookieId).catch(refused)
  ctx.log.info({ bookieId, cookie: check.cookie, outcome: check.outcome }, `cookie ${check.outcome}`)
  // Not a literal passed straight in: settings that BookieOptions takes under the same name
  // (disk checks, GC) reach the bookie, and the others are simply not read by it.
  const options = {
    bookieId,
    dataDir,
    nats: s.nats,
    natsAuth: ctx.natsAuth,
    heartbeatMs: s.heartbeatMs,
    checkpointIntervalMs: s.checkpointMs,
    maxEntryBytes: s.maxEntryBytes,
    journal: { groupWaitMs: s.journalGroupWaitMs, groupBytesMax: s.journalGroupBytes },
    ...metadataOptions(s),
    diskUsageThreshold: s.diskUsageThreshold,
    diskUsageLwmThreshold: s.diskUsageLwmThreshold,
    diskCheckIntervalMs: s.diskCheckIntervalMs,
    diskQuotaBytes: s.diskQuotaBytes,
    gcIntervalMs: s.gcIntervalMs,
    minorCompactionThreshold: s.minorCompactionThreshold,
    majorCompactionThreshold: s.majorCompactionThreshold,
    majorCompactionIntervalMs: s.majorCompactionIntervalMs,
    inspect: s.inspect,
    log: (msg: string, fields?: Record<string, unknown>) => ctx.log.info({ bookieId, ...fields }, msg),
  }
  const bookie = new Bookie(options)
  await bookie.start().catch(refused)
  ctx.log.info({ bookieId, nats: s.nats, data: dataDir }, 'bookie ready')
  bookieMetrics.setStateSource({
    bookieId, readOnly: () => bookie.state === 'readonly', diskUsage: () => bookie.disk.last?.usage ?? null, damagedEntries: () => bookie.damagedEntries,
    limboLedgers: () => bookie.limboLedgers,
  })
  return {
    async stop() {
      ctx.log.info({ bookieId }, 'draining')
      bookieMetrics.setStateSource(null)
      await bookie.stop()
      ctx.log.info({ bookieId }, 'stopped')
    },
    bookieState: () => bookieStateOf(bookieId, bookie),
  }
}

function bookieStateOf(bookieId: string, bookie: Bookie): BookieStateReport {
  const last = bookie.disk.last
  const o = bookie.disk.options
  return {
    bookieId,
    state: bookie.state,
    writable: bookie.state === 'writable',
    disk: last === null ? null : {
      usage: last.usage, usedBytes: last.usedBytes, totalBytes: last.totalBytes,
      threshold: o.diskUsageThreshold, lwmThreshold: o.diskUsageLwmThreshold, full: bookie.disk.full,
    },
  }
}

/** 0 is "as many as the cluster has servers, up to 3": openMetadata's default. */
function metadataOptions(s: NodeSettings): { metadataReplicas?: number } {
  return s.metadataReplicas > 0 ? { metadataReplicas: s.metadataReplicas } : {}
}

export interface RunningNode {
  stop(): Promise<void>
  /** `http://host:port` of the node's HTTP server; undefined when httpPort is 0. */
  httpUrl?: string
}

/** Start every role of `settings.roles` in order; on a failure, stop the ones started and rethrow. */
export async function startNode(settings: NodeSettings, log: Logger): Promise<RunningNode> {
  checkRoles(settings)
  const nodeLog = log.child({ role: 'node' })
  const [{ natsMetrics }, { openMetadataRetrying }, { AutorecoveryStore }, { connectNats }, { startHttpServer }] = await Promise.all([
    import('../actors/metrics.ts'), import('../storage/openMetadata.ts'), import('../storage/autorecoveryStore.ts'),
    import('../transport/nats.ts'), import('./httpServer.ts'),
  ])
  const natsAuth = natsAuthFromSettings(settings)
  const nc = await connectNats(settings.nats, {
    name: `quire-node-${settings.roles.join('-')}`, onReconnect: natsMetrics.reconnected, auth: natsAuth,
    onPermissionError: (r) => nodeLog.warn({ operation: r.operation, subject: r.subject }, 'NATS refused this node: permission violation'),
  })
  const running: Array<{ role: RoleName; handle: RunningRole }> = []
  let http: RunningHttpServer | null = null
  const stopAll = async (): Promise<void> => {
    let failure: unknown = null
    for (const { role, handle } of running.splice(0).reverse()) {
      await handle.stop().catch((err: unknown) => {
        nodeLog.error({ stopping: role, err: String(err) }, 'drain failed')
        failure ??= err
      })
    }
    await http?.close().catch(() => {})
    await nc.drain().catch(() => nc.close())
    if (failure !== null) throw failure
  }
  try {
    const metadata = await openMetadataRetrying(nc, metadataOptions(settings), {
      timeoutMs: settings.metadataStartTimeoutMs,
      onRetry: ({ attempt, delayMs, err }) => nodeLog.warn({ attempt, retryInMs: delayMs, code: err.code, err: err.message }, 'metadata store not answering yet; retrying'),
    })
    if (settings.httpPort > 0) {
      http = await startHttpServer({
        port: settings.httpPort,
        host: settings.httpHost,
        metadata,
        autorecovery: new AutorecoveryStore(metadata.clusterKv),
        bookie: () => running.find((r) => r.handle.bookieState)?.handle.bookieState?.() ?? null,
        token: settingSecret(settings.httpToken, settings.httpTokenFile, 'httpToken', 'httpTokenFile'),
      })
      nodeLog.info({ url: http.url }, 'http server ready')
    }
    for (const role of settings.roles) {
      const entry = ROLES[role]
      running.push({ role, handle: await entry.start({ settings, natsAuth, nc, metadata, log: log.child({ role }) }) })
    }
  } catch (err) {
    await stopAll().catch(() => {})
    throw err
  }
  nodeLog.info({ roles: settings.roles, ...(http ? { http: http.url } : {}) }, 'node ready')
  return { stop: stopAll, ...(http ? { httpUrl: http.url } : {}) }
}

// --- the command -----------------------------------------------------------------------------

const CONFIG_ENV = 'QUIRE_CONFIG'

/** A setting's flag (null for a secret, which has none); its commander attribute name (`id`, `heartbeatMs`) is how parsed options name it. */
function optionFor(name: SettingName): Option | null {
  const flag = SETTINGS[name].flag
  return flag === undefined ? null : new Option(flag, flagHelp(name))
}

/** Add the setting flags (all but those in `omit`), --config and --print-settings to `cmd`. */
export function addSettingOptions(cmd: Command, omit: readonly SettingName[] = []): Command {
  for (const name of SETTING_NAMES) {
    const option = omit.includes(name) ? null : optionFor(name)
    if (option) cmd.addOption(option)
  }
  cmd.addOption(new Option('--config <file>', `JSON file of settings (env ${CONFIG_ENV}); flags and env override it`))
  cmd.addOption(new Option('--print-settings', 'print the table of settings (Markdown) and exit'))
  return cmd
}

/** Settings from commander's parsed options, the environment and the config file. */
export async function settingsFromOptions(opts: Record<string, unknown>, env: Record<string, string | undefined> = process.env): Promise<ResolvedSettings> {
  const flags: Partial<Record<SettingName, string>> = {}
  for (const name of SETTING_NAMES) {
    const option = optionFor(name)
    if (option === null) continue
    const v = opts[option.attributeName()]
    if (typeof v === 'string') flags[name] = v
    // A flag without a value (--inspect) is commander's `true`.
    else if (v === true) flags[name] = 'true'
  }
  const configPath = typeof opts['config'] === 'string' ? opts['config'] : (env[CONFIG_ENV] || undefined)
  const config = configPath === undefined ? undefined : await loadConfigFile(configPath)
  return resolveSettings({ flags, env, ...(config ? { config, configPath } : {}) })
}

/** The action of `quire node` (and of `quire bookie`, which forces `roles`). */
export async function runNode(opts: Record<string, unknown>, forced: Partial<Record<SettingName, string>> = {}): Promise<void> {
  if (opts['printSettings'] === true) {
    process.stdout.write(`${renderSettingsTable()}\n`)
    return
  }
  const { settings, sources } = await settingsFromOptions({ ...opts, ...forced })
  checkRoles(settings)
  const { pino } = await import('pino')
  const log = pino()
  const nodeLog = log.child({ role: 'node' })
  nodeLog.info({ settings: redactSettings(settings), sources }, 'starting')

  let node: RunningNode | null = null
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    nodeLog.info({ signal }, 'draining')
    void starting.then(() => node?.stop()).then(() => {
      nodeLog.info('stopped')
      process.exit(0)
    }, (err: unknown) => {
      nodeLog.error({ err: String(err) }, 'drain failed')
      process.exit(1)
    })
  }
  const starting = startNode(settings, log).then((n) => { node = n }, (err: unknown) => {
    // An operating error prints its code; anything else (an OS error, a bug) prints as it is.
    const code = err instanceof QuireError ? err.code : undefined
    nodeLog.error({ ...(code ? { code } : {}), err: String(err) }, 'start-up refused')
    process.stderr.write(`error${code ? ` ${code}` : ''}: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  })
  // A signal during start-up waits for it to finish, then drains what started.
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  await starting
}

export function addNodeCommand(program: Command): void {
  addSettingOptions(program
    .command('node')
    .description('run the roles of one host (bookie, auditor, replicator) in the foreground; SIGTERM drains and exits'))
    .action((opts: Record<string, unknown>) => runNode(opts))
}
