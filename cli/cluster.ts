// Starting the parts of a local cluster as child processes: a nats-server from the project's
// nats.conf on a free loopback port with its own store, and bookie processes. Used by
// `quire sandbox`, the benchmark and the integration tests, so all three run the same way.
// No child outlives this process, however it ends:
// - on a normal exit, the 'exit' handler SIGKILLs the children still running;
// - on SIGINT/SIGTERM/SIGHUP, when the caller asked for it with killChildrenOnSignals() (the
//   test harness does; the sandbox has its own orderly stop);
// - on SIGKILL or a crash, nothing in this process runs: on Linux each child is started through
//   `setpriv --pdeathsig KILL` (util-linux), so the kernel kills it when this process dies.
// Each child leads its own process group, so a terminal's Ctrl-C reaches only this process,
// which stops its children in order (the sandbox closes its demo ledger first).

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { accessSync, constants, existsSync, mkdirSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const QUIRE_BIN = path.join(REPO_ROOT, 'cli', 'quire.mjs')
/**
 * Node.js flags of every role process started here; the `quire` command's shebang passes the same
 * (cli/quire.mjs). A bookie's heap holds about 15 MB, and V8 sized its old generation from that:
 * taking 256 KiB adds, a bookie ran 9 to 11 full collections a second, half its CPU. With 128 MB
 * before the first one it ran 2, and spent 35 % less CPU per entry (docs/operations.md).
 */
export const ROLE_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=128']

const children = new Set<ChildProcess>()
process.on('exit', killChildren)

function killChildren(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
}

let signalsHandled = false

/**
 * SIGINT, SIGTERM or SIGHUP kill every child at once, then end this process as the signal would
 * have (Node's default for these signals skips 'exit' handlers). For processes with no orderly
 * stop of their own: the test harness.
 */
export function killChildrenOnSignals(): void {
  if (signalsHandled) return
  signalsHandled = true
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      killChildren()
      process.kill(process.pid, signal)
    })
  }
}

/** The full path of an executable on PATH, or null. */
function onPath(name: string): string | null {
  for (const dir of (process.env['PATH'] ?? '').split(path.delimiter)) {
    try {
      accessSync(path.join(dir, name), constants.X_OK)
      return path.join(dir, name)
    } catch {
      continue
    }
  }
  return null
}

const SETPRIV = process.platform === 'linux' ? onPath('setpriv') : null

/** spawn in a process group of its own and, on Linux, killed by the kernel when this process dies. */
function spawnChild(file: string, args: string[], opts: SpawnOptions): ChildProcess {
  const [command, argv] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', file, ...args]] : [file, args]
  return spawn(command, argv, { ...opts, detached: true })
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

export async function waitForPort(port: number, timeoutMs: number, what: string, proc?: ChildProcess, stderr?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) throw new Error(`${what} exited with code ${proc.exitCode}: ${stderr?.() ?? ''}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`${what} did not listen on port ${port} within ${timeoutMs} ms: ${stderr?.() ?? ''}`)
}

export interface ManagedProcess {
  readonly proc: ChildProcess
  readonly pid: number
  output(): string
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>
  kill(signal?: NodeJS.Signals): void
  exited: Promise<number | null>
}

function manage(proc: ChildProcess, echo: boolean): ManagedProcess {
  children.add(proc)
  let out = ''
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-64 * 1024)
    if (echo) process.stderr.write(d)
  }
  proc.stdout?.on('data', keep)
  proc.stderr?.on('data', keep)
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => { children.delete(proc); resolve(code) })
  })
  return {
    proc,
    pid: proc.pid ?? -1,
    output: () => out,
    exited,
    kill: (signal = 'SIGKILL') => { if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal) },
    async stop(graceMs = 5000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(t)
    },
  }
}

export interface NatsServer extends ManagedProcess {
  url: string
  port: number
  storeDir: string
}

/**
 * `config`: the configuration file, default the project's nats.conf (cli/natsCluster.ts passes a
 * generated one per server); `args`: more nats-server flags after the shared ones; `env`, when
 * given, is the server's whole environment (nats-secure.conf takes its secrets from there).
 */
export async function startNatsServer(opts: { port?: number; storeDir: string; echo?: boolean; config?: string; args?: string[]; env?: NodeJS.ProcessEnv }): Promise<NatsServer> {
  const port = opts.port ?? (await freePort())
  mkdirSync(opts.storeDir, { recursive: true })
  const natsServer = onPath('nats-server')
  if (!natsServer) throw new Error('cannot start nats-server (not on PATH); install it with: apt-get install -y nats-server')
  const proc = spawnChild(natsServer, ['-c', opts.config ?? path.join(REPO_ROOT, 'nats.conf'), '-a', '127.0.0.1', '-p', String(port), '-sd', opts.storeDir, ...(opts.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
  })
  const m = manage(proc, opts.echo ?? false)
  const spawnError = new Promise<never>((_, reject) => proc.once('error', (e) => reject(new Error(
    `cannot start nats-server (${e.message}); install it with: apt-get install -y nats-server`))))
  await Promise.race([waitForPort(port, 15_000, 'nats-server', proc, m.output), spawnError])
  return { ...m, url: `nats://127.0.0.1:${port}`, port, storeDir: opts.storeDir }
}

export interface BookieProcess extends ManagedProcess {
  id: string
  data: string
}

/** `quire bookie`, or with `roles` `quire node --roles <roles>` (a bookie with, say, the auditor and a replicator). */
export function startBookieProcess(opts: { id: string; data: string; nats: string; echo?: boolean; extraArgs?: string[]; env?: Record<string, string>; roles?: string }): BookieProcess {
  if (!existsSync(opts.data)) mkdirSync(opts.data, { recursive: true })
  const command = opts.roles ? ['node', '--roles', opts.roles] : ['bookie']
  const proc = spawnChild(process.execPath, [...ROLE_NODE_FLAGS, QUIRE_BIN, ...command, '--id', opts.id, '--data', opts.data, '--nats', opts.nats, ...(opts.extraArgs ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  })
  return { ...manage(proc, opts.echo ?? false), id: opts.id, data: opts.data }
}

/**
 * `quire node ...args` (or its alias `quire bookie`, or `quire sandbox` for the sandbox's own test);
 * `env`, when given, is the child's whole environment.
 */
export function startNodeProcess(opts: { args: string[]; env?: NodeJS.ProcessEnv; echo?: boolean; command?: 'node' | 'bookie' | 'sandbox' }): ManagedProcess {
  const proc = spawnChild(process.execPath, [...ROLE_NODE_FLAGS, QUIRE_BIN, opts.command ?? 'node', ...opts.args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
  })
  return manage(proc, opts.echo ?? false)
}
