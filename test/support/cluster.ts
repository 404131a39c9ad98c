// Integration-test harness: a real nats-server (from nats.conf, free port, temp store) and real
// bookie processes (real fsync, real RocksDB), all killed at the end, and also when the test
// process is stopped by a signal or dies (test/e2e/cleanup.test.ts), so no process is left.

import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { connectClient as connect, type ClientOptions, type QuireClientImpl as QuireClient } from '../../client/internal.ts'
import { killChildrenOnSignals, startBookieProcess, startNatsServer, type BookieProcess, type NatsServer } from '../../cli/cluster.ts'
import { waitForBookies } from '../../cli/sandbox.ts'

// A test run stopped by SIGINT/SIGTERM (Ctrl-C, a CI timeout) kills its bookies and nats-servers
// first; on SIGKILL the kernel does (cli/cluster.ts starts them with a parent-death signal).
killChildrenOnSignals()

export interface TestCluster {
  dir: string
  nats: NatsServer
  bookies: BookieProcess[]
  clients: QuireClient[]
  client(opts?: Partial<ClientOptions>): Promise<QuireClient>
  /** Start (or restart, same id and data) bookie i (1-based) and wait until it is registered. */
  startBookie(i: number, extraArgs?: string[]): Promise<BookieProcess>
  bookie(id: string): BookieProcess
  /** Stop nats-server (SIGTERM) and start it again on the same port and store after `downMs`. */
  restartNats(downMs: number): Promise<void>
  stop(): Promise<void>
}

/** `inspect`: every bookie started (and restarted) publishes its inspection (`--inspect`). */
export async function startCluster(opts: { bookies?: number; heartbeatMs?: number; inspect?: boolean } = {}): Promise<TestCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-test-'))
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats') })
  const bookies: BookieProcess[] = []
  const clients: QuireClient[] = []
  let admin: QuireClient | null = null
  const heartbeat = String(opts.heartbeatMs ?? 1000)
  const cluster: TestCluster = {
    dir, nats, bookies, clients,
    async restartNats(downMs) {
      await cluster.nats.stop()
      await sleep(downMs)
      cluster.nats = await startNatsServer({ port: cluster.nats.port, storeDir: cluster.nats.storeDir })
    },
    async client(o = {}) {
      const c = await connect({ servers: nats.url, addTimeoutMs: 5000, readTimeoutMs: 3000, ...o })
      clients.push(c)
      return c
    },
    async startBookie(i, extraArgs = []) {
      const id = `bookie-${i}`
      const b = startBookieProcess({ id, data: path.join(dir, id), nats: nats.url, extraArgs: ['--heartbeat-ms', heartbeat, ...(opts.inspect ? ['--inspect'] : []), ...extraArgs] })
      const at = bookies.findIndex((x) => x.id === id)
      if (at >= 0) bookies[at] = b
      else bookies.push(b)
      admin ??= await cluster.client()
      const deadline = Date.now() + 20_000
      for (;;) {
        if (b.proc.exitCode !== null || Date.now() > deadline) throw new Error(`bookie ${id} did not start:\n${b.output()}`)
        // A listing that timed out (TIMEOUT) is asked again, until the deadline.
        const rec = (await admin.listBookies().catch(() => [])).find((r) => r.bookieId === id && r.pid === b.pid)
        if (rec) return b
        await new Promise((r) => setTimeout(r, 50))
      }
    },
    bookie(id) {
      const b = bookies.find((x) => x.id === id)
      if (!b) throw new Error(`no bookie ${id}`)
      return b
    },
    async stop() {
      await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})))
      for (const b of bookies) b.kill('SIGKILL')
      await Promise.all(bookies.map((b) => b.exited))
      await cluster.nats.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
  try {
    for (let i = 1; i <= (opts.bookies ?? 3); i++) await cluster.startBookie(i)
    await waitForBookies(await cluster.client(), opts.bookies ?? 3, 20_000)
  } catch (err) {
    await cluster.stop()
    throw err
  }
  return cluster
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** Deterministic payload for entry i, to verify byte for byte. */
export function payloadFor(i: number, size = 100): Buffer {
  const b = Buffer.alloc(size)
  for (let k = 0; k < size; k++) b[k] = (i * 131 + k * 17 + 7) & 0xff
  return b
}
