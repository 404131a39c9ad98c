// A test run that is stopped leaves no process behind. A uvu run of a test that holds a cluster
// (test/support/holdCluster.ts: nats-server and three bookie processes from test/support/cluster.ts,
// and a tailing reader process, test/support/tailer.ts) is stopped with SIGTERM, with SIGINT
// (Ctrl-C) or with SIGKILL (nothing runs in the killed process then: only the children's
// parent-death signal and the reader's watch of its parent help); every pid it started must be gone within a
// bound. Checked by pid; the suite kills survivors and removes the folders itself.

import { spawn, type ChildProcess } from 'node:child_process'
import { rm } from 'node:fs/promises'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT } from '../../cli/cluster.ts'
import { isRunning, waitFor } from '../support/processes.ts'

interface Held { pid: number; dir: string; nats: number; bookies: number[]; reader: number }

const s = suite<{ run?: ChildProcess; held?: Held }>('cleanup')
s.after.each(async (ctx) => {
  for (const pid of [ctx.held?.pid, ctx.run?.pid, ctx.held?.nats, ctx.held?.reader, ...(ctx.held?.bookies ?? [])]) {
    if (pid !== undefined && isRunning(pid)) process.kill(pid, 'SIGKILL')
  }
  if (ctx.held) await rm(ctx.held.dir, { recursive: true, force: true })
  delete ctx.run
  delete ctx.held
})

/** `npm run test:one`'s command, on the fixture; resolves once its cluster is up. */
async function holdCluster(ctx: { run?: ChildProcess; held?: Held }): Promise<{ held: Held; output: () => string }> {
  const run = spawn(process.execPath, ['--import', 'tsx', 'node_modules/uvu/bin.js', 'test/support', 'holdCluster\\.ts$'], {
    cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'],
  })
  ctx.run = run
  let out = ''
  run.stdout.on('data', (d: Buffer) => { out += d.toString() })
  run.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const output = (): string => out
  const line = (): string | undefined => /^CLUSTER (.*)$/m.exec(out)?.[1]
  await waitFor(() => {
    assert.ok(run.exitCode === null, `the test run exited early\n${out}`)
    return line() !== undefined
  }, 120_000, () => `no cluster within the bound\n${out}`)
  const held = JSON.parse(line()!) as Held
  ctx.held = held
  assert.is(held.bookies.length, 3)
  assert.ok([held.pid, held.nats, held.reader, ...held.bookies].every(isRunning), 'the test run, its cluster and its reader are up')
  return { held, output }
}

for (const signal of ['SIGTERM', 'SIGINT', 'SIGKILL'] as const) {
  s(`a test run stopped with ${signal} leaves no bookie, nats-server or reader running`, async (ctx) => {
    const { held, output } = await holdCluster(ctx)
    process.kill(held.pid, signal)
    await waitFor(() => !isRunning(held.pid), 15_000, () => `the test run survived ${signal}\n${output()}`)
    const children = [held.nats, held.reader, ...held.bookies]
    await waitFor(() => children.every((pid) => !isRunning(pid)), 10_000,
      () => `still running after ${signal} of the test run: ${children.filter(isRunning).join(', ')}`)
  })
}

s.run()
