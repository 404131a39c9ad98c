// The test runner: uvu's own command line, with one defect closed. uvu runs a suite's `before`
// hooks inside a try whose `finally` returns, so a hook that throws is swallowed: none of the
// suite's tests run, nothing is reported as failed and the exit code stays 0 (only "Passed" falls
// short of "Total"). Here every queued suite is wrapped: a suite that ran fewer tests than it has
// (and skipped none of the rest) reports an error, so the run fails. uvu has already discarded the
// hook's exception by then, so the message names the suite's file.
//
// After the run it prints the ten slowest files (wall-clock seconds), to keep `npm test` short.
//
//   node --import tsx test/run.mjs <dir> [pattern]      (as `uvu <dir> [pattern]`)
import { parse } from 'uvu/parse'

const [dir = 'test', pattern] = process.argv.slice(2)
const { suites } = await parse(dir, pattern, { cwd: process.cwd() })

globalThis.UVU_DEFER = 1
const uvu = await import('uvu')
let index = 0
for (const suite of suites) {
  globalThis.UVU_INDEX = index++
  globalThis.UVU_QUEUE.push([suite.name])
  await import(new URL(`file://${suite.file}`).href)
}

const seconds = new Map()
for (const group of globalThis.UVU_QUEUE) {
  const file = group[0]
  for (let i = 1; i < group.length; i++) {
    const runSuite = group[i]
    group[i] = async () => {
      const started = performance.now()
      const result = await runSuite()
      seconds.set(file, (seconds.get(file) ?? 0) + (performance.now() - started) / 1000)
      const [errors, ran, skipped, total] = result
      if (errors === true && ran + skipped < total) {
        return [`  ${file ?? 'a suite'}: ${total - ran - skipped} of ${total} tests did not run: its before hook threw (uvu drops the hook's error)\n`, ran, skipped, total]
      }
      return result
    }
  }
}
await uvu.exec(false)
if (seconds.size > 1) {
  const slowest = [...seconds].sort((a, b) => b[1] - a[1]).slice(0, 10)
  console.log(`\n  Slowest files: ${slowest.map(([f, s]) => `${f} ${s.toFixed(1)} s`).join(', ')}`)
}
