// Fixture of test/cleanup.test.ts, run by uvu as a test would be: starts a cluster with the test
// harness (nats-server and two bookie processes), prints one line `CLUSTER {json}` with its pid,
// the children's pids and its folder, then holds it until this process is killed.

import { test } from 'uvu'
import { startCluster } from './cluster.ts'

test('hold a cluster until killed', async () => {
  const c = await startCluster({ bookies: 2 })
  const cluster = { pid: process.pid, dir: c.dir, nats: c.nats.pid, bookies: c.bookies.map((b) => b.pid) }
  process.stdout.write(`CLUSTER ${JSON.stringify(cluster)}\n`)
  await new Promise(() => setInterval(() => {}, 60_000))
})

test.run()
