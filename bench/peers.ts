// The three systems the benchmark writes to, each started from scratch in its own folder and each
// with the processes whose CPU time is its cost:
//
// - quire: one nats-server (the transport and the metadata store) and BOOKIES bookie processes,
//   written by Quire clients in this process; ledgers E3/Qw2/Qa2 (the defaults).
// - jetstreamR1: its own nats-server, a file-storage stream with one replica; published to from
//   this process with @nats-io/jetstream, awaiting each PubAck.
// - jetstreamR3: a 3-server nats cluster (cli/natsCluster.ts), a file-storage stream with three
//   replicas; the same publisher.
//
// Every nats-server is started with a monitoring port (`-m`), whose /varz in_msgs and out_msgs
// count the NATS messages a measurement moved. A writer of N logs is N ledgers for Quire and one
// stream with N subjects for JetStream (how a JetStream user keeps many logs: a stream per log
// would be N raft groups on R3).

import { randomUUID } from 'node:crypto'
import path from 'node:path'
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream'
import { connect as connectNats, type NatsConnection } from '@nats-io/transport-node'
import { connect, type CreateLedgerOptions, type QuireClient } from '../client/index.ts'
import { freePort, startBookieProcess, startNatsServer, type BookieProcess } from '../cli/cluster.ts'
import { startNatsCluster } from '../cli/natsCluster.ts'
import { waitForBookies } from '../cli/sandbox.ts'
import type { Proc } from './cpu.ts'
import type { Subject } from './measure.ts'
import type { TailClients } from './tail.ts'

export type PeerName = 'quire' | 'jetstreamR1' | 'jetstreamR3' | 'floor'

export const PEER_LABELS: Record<PeerName, string> = { quire: 'quire', jetstreamR1: 'jetstream R1', jetstreamR3: 'jetstream R3', floor: 'protocol floor' }

export interface Peer {
  name: PeerName
  /** The processes besides this one that do its work (nats-servers, bookies). */
  procs: Proc[]
  /** Monitoring ports of its nats-servers (/varz). */
  monitorPorts: number[]
  /** A fresh log (ledger, stream) written with `payload`. */
  open: (payload: Uint8Array) => Promise<Subject>
  /** `logs` fresh logs, written round-robin with `payload`. */
  openMany: (logs: number, payload: Uint8Array) => Promise<Subject>
  /** A fresh named log whose records are `payload` (Quire: client.logs; absent: `open`, one message a record). */
  openRecords?: (payload: Uint8Array) => Promise<Subject>
  /** Resolves once the peer can take writes (every bookie registered and writable). */
  ready: () => Promise<void>
  /** The cells (keys) it takes part in; every cell when absent. */
  cells?: readonly string[]
}

/** Undo steps, run last pushed first (bench/run.ts's Teardown). */
export interface Cleanup {
  push: (step: () => Promise<unknown>) => void
}

