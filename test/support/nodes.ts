// Test support for `quire` as a real process: run a command and collect its exit code and output,
// with no QUIRE_ variable leaking in from the test's environment; and the fixture of the suites
// that start `quire node` processes on their own nats-server (killed, with the folder, after).

import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { QUIRE_BIN, REPO_ROOT, killChildrenOnSignals, startNatsServer, type ManagedProcess, type NatsServer } from '../../cli/cluster.ts'
import type { MetadataStore } from '../../storage/metadataStore.ts'
import { openMetadata } from '../../storage/openMetadata.ts'
import { connectNats, type NatsConnection } from '../../transport/nats.ts'

// A test run stopped by a signal kills the processes these suites started (see test/support/cluster.ts).
killChildrenOnSignals()

export interface Run { code: number | null; stdout: string; stderr: string }

/** This process's environment without QUIRE_ variables, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('QUIRE_'))), ...extra }
}

export function quire(args: string[], env: NodeJS.ProcessEnv = cleanEnv(), timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [QUIRE_BIN, ...args], { cwd: REPO_ROOT, env, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

export const show = (r: Run): string => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`

export interface NodesCtx { dir: string; nats: NatsServer; nc: NatsConnection; md: MetadataStore; nodes: ManagedProcess[] }

export async function startNodesFixture(ctx: NodesCtx, prefix: string): Promise<void> {
  ctx.dir = await mkdtemp(path.join(os.tmpdir(), prefix))
  ctx.nats = await startNatsServer({ storeDir: path.join(ctx.dir, 'nats') })
  ctx.nc = await connectNats(ctx.nats.url)
  ctx.md = await openMetadata(ctx.nc)
  ctx.nodes = []
}

export async function stopNodesFixture(ctx: NodesCtx): Promise<void> {
  for (const n of ctx.nodes ?? []) n.kill('SIGKILL')
  await Promise.all((ctx.nodes ?? []).map((n) => n.exited))
  await ctx.nc?.close()
  await ctx.nats?.stop()
  if (ctx.dir) await rm(ctx.dir, { recursive: true, force: true })
}
