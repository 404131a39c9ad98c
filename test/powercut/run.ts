// Long power-cut runs on real processes: `npm run test:powercut -- --runs N --config 3/2/2`.
// Each run is test/powercut/scenario.ts on one cluster (nats-server and three bookie processes,
// started here and killed at the end): a writer killed with -9, a bookie of the last write set
// losing power, restart, recovery. Prints one line per run and the totals: runs, acknowledged
// entries, entries lost, runs that lost any, and the acknowledged entries the bookie that lost
// power denied (NO_SUCH_ENTRY) or did not vouch for (IN_LIMBO) before recovery, and how its
// integrity check behaved (open ledger kept in limbo, limbo cleared once recovery closed it, entries
// it lacks then marked for a re-copy).
// Exit codes: 0 all held, 1 an acknowledged entry lost or denied or the integrity check wrong,
// 2 a run could not be done.

import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { startCluster } from '../support/cluster.ts'
import { describeRun, parseQuorums, powerCutRun, type PowerCutRun } from './scenario.ts'

const USAGE = 'npm run test:powercut -- [--runs N] [--config E/Qw/Qa[,E/Qw/Qa...]] [--seed S] [--json FILE]'

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    config: { type: 'string', default: '3/2/2' },
    seed: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})
if (values.help) {
  process.stdout.write(`${USAGE}\n`)
  process.exit(0)
}
const runs = Number(values.runs)
if (!Number.isInteger(runs) || runs < 1) {
  process.stderr.write(`--runs must be a positive integer\n${USAGE}\n`)
  process.exit(2)
}
const configs = values.config.split(',').map(parseQuorums)
const firstSeed = values.seed === undefined ? Date.now() % 1_000_000_000 : Number(values.seed)

const results: PowerCutRun[] = []
let failure: unknown = null
const c = await startCluster({ bookies: 3 })
try {
  for (let i = 0; i < runs; i++) {
    for (const quorums of configs) {
      const seed = firstSeed + results.length
      const r = await powerCutRun(c, { seed, quorums })
      results.push(r)
      process.stdout.write(`${results.length} ${describeRun(r)}\n`)
    }
  }
} catch (err) {
  failure = err
  process.stderr.write(`run ${results.length + 1} could not be done: ${err instanceof Error ? err.stack : String(err)}\n`)
} finally {
  await c.stop()
}

let bad = false
for (const q of new Set(results.map((r) => r.quorums))) {
  const rs = results.filter((r) => r.quorums === q)
  const sum = (f: (r: PowerCutRun) => number): number => rs.reduce((a, r) => a + f(r), 0)
  const lostRuns = rs.filter((r) => r.lost.length > 0).length
  const denied = sum((r) => r.victimDenied.length)
  const short = rs.filter((r) => r.lastEntryId < r.maxAcked).length
  // The integrity check: open ledger kept in limbo, nothing left once closed, lacking entries marked.
  const notKept = rs.filter((r) => r.checkBefore?.result !== 'limbo' || (r.answersAfterCheck['NO_SUCH_ENTRY'] ?? 0) > 0).length
  const notCleared = rs.filter((r) => r.checkAfter?.result !== 'clean' || (r.answersAfter['IN_LIMBO'] ?? 0) > 0).length
  const unmarked = rs.filter((r) => r.lackingAfter.length > 0 && !r.markedForX).length
  bad ||= lostRuns > 0 || denied > 0 || short > 0 || notKept > 0 || notCleared > 0 || unmarked > 0
  process.stdout.write(`${q}: ${rs.length} runs, ${sum((r) => r.acked)} acknowledged, ${sum((r) => r.lost.length)} lost ` +
    `(in ${lostRuns} runs; recovery closed below the highest acknowledged entry in ${short}); before recovery the bookie ` +
    `that lost power denied ${denied} and did not vouch for ${sum((r) => r.victimUnsure.length)} acknowledged entries; ` +
    `integrity check: open ledger not kept in limbo in ${notKept} runs, limbo not cleared after recovery in ${notCleared}, ` +
    `${sum((r) => r.lackingAfter.length)} entries lacking after it in ${rs.filter((r) => r.lackingAfter.length > 0).length} runs ` +
    `(unmarked in ${unmarked})\n`)
}
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 2))
process.exit(failure !== null ? 2 : bad ? 1 : 0)
