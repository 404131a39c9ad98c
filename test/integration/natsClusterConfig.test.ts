// The NATS cluster configuration carries the failure detection that bounds a partitioned server's
// metadata stall (docs/cluster.md; measured by `npm run test:partition`, which needs root and runs
// for minutes). Checked here, fast: real nats-servers started from cli/natsCluster.ts's generated
// files report those settings (and nats.conf's, which the files include) on /varz, and the
// documented example docs/nats-cluster.conf says the same.

import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT } from '../../cli/cluster.ts'
import { CLUSTER_FAILURE_DETECTION, NATS_DEFAULT_FAILURE_DETECTION, natsClusterConfig, startNatsCluster } from '../../cli/natsCluster.ts'

const t = suite('natsClusterConfig')

/** A Go duration as nats-server writes them in this project ("2s", "500ms", "2m") in nanoseconds. */
function nanos(d: string): number {
  const m = /^(\d+)(ms|s|m)$/.exec(d)
  if (!m) throw new Error(`unexpected duration ${d}`)
  return Number(m[1]) * { ms: 1e6, s: 1e9, m: 60e9 }[m[2] as 'ms' | 's' | 'm']
}

t('the shipped failure detection drops an idle peer that vanished within seconds, not nats-server\'s minutes', () => {
  const fd = CLUSTER_FAILURE_DETECTION
  const dropAfter = (f: typeof fd): number => nanos(f.pingInterval) * (f.pingMax + 1)
  assert.ok(dropAfter(fd) <= 15e9, `an idle connection is closed after at most ${dropAfter(fd) / 1e9} s`)
  assert.ok(dropAfter(fd) < dropAfter(NATS_DEFAULT_FAILURE_DETECTION))
  const text = natsClusterConfig({
    name: 'n1', clusterName: 'quire', host: '10.0.0.1', port: 4222, clusterPort: 6222, monitorPort: 8222,
    routes: ['10.0.0.2:6222', '10.0.0.3:6222'], file: path.join(os.tmpdir(), 'x', 'n1.conf'),
  })
  assert.match(text, `ping_interval: "${fd.pingInterval}"`)
  assert.match(text, `ping_max: ${fd.pingMax}`)
  assert.match(text, `write_deadline: "${fd.writeDeadline}"`)
  assert.match(text, 'routes: [nats://10.0.0.2:6222, nats://10.0.0.3:6222]')
})

t('servers started from the generated configuration run with it', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-natsconf-'))
  const cluster = await startNatsCluster({ dir, size: 3, name: `conf-${process.pid}` }).catch(async (err: unknown) => {
    await rm(dir, { recursive: true, force: true })
    throw err
  })
  try {
    for (const s of cluster.servers) {
      const varz = (await (await fetch(`http://127.0.0.1:${s.monitorPort}/varz`)).json()) as Record<string, unknown>
      assert.is(varz.server_name, s.name)
      assert.is(varz.ping_interval, nanos(CLUSTER_FAILURE_DETECTION.pingInterval), `${s.name} ping_interval`)
      assert.is(varz.ping_max, CLUSTER_FAILURE_DETECTION.pingMax, `${s.name} ping_max`)
      assert.is(varz.write_deadline, nanos(CLUSTER_FAILURE_DETECTION.writeDeadline), `${s.name} write_deadline`)
      // From the included nats.conf.
      assert.is(varz.max_payload, 8 * 1024 * 1024, `${s.name} max_payload`)
      assert.is((varz.cluster as { name?: string }).name, cluster.name)
    }
  } finally {
    await cluster.stop()
    await rm(dir, { recursive: true, force: true })
  }
})

t('docs/nats-cluster.conf documents the same settings', () => {
  const doc = readFileSync(path.join(REPO_ROOT, 'docs', 'nats-cluster.conf'), 'utf8')
  const value = (key: string): string | undefined => new RegExp(`^\\s*${key}:\\s*"?([^"\\s#]+)"?`, 'm').exec(doc)?.[1]
  assert.is(value('ping_interval'), CLUSTER_FAILURE_DETECTION.pingInterval)
  assert.is(value('ping_max'), String(CLUSTER_FAILURE_DETECTION.pingMax))
  assert.is(value('write_deadline'), CLUSTER_FAILURE_DETECTION.writeDeadline)
})

t.run()
