// `quire bookie`: one bookie in the foreground with structured logs (pino) on stdout.
// SIGTERM/SIGINT drain it (in-flight adds finish, the registration is removed) and exit 0.

import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { pino } from 'pino'
import { Bookie } from '../actors/bookie.ts'
import { QuireError } from '../machines/errors.ts'

export interface BookieCmdOptions {
  nats: string
  data: string
  id?: string
  heartbeatMs: string
  journalGroupWaitMs: string
  journalGroupBytes: string
  checkpointMs: string
}

function int(name: string, v: string, min: number): number {
  const n = Number(v)
  if (!Number.isFinite(n) || n < min) throw new QuireError('INVALID_CONFIG', `${name} must be a number >= ${min}, got ${v}`)
  return n
}

/** The bookie id lives in the data directory so that a restart keeps its identity. */
async function resolveId(dataDir: string, given: string | undefined): Promise<string> {
  const file = path.join(dataDir, 'bookie-id')
  const stored = await readFile(file, 'utf8').then((s) => s.trim(), () => null)
  if (given && !/^[A-Za-z0-9_-]+$/.test(given)) throw new QuireError('INVALID_CONFIG', `bookie id may hold letters, digits, - and _ only: ${given}`)
  if (stored && given && stored !== given) {
    throw new QuireError('INVALID_CONFIG', `data directory ${dataDir} belongs to bookie ${stored}, not ${given}`)
  }
  const id = stored ?? given ?? `bookie-${randomBytes(4).toString('hex')}`
  if (!stored) await writeFile(file, `${id}\n`)
  return id
}

export async function runBookie(opts: BookieCmdOptions): Promise<void> {
  const log = pino({ base: { role: 'bookie' } })
  await mkdir(opts.data, { recursive: true })
  const bookieId = await resolveId(opts.data, opts.id)
  const bookie = new Bookie({
    bookieId,
    dataDir: opts.data,
    nats: opts.nats,
    heartbeatMs: int('--heartbeat-ms', opts.heartbeatMs, 50),
    checkpointIntervalMs: int('--checkpoint-ms', opts.checkpointMs, 100),
    journal: { groupWaitMs: int('--journal-group-wait-ms', opts.journalGroupWaitMs, 0), groupBytesMax: int('--journal-group-bytes', opts.journalGroupBytes, 1) },
    log: (msg, fields) => log.info({ bookieId, ...fields }, msg),
  })
  let stopping = false
  const stop = (signal: string): void => {
    if (stopping) return
    stopping = true
    log.info({ bookieId, signal }, 'draining')
    bookie.stop().then(() => {
      log.info({ bookieId }, 'stopped')
      process.exit(0)
    }, (err) => {
      log.error({ bookieId, err: String(err) }, 'drain failed')
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  try {
    await bookie.start()
  } catch (err) {
    const code = err instanceof QuireError ? err.code : 'START_FAILED'
    log.error({ bookieId, code, err: String(err) }, 'start-up refused')
    process.stderr.write(`error ${code}: bookie ${bookieId} refused to start: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(1)
  }
  log.info({ bookieId, nats: opts.nats, data: opts.data }, 'bookie ready')
}