export const QUORUM: Readonly<CreateLedgerOptions> = Object.freeze({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
export const BOOKIES = 3
const BOOKIES_READY_TIMEOUT_MS = 30_000
/** Ledgers created or closed at once when a cell opens many. */
const OPEN_CONCURRENCY = 32
/**
 * An add may wait this long for its ack quorum before the writer gives up on a bookie (default
 * 10 s). With E3 over 3 bookies there is no spare to replace one, so a timeout under a loaded
 * machine would end the ledger: the benchmark measures cost and latency, not failure detection.
 */
const ADD_TIMEOUT_MS = 60_000
/** A publish may wait this long for its PubAck (256 KiB x 128 in flight on R3 takes seconds). */
const PUBLISH_TIMEOUT_MS = 60_000

export async function startQuire(dir: string, cleanup: Cleanup, explicitLacIntervalMs: number): Promise<{ peer: Peer; tailClients: TailClients }> {
  const monitorPort = await freePort()
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats'), args: ['-m', String(monitorPort)] })
  cleanup.push(() => nats.stop())
  const procs: Proc[] = [{ name: 'nats-server', pid: nats.pid }]
  const bookies: BookieProcess[] = []
  for (let i = 1; i <= BOOKIES; i++) {
    const b = startBookieProcess({ id: `bench-bookie-${i}`, data: path.join(dir, `bookie-${i}`), nats: nats.url })
    cleanup.push(() => b.stop())
    bookies.push(b)
    procs.push({ name: `bookie-${i}`, pid: b.pid })
  }
  const quireClient = async (name: string): Promise<QuireClient> => {
    const c = await connect({ servers: nats.url, name, explicitLacIntervalMs, addTimeoutMs: ADD_TIMEOUT_MS })
    cleanup.push(() => c.close())
    return c
  }
  const client = await quireClient('quire-bench')
  const ready = (): Promise<void> => waitForBookies(client, BOOKIES, BOOKIES_READY_TIMEOUT_MS).catch((err: unknown) => {
    throw new Error(`${String(err)}\n${bookies.map((b) => `--- ${b.id}\n${b.output().slice(-4000)}`).join('\n')}`)
  })
  await ready()
  const peer: Peer = {
    name: 'quire', procs, monitorPorts: [monitorPort], ready,
    open: async (payload) => {
      const w = await client.createLedger(QUORUM)
      return { op: () => w.append(payload), close: () => w.close() }
    },
    openRecords: async (payload) => {
      const log = await client.logs.createLog(`bench-${randomUUID()}`, QUORUM)
      const w = await log.writer()
      return { op: () => w.append(payload), close: () => w.close() }
    },
    openMany: async (logs, payload) => {
      const ws = await inBatches(logs, () => client.createLedger(QUORUM))
      let next = 0
      return {
        op: () => ws[next++ % ws.length]!.append(payload),
        close: () => inBatches(ws.length, (i) => ws[i]!.close()),
      }
    },
  }
  return { peer, tailClients: { writer: await quireClient('quire-bench-tail-writer'), reader: await quireClient('quire-bench-tail-reader') } }
}

export async function startJetStreamR1(dir: string, cleanup: Cleanup): Promise<{ peer: Peer; version: string }> {
  const monitorPort = await freePort()
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats-r1'), args: ['-m', String(monitorPort)] })
  cleanup.push(() => nats.stop())
  const nc = await connectNats({ servers: nats.url, name: 'quire-bench-jetstream-r1' })
  cleanup.push(() => nc.close())
  return { peer: jetStreamPeer('jetstreamR1', nc, 1, [{ name: 'nats-server', pid: nats.pid }], [monitorPort]), version: nc.info?.version ?? 'unknown' }
}

export async function startJetStreamR3(dir: string, cleanup: Cleanup): Promise<Peer> {
  const cluster = await startNatsCluster({ dir: path.join(dir, 'nats-r3'), size: 3, name: 'bench' })
  cleanup.push(() => cluster.stop())
  const nc = await connectNats({ servers: cluster.urls, name: 'quire-bench-jetstream-r3' })
  cleanup.push(() => nc.close())
  return jetStreamPeer('jetstreamR3', nc, 3, cluster.servers.map((s) => ({ name: `nats-${s.name}`, pid: s.pid })), cluster.servers.map((s) => s.monitorPort))
}

function jetStreamPeer(name: PeerName, nc: NatsConnection, replicas: number, procs: Proc[], monitorPorts: number[]): Peer {
  let streams = 0
  const stream = async (): Promise<{ subject: string; close: () => Promise<unknown> }> => {
    const jsm = await jetstreamManager(nc, { timeout: 30_000 })
    const stream = `BENCH_${++streams}`
    await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], storage: StorageType.File, num_replicas: replicas })
    // A replicated stream takes writes once its raft group has a leader.
    const deadline = Date.now() + 30_000
    while (replicas > 1 && !(await jsm.streams.info(stream)).cluster?.leader) {
      if (Date.now() > deadline) throw new Error(`stream ${stream} (R${replicas}) has no leader after 30 s`)
      await new Promise((r) => setTimeout(r, 50))
    }
    return { subject: stream, close: () => jsm.streams.delete(stream) }
  }
  const js = jetstream(nc, { timeout: PUBLISH_TIMEOUT_MS })
  return {
    name, procs, monitorPorts, ready: async () => {},
    open: async (payload) => {
      const s = await stream()
      const subject = `${s.subject}.log`
      return { op: () => js.publish(subject, payload), close: s.close }
    },
    openMany: async (logs, payload) => {
      const s = await stream()
      const subjects = Array.from({ length: logs }, (_, i) => `${s.subject}.log${i}`)
      let next = 0
      return { op: () => js.publish(subjects[next++ % logs]!, payload), close: s.close }
    },
  }
}

/** in_msgs and out_msgs summed over the nats-servers monitored on `ports`. */
export async function natsMessages(ports: number[]): Promise<{ inMsgs: number; outMsgs: number }> {
  let inMsgs = 0
  let outMsgs = 0
  for (const port of ports) {
    const res = await fetch(`http://127.0.0.1:${port}/varz`)
    if (!res.ok) throw new Error(`nats-server monitoring on port ${port}: HTTP ${res.status}`)
    const v = (await res.json()) as { in_msgs?: unknown; out_msgs?: unknown }
    if (typeof v.in_msgs !== 'number' || typeof v.out_msgs !== 'number') throw new Error(`nats-server /varz on port ${port} has no in_msgs/out_msgs`)
    inMsgs += v.in_msgs
    outMsgs += v.out_msgs
  }
  return { inMsgs, outMsgs }
}

/** f(0..n-1), at most OPEN_CONCURRENCY at a time, results in order. */
async function inBatches<T>(n: number, f: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = []
  for (let i = 0; i < n; i += OPEN_CONCURRENCY) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, n - i) }, (_, j) => f(i + j)))))
  }
  return out
}
