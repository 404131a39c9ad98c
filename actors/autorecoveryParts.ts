// How an autorecovery role (the auditor, a replication worker, the shell's recover and
// decommission) reaches the cluster: a NATS server string, or the connection, metadata store,
// autorecovery store and bookie transport a process already has (unit tests and the simulator
// pass in-memory ones, and the simulator its clock). `close()` closes only what was opened here.

import os from 'node:os'
import type { NatsConnection } from '@nats-io/transport-node'
import { BookieClient, type BookieTransport } from '../client/bookieClient.ts'
import { QuireError } from '../machines/errors.ts'
import { AutorecoveryStore } from '../storage/autorecoveryStore.ts'
import type { MetadataStore } from '../storage/metadataStore.ts'
import { openMetadata } from '../storage/openMetadata.ts'
import { keepAliveClock, type Clock } from '../transport/clock.ts'
import { connectNats } from '../transport/nats.ts'
import { clientMetrics, natsMetrics } from './metrics.ts'

export type LogFn = (msg: string, fields?: Record<string, unknown>) => void
/** A pino logger also fits: `log: logger`. */
export interface PinoLike {
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
}

export function toLogFn(log: LogFn | PinoLike | undefined): LogFn {
  if (log === undefined) return () => {}
  if (typeof log === 'function') return log
  return (msg, fields) => log.info(fields ?? {}, msg)
}

/** How a role reaches the cluster: a NATS server string, or parts a process already has. */
export interface AutorecoveryConnection {
  /** NATS URL(s), or an open connection (left open on stop). */
  nats?: string | string[] | NatsConnection
  nc?: NatsConnection
  metadata?: MetadataStore
  /** Unit tests pass in-memory parts; the product builds them from the connection. */
  store?: AutorecoveryStore
  bookies?: BookieTransport
  now?: () => number
  /** Timers and the machines' delays (the simulator's virtual clock); default the system clock. */
  clock?: Clock
}

export interface AutorecoveryParts {
  nc: NatsConnection | null
  metadata: MetadataStore
  store: AutorecoveryStore
  bookies: BookieTransport | null
  now: () => number
  clock: Clock
  /** Close what was opened here (not what the caller passed in). */
  close(): Promise<void>
}

export async function openAutorecoveryParts(opts: AutorecoveryConnection, name: string): Promise<AutorecoveryParts> {
  const clock = opts.clock ?? keepAliveClock
  const now = opts.now ?? (() => clock.now())
  let nc: NatsConnection | null = opts.nc ?? null
  let ownNc = false
  if (nc === null && opts.nats !== undefined) {
    if (typeof opts.nats === 'string' || Array.isArray(opts.nats)) {
      nc = await connectNats(opts.nats, { name, onReconnect: natsMetrics.reconnected })
      ownNc = true
    } else nc = opts.nats
  }
  let ownBookies: BookieClient | null = null
  try {
    if (opts.metadata === undefined && nc === null) {
      throw new QuireError('INVALID_CONFIG', `${name}: give a NATS server (nats) or the metadata store`)
    }
    const metadata = opts.metadata ?? (await openMetadata(nc!))
    const store = opts.store ?? new AutorecoveryStore(metadata.clusterKv, now)
    let bookies = opts.bookies ?? null
    if (bookies === null && nc !== null) bookies = ownBookies = new BookieClient(nc, clientMetrics)
    return {
      nc, metadata, store, bookies, now, clock,
      async close() {
        await ownBookies?.close().catch(() => {})
        if (ownNc && nc) {
          await nc.flush().catch(() => {})
          await nc.close().catch(() => {})
        }
      },
    }
  } catch (err) {
    await ownBookies?.close().catch(() => {})
    if (ownNc) await nc?.close().catch(() => {})
    throw err
  }
}

export function defaultNodeId(): string {
  return `${os.hostname()}-${process.pid}`
}

/** Wait until `promises` have settled, or `ms` has passed (a role stopping waits for its work this long at most). */
export async function settleWithin(promises: Promise<unknown>[], ms: number, clock: Clock = keepAliveClock): Promise<void> {
  let timer: ReturnType<Clock['setTimeout']> | undefined
  await Promise.race([Promise.allSettled(promises), new Promise((r) => { timer = clock.setTimeout(() => r(undefined), ms) })])
  if (timer !== undefined) clock.clearTimeout(timer)
}
