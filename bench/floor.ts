// The protocol floor, a peer of the benchmark's one-entry-at-a-time cell: what an add costs when
// each entry goes from this process to two bookies over NATS, each bookie makes it durable with
// one synced write and answers, and the writer waits for both answers, with nothing else done
// (bench/floorBookie.ts). That is Quire's message pattern at one entry in flight with E3/Qw2/Qa2 (two
// publishes, two deliveries, two answers in, two out: 8 NATS messages per entry) and its journal's
// write, so the CPU it takes per entry is what no bookie of this protocol on this machine can go
// under, and Quire's CPU over the floor's is what Quire's own work costs on top of it. JetStream
// R1 needs 2 messages and no sync; the floor's CPU over R1's says how much of Quire's ratio to R1
// the protocol alone accounts for.
// Its own nats-server and two bookie processes, started from scratch like every peer; with
// several entries in flight each op waits for the two answers on its own reply subject.

import { fork } from 'node:child_process'
import path from 'node:path'
import { connect as connectNats, createInbox } from '@nats-io/transport-node'
import { freePort, REPO_ROOT, startNatsServer } from '../cli/cluster.ts'
import type { Proc } from './cpu.ts'
import type { Cleanup, Peer } from './peers.ts'

/** Bookies each entry goes to: Quire's write quorum in the benchmark. */
export const FLOOR_BOOKIES = 2
const READY_TIMEOUT_MS = 30_000
const BOOKIE_SCRIPT = path.join(REPO_ROOT, 'bench', 'floorBookie.ts')

/** Starts the floor's nats-server and bookies; it takes part in the cells named in `cells` only. */
export async function startFloor(dir: string, cleanup: Cleanup, cells: readonly string[]): Promise<Peer> {
  const monitorPort = await freePort()
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats-floor'), args: ['-m', String(monitorPort)] })
  cleanup.push(() => nats.stop())
  const procs: Proc[] = [{ name: 'nats-server', pid: nats.pid }]
  const subjects: string[] = []
  /** Per op in flight, the answers it still waits for. */
  const waiting = new Map<string, { left: number; resolve: () => void; reject: (err: Error) => void }>()
  /** Set once a bookie has exited: every op from then on fails at once. */
  let gone: Error | null = null
  for (let i = 1; i <= FLOOR_BOOKIES; i++) {
    const subject = `floor.bookie-${i}.add`
    const child = fork(BOOKIE_SCRIPT, [nats.url, subject, path.join(dir, `floor-journal-${i}`)], {
      cwd: REPO_ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    })
    cleanup.push(() => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once('exit', () => resolve())
      child.kill('SIGKILL')
    }))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`floor bookie ${i} not ready after ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS)
      child.once('message', () => { clearTimeout(timer); resolve() })
      child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`floor bookie ${i} exited with ${code}`)) })
    })
    // No op waits for an answer that cannot come.
    child.once('exit', (code, signal) => {
      gone ??= new Error(`floor bookie ${i} exited (${signal ?? code})`)
      for (const w of waiting.values()) w.reject(gone)
      waiting.clear()
    })
    procs.push({ name: `bookie-${i}`, pid: child.pid! })
    subjects.push(subject)
  }
  const nc = await connectNats({ servers: nats.url, name: 'quire-bench-floor' })
  cleanup.push(() => nc.close())
  const inbox = createInbox()
  nc.subscribe(`${inbox}.*`, {
    callback: (err, m) => {
      if (err) return
      const w = waiting.get(m.subject)
      if (w && --w.left === 0) {
        waiting.delete(m.subject)
        w.resolve()
      }
    },
  })
  let ops = 0
  const open = async (payload: Uint8Array) => ({
    op: () => new Promise<void>((resolve, reject) => {
      if (gone) return reject(gone)
      const reply = `${inbox}.${++ops}`
      waiting.set(reply, { left: subjects.length, resolve, reject })
      for (const s of subjects) nc.publish(s, payload, { reply })
    }),
    close: async () => {},
  })
  return {
    name: 'floor', procs, monitorPorts: [monitorPort], ready: async () => {}, cells,
    open,
    // Every op the same subjects: the floor has no logs to spread entries over.
    openMany: (_logs, payload) => open(payload),
  }
}
