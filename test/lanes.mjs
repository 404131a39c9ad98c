// `npm test`: every test file, in two lanes run side by side, each lane a test/run.mjs process of
// its own: the integration tests (nats-server, bookie processes, fsync: mostly waiting on them) in
// one, the end-to-end tests, the unit tests (the simulator's fixed batch: one busy core) and two
// integration files in the other. On this 2-core machine that is about the longer lane's time
// instead of the sum.
//
// Each lane's output is printed whole once it ends (not interleaved), then the sum of the lanes'
// Total, Passed and Skipped lines, last, which is what CI reads. Every test file belongs to
// exactly one lane: a file under a folder no lane takes fails the run rather than going unrun.
// The exit code is the first failing lane's.
//
//   node test/lanes.mjs [pattern]    (only the files matching `pattern` too, in their lanes)

import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const TEST_DIR = path.dirname(fileURLToPath(import.meta.url))
// Two integration files that mostly wait on timers (autorecovery's delays, speculative reads'
// slow bookie) go with the e2e and unit tests, which evens the lanes out: measured alone in a
// two-lane run, 491 s of integration against 321 s of the rest.
const MOVED = ['autorecovery', 'speculativeRead']
const LANES = [
  { name: 'integration', pattern: new RegExp(`^integration/(?!(?:${MOVED.join('|')})\\.test\\.ts$).*\\.test\\.ts$`) },
  { name: 'e2e, unit and two integration files', pattern: new RegExp(`^(?:(?:unit|e2e)/.*|integration/(?:${MOVED.join('|')}))\\.test\\.ts$`) },
]
const only = process.argv[2] ? new RegExp(process.argv[2]) : null

/** Test files under test/, as paths relative to it. */
function testFiles(dir = TEST_DIR, prefix = '') {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    if (d.isDirectory()) return d.name === 'node_modules' ? [] : testFiles(path.join(dir, d.name), `${prefix}${d.name}/`)
    return d.name.endsWith('.test.ts') ? [`${prefix}${d.name}`] : []
  })
}

const stray = testFiles().filter((f) => LANES.filter((l) => l.pattern.test(f)).length !== 1)
if (stray.length > 0) {
  console.error(`test files in no lane (or in two) of test/lanes.mjs: ${stray.join(', ')}`)
  console.log('\n  Total:     1\n  Passed:    0\n  Skipped:   0')
  process.exit(1)
}

/** Run one lane; resolves with its output, exit code and seconds. */
function runLane(lane) {
  // uvu matches the pattern against the path relative to test/, as `lane.pattern` is written.
  const pattern = lane.pattern.source
  const files = testFiles().filter((f) => lane.pattern.test(f) && (only === null || only.test(f)))
  if (files.length === 0) return Promise.resolve({ lane, out: '', code: 0, seconds: 0, files: 0 })
  const patternArg = only === null ? pattern : `(?=.*(?:${only.source}))${pattern}`
  const startedAt = performance.now()
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(TEST_DIR, 'run.mjs'), 'test', patternArg], {
      cwd: path.dirname(TEST_DIR),
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const chunks = []
    child.stdout.on('data', (c) => chunks.push(c))
    child.stderr.on('data', (c) => chunks.push(c))
    child.on('close', (code, signal) => {
      resolve({ lane, out: Buffer.concat(chunks).toString(), code: code ?? (signal ? 1 : 0), seconds: (performance.now() - startedAt) / 1000, files: files.length })
    })
  })
}

/** The last value of `label` (Total, Passed, Skipped) uvu printed, colour codes removed. */
function count(out, label) {
  const plain = out.replace(/\x1b\[[0-9;]*m/g, '')
  const all = [...plain.matchAll(new RegExp(`^\\s*${label}:\\s+(\\d+)`, 'gm'))]
  return all.length > 0 ? Number(all[all.length - 1][1]) : null
}

const results = await Promise.all(LANES.map(async (lane) => {
  const r = await runLane(lane)
  process.stdout.write(`\n== lane ${lane.name}: ${r.files} files, ${r.seconds.toFixed(1)} s, exit ${r.code}\n${r.out}`)
  return r
}))

let total = 0
let passed = 0
let skipped = 0
let code = 0
for (const r of results) {
  if (r.files === 0) continue
  const t = count(r.out, 'Total')
  const p = count(r.out, 'Passed')
  const s = count(r.out, 'Skipped')
  // A lane that ended without uvu's summary (it crashed): one failure at least.
  if (t === null || p === null) {
    total += 1
    if (code === 0) code = r.code || 1
    continue
  }
  total += t
  passed += p
  skipped += s ?? 0
  if (code === 0 && r.code !== 0) code = r.code
}
const slowest = Math.max(...results.map((r) => r.seconds))
console.log(`\n  Lanes: ${results.map((r) => `${r.lane.name} ${r.seconds.toFixed(1)} s`).join(', ')}`)
console.log(`\n  Total:     ${total}\n  Passed:    ${passed}\n  Skipped:   ${skipped}\n  Duration:  ${(slowest * 1000).toFixed(2)}ms`)
process.exit(code)
