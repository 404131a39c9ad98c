// Fixture of test/e2e/cleanup.test.ts, run by uvu as a test would be: starts a cluster with the test
// harness (nats-server and three bookie processes) and a tailing reader process on an open ledger
// (test/support/tailer.ts, started the way tail.test.ts starts it), prints one line
// `CLUSTER {json}` with its pid, the children's pids and its folder, then holds them until this
// process is killed.

import { spawn } from 'node:child_process'
import path from 'node:path'
import { test } from 'uvu'
import { REPO_ROOT } from '../../cli/cluster.ts'
import { startCluster } from './cluster.ts'

test('hold a cluster until killed', async () => {
  const c = await startCluster({ bookies: 3 })
  const w = await (await c.client()).createLedger()
  await w.append('first')
  const tailer = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/support/tailer.ts'), c.nats.url, String(w.ledgerId)], { stdio: ['ignore', 'pipe', 'inherit'] })
  // Following: it has read the first entry and waits for more (a reader of an open ledger never ends by itself).
  await new Promise<void>((resolve, reject) => {
    let out = ''
    tailer.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (/^entry 0$/m.test(out)) resolve()
    })
    tailer.once('exit', (code) => reject(new Error(`the reader exited with ${code}:\n${out}`)))
  })
  const cluster = { pid: process.pid, dir: c.dir, nats: c.nats.pid, bookies: c.bookies.map((b) => b.pid), reader: tailer.pid }
  process.stdout.write(`CLUSTER ${JSON.stringify(cluster)}\n`)
  await new Promise(() => setInterval(() => {}, 60_000))
})

test.run()
