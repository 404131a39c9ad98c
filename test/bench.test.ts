// The benchmark's CPU accounting (bench/cpu.ts): /proc/<pid>/stat parsed right (also with a
// command name holding spaces and parentheses), and the CPU a real child process burns counted
// in a window over it, next to this process's own. Accounting checks, not timing targets: the
// child burns until its own process.cpuUsage() says it has spent BURN_MS, so the figure it must
// show does not depend on the machine's load; the bounds are broad.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { clockTicksPerSecond, CpuWindow, parseProcStat, processCpuUs, sumSpent } from '../bench/cpu.ts'

const BURN_MS = 400

/** Prints "ready", and on each line read burns BURN_MS of its own CPU, then prints "done". */
const BURNER = `
const burn = () => {
  const start = process.cpuUsage()
  let x = 0
  for (;;) {
    for (let i = 0; i < 1e5; i++) x += Math.sqrt(i)
    const u = process.cpuUsage(start)
    if (u.user + u.system >= ${BURN_MS * 1000}) break
  }
  return x
}
process.stdin.setEncoding('utf8')
process.stdin.on('data', () => { burn(); process.stdout.write('done\\n') })
process.stdout.write('ready\\n')
`

function nextLine(child: ChildProcessWithoutNullStreams): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const onData = (d: Buffer): void => {
      buf += d.toString()
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      child.stdout.off('data', onData)
      child.off('exit', onExit)
      resolve(buf.slice(0, nl))
    }
    const onExit = (code: number | null): void => reject(new Error(`the burner exited (${code}) before printing a line`))
    child.stdout.on('data', onData)
    child.once('exit', onExit)
  })
}

test('parseProcStat reads utime and stime after the last parenthesis', () => {
  // Fields 1-15 of a real line's shape; the command name holds a space and a parenthesis.
  const line = '4242 (node (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 377 61 0 0 20 0 11 0 1000 1234567 890 18446744073709551615\n'
  assert.equal(parseProcStat(line), { utimeTicks: 377, stimeTicks: 61 })
  assert.throws(() => parseProcStat('garbage'), /not a \/proc\/<pid>\/stat line/)
  assert.throws(() => parseProcStat('1 (x) S 1 2'), /no utime\/stime/)
})

test('clock ticks per second come from getconf and are positive', () => {
  const hz = clockTicksPerSecond()
  assert.ok(Number.isInteger(hz) && hz > 0, String(hz))
  assert.ok(processCpuUs(process.pid) > 0)
})

test('sumSpent adds this process and every other process', () => {
  assert.equal(sumSpent(100, { 'nats-server': 20, 'bookie-1': 5 }), { clientUs: 100, processUs: { 'nats-server': 20, 'bookie-1': 5 }, totalUs: 125 })
})

test('a window counts the CPU a child process burns in it, and this process\'s own', async () => {
  const child = spawn(process.execPath, ['-e', BURNER], { stdio: ['pipe', 'pipe', 'pipe'] })
  try {
    assert.is(await nextLine(child), 'ready')
    const window = new CpuWindow([{ name: 'burner', pid: child.pid! }])
    child.stdin.write('go\n')
    assert.is(await nextLine(child), 'done')
    // And some CPU here, counted on the client side.
    const start = process.cpuUsage()
    let x = 0
    while (process.cpuUsage(start).user < 100_000) x += Math.sqrt(x + 1)
    const spent = window.stop()
    const burnerUs = spent.processUs['burner']!
    assert.ok(burnerUs > 0.5 * BURN_MS * 1000, `burner counted ${burnerUs} µs of its ${BURN_MS * 1000}`)
    assert.ok(burnerUs < 5 * BURN_MS * 1000, `burner counted ${burnerUs} µs of its ${BURN_MS * 1000}`)
    assert.ok(spent.clientUs >= 100_000, `client counted ${spent.clientUs} µs`)
    assert.is(spent.totalUs, spent.clientUs + burnerUs)
  } finally {
    child.kill('SIGKILL')
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit')
  }
})

test('a window over a process that has exited says so', async () => {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
  const window = new CpuWindow([{ name: 'short-lived', pid: child.pid! }])
  child.kill('SIGKILL')
  await once(child, 'exit')
  assert.throws(() => window.stop(), /has it exited/)
})

test('process names in a window must be distinct', () => {
  assert.throws(() => new CpuWindow([{ name: 'a', pid: process.pid }, { name: 'a', pid: process.pid }]), /distinct/)
})

test.run()
