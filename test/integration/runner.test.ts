// The test runner (test/run.mjs): a suite whose before hook throws fails the run. Plain uvu
// reports such a suite as "(0 / 1)" and exits 0, so a broken setup (a pack that fails, a cluster
// that never starts) would pass CI unseen.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT } from '../../cli/cluster.ts'

const run = promisify(execFile)

test('a suite whose before hook throws fails the run and is named', async () => {
  const out = await run(process.execPath, ['--import', 'tsx', 'test/run.mjs', 'test/fixtures', 'hookThrows'], { cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } })
    .then((r) => ({ code: 0, stdout: r.stdout }), (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }))
  assert.is(out.code, 1, out.stdout)
  assert.match(out.stdout, /hookThrows\.ts: 1 of 1 tests did not run: its before hook threw/)
})

test('a suite that passes still passes', async () => {
  const r = await run(process.execPath, ['--import', 'tsx', 'test/run.mjs', 'test', 'validate\\.test'], { cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } })
  const total = /Total:\s+(\d+)/.exec(r.stdout)?.[1]
  assert.ok(total !== undefined && Number(total) > 0, r.stdout)
  assert.match(r.stdout, new RegExp(`Passed:\\s+${total}\\b`))
})

test.run()
