// Test harness: a real nats-server from the project's nats.conf, on a free loopback port, with
// its own temporary JetStream store. Integration tests run against this, never against a mock.
// Invariants:
// - no server outlives the test process: every child is killed on process exit (and on SIGINT,
//   SIGTERM, SIGHUP), even when a test forgets stop(); the child is unref'd so a forgotten stop()
//   cannot keep the process alive either;
// - the store directory is ours alone and is removed by stop();
// - startNats resolves only once the server accepts TCP connections, or rejects with its stderr.
// nats-server 2.9.10 refuses `-sd` when the config file also sets store_dir ("Duplicate
// 'store_dir' configuration"), so nats.conf must leave store_dir to the command line.

import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
const NATS_CONF = path.join(REPO_ROOT, 'nats.conf')
const START_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 3_000
const STDERR_KEEP_CHARS = 64 * 1024
/** A free port can be taken by someone else before the server binds it; try a few. */
const START_ATTEMPTS = 3

export interface NatsServer {
  readonly url: string
  readonly port: number
  readonly storeDir: string
  /** SIGTERM, SIGKILL after 3 s, then remove the store directory. Idempotent. */
  stop(): Promise<void>
  /** Send a signal (default SIGKILL) and nothing else: a crash, or SIGSTOP/SIGCONT for a hang. */
  kill(signal?: NodeJS.Signals): void
  /** Stop the server (if still running) and start it again on the same port and store. */
  restart(): Promise<void>
  /** What the server wrote to stderr lately (its log). */
  stderr(): string
}

export interface StartNatsOptions {
  /** How long to wait for the server to accept connections; default 10 s. */
  startTimeoutMs?: number
}

const running = new Set<ChildProcess>()
const storeDirs = new Set<string>()

export async function startNats(opts: StartNatsOptions = {}): Promise<NatsServer> {
  installExitHooks()
  checkConfig()
  const startTimeoutMs = opts.startTimeoutMs ?? START_TIMEOUT_MS
  const storeDir = mkdtempSync(path.join(os.tmpdir(), 'quire-nats-'))
  storeDirs.add(storeDir)
  let server: Launched | undefined
  for (let attempt = 1; server === undefined; attempt++) {
    const port = await freePort()
    try {
      server = await launch(port, storeDir, startTimeoutMs)
    } catch (err) {
      const portTaken = err instanceof Error && /address already in use/i.test(err.message)
      if (!portTaken || attempt >= START_ATTEMPTS) {
        await removeStore(storeDir)
        throw err
      }
    }
  }
  let current: Launched = server
  let stopped = false
  return {
    url: `nats://127.0.0.1:${current.port}`,
    port: current.port,
    storeDir,
    async stop() {
      if (stopped) return
      stopped = true
      await terminate(current.child)
      await removeStore(storeDir)
    },
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (isAlive(current.child)) current.child.kill(signal)
    },
    async restart() {
      if (stopped) throw new Error('restart() after stop()')
      await terminate(current.child)
      current = await launch(current.port, storeDir, startTimeoutMs)
    },
    stderr: () => current.stderr(),
  }
}

/** A TCP port that was free on 127.0.0.1 a moment ago (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address()
      if (address === null || typeof address === 'string') {
        srv.close()
        reject(new Error(`unexpected listen address ${String(address)}`))
        return
      }
      srv.close(() => resolve(address.port))
    })
  })
}

interface Launched {
  child: ChildProcess
  port: number
  stderr(): string
}

async function launch(port: number, storeDir: string, startTimeoutMs: number): Promise<Launched> {
  const args = ['-c', NATS_CONF, '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir]
  const child = spawn('nats-server', args, { stdio: ['ignore', 'ignore', 'pipe'] })
  running.add(child)
  child.once('exit', () => running.delete(child))
  let log = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => {
    log = (log + chunk).slice(-STDERR_KEEP_CHARS)
  })
  let spawnError: Error | undefined
  child.once('error', (err) => {
    spawnError = err
  })
  const stderr = (): string => log
  try {
    await waitForPort(port, startTimeoutMs, child, () => spawnError, stderr)
  } catch (err) {
    await terminate(child)
    throw err
  }
  // From here on, only our timers (tests, stop) keep the process alive, never the server.
  child.unref()
  if (child.stderr instanceof net.Socket) child.stderr.unref()
  return { child, port, stderr }
}

async function waitForPort(
  port: number,
  timeoutMs: number,
  child: ChildProcess,
  spawnError: () => Error | undefined,
  stderr: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  const what = `nats-server -c ${NATS_CONF} -p ${port}`
  while (Date.now() < deadline) {
    if (!isAlive(child)) {
      // Give the pipe (or the spawn 'error' event) a moment to deliver the last words.
      await sleep(50)
      const err = spawnError()
      if (err) throw new Error(`cannot start ${what}: ${err.message} (is nats-server on the PATH?)`)
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before listening:\n${stderr()}`)
    }
    if (await accepts(port, Math.max(1, Math.min(500, deadline - Date.now())))) return
    await sleep(50)
  }
  throw new Error(`${what} did not accept connections within ${timeoutMs} ms:\n${stderr()}`)
}

function accepts(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/** SIGTERM (plus SIGCONT, in case a test left it stopped), SIGKILL after the grace period. */
async function terminate(child: ChildProcess): Promise<void> {
  if (!isAlive(child)) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  child.kill('SIGCONT')
  let timer: NodeJS.Timeout | undefined
  const graceOver = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), STOP_GRACE_MS)
  })
  const outcome = await Promise.race([exited, graceOver])
  clearTimeout(timer)
  if (outcome === 'late') {
    child.kill('SIGKILL')
    await exited
  }
}

function isAlive(child: ChildProcess): boolean {
  // No pid: the spawn itself failed, and no 'exit' will ever come.
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null
}

async function removeStore(storeDir: string): Promise<void> {
  storeDirs.delete(storeDir)
  await rm(storeDir, { recursive: true, force: true })
}

function checkConfig(): void {
  const text = readFileSync(NATS_CONF, 'utf8')
  if (/^\s*store_dir\s*[:=]/m.test(text)) {
    throw new Error(`${NATS_CONF} sets store_dir; nats-server 2.9 then rejects -sd, so tests cannot isolate their store`)
  }
}

let hooksInstalled = false

function installExitHooks(): void {
  if (hooksInstalled) return
  hooksInstalled = true
  // 'exit' handlers must be synchronous: SIGKILL needs no waiting, rmSync is best effort.
  process.on('exit', killAll)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killAll()
      // Keep the default "die of this signal" unless someone else handles it.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    })
  }
}

function killAll(): void {
  for (const child of running) if (isAlive(child)) child.kill('SIGKILL')
  for (const dir of storeDirs) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch {
      // The killed server may still be releasing files; the OS temp dir is the fallback.
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
