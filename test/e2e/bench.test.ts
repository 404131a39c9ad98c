// The benchmark's CPU accounting (bench/cpu.ts): /proc/<pid>/stat parsed right (also with a
// command name holding spaces and parentheses), and the CPU a real child process burns counted
// in a window over it, next to this process's own. Accounting checks, not timing targets: the
// child burns until its own process.cpuUsage() says it has spent BURN_MS, so the figure it must
// show does not depend on the machine's load; the bounds are broad.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, truncate, writeFile, mkdir } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { clockTicksPerSecond, CpuWindow, parseProcStat, processCpuUs, sumSpent } from '../../bench/cpu.ts'
import { cellResult, formatCells, ratiosOf, type BenchResult, type PeerCell } from '../../bench/report.ts'
import { FLOOR_BOOKIES, startFloor } from '../../bench/floor.ts'
import { natsMessages } from '../../bench/peers.ts'
import { readFile } from 'node:fs/promises'
import { benchUsage, parseBenchArgs } from '../../bench/run.ts'
import type { PeerName } from '../../bench/peers.ts'
import { entriesPerBookie, folderSize, rssPeakRatio } from '../../bench/soak.ts'
import { writeSetIndices } from '../../machines/quorum.ts'

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

test('the soak counts the entries each bookie stores by segment ensembles and write sets', () => {
  const bookies = ['a', 'b', 'c', 'd']
  const m = {
    lastEntryId: 24, ensembleSize: 3, writeQuorum: 2,
    segments: [{ firstEntryId: 0, ensemble: ['a', 'b', 'c'] }, { firstEntryId: 10, ensemble: ['a', 'd', 'c'] }, { firstEntryId: 23, ensemble: ['b', 'd', 'c'] }],
  }
  // Entry by entry, as a writer sends them.
  const want = bookies.map(() => 0)
  for (let e = 0; e <= m.lastEntryId; e++) {
    const seg = [...m.segments].reverse().find((s) => s.firstEntryId <= e)!
    for (const i of writeSetIndices(e, m.ensembleSize, m.writeQuorum)) want[bookies.indexOf(seg.ensemble[i]!)]!++
  }
  assert.equal(entriesPerBookie(m, bookies), want)
  assert.is(want.reduce((x, y) => x + y, 0), 2 * 25)
  assert.equal(entriesPerBookie({ ...m, lastEntryId: -1, segments: [m.segments[0]!] }, bookies), [0, 0, 0, 0])
})

test('the soak measures folders by allocated blocks, as du does', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-soak-du-'))
  try {
    await mkdir(path.join(dir, 'logs', 'deeper'), { recursive: true })
    await writeFile(path.join(dir, 'logs', 'deeper', 'full'), Buffer.alloc(1024 * 1024, 7))
    await writeFile(path.join(dir, 'sparse'), '')
    await truncate(path.join(dir, 'sparse'), 64 * 1024 * 1024) // 64 MiB long, nothing allocated
    const f = await folderSize(dir)
    assert.ok(f.parts['logs']! >= 1024 * 1024 && f.parts['logs']! < 1.2 * 1024 * 1024, String(f.parts['logs']))
    assert.ok(f.parts['sparse']! < 1024 * 1024, String(f.parts['sparse']))
    assert.is(f.totalBytes, f.parts['logs']! + f.parts['sparse']!)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

/** `bench/run.ts args`: its exit code, stdout and stderr; SIGTERM (the bench's own cleanup) if the test ends first. */
async function runBenchProcess(args: string[], limitMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, '..', '..', 'bench', 'run.ts'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const limit = setTimeout(() => child.kill('SIGTERM'), limitMs)
  try {
    const [code] = (await once(child, 'exit')) as [number | null]
    return { code, stdout, stderr }
  } finally {
    clearTimeout(limit)
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  }
}

test('bench --help prints every option and exits 0; an unknown option is one error line, not a stack', async () => {
  const help = await runBenchProcess(['--help'], 60_000)
  assert.is(help.code, 0)
  assert.is(help.stderr, '')
  assert.is(help.stdout, benchUsage())
  for (const flag of ['--only <value>', '--seconds <value>', '--warmup-seconds <value>', '--quick', '--help']) assert.ok(help.stdout.includes(flag), flag)
  const bad = await runBenchProcess(['--only', 'logs1000_1024B', '--bogus'], 60_000)
  assert.is(bad.code, 1)
  assert.is(bad.stderr, 'error INVALID_CONFIG: unknown option --bogus (--help lists the options)\n')
})

test('parseBenchArgs: defaults, values, --help, and one-line errors for what parseArgs refuses', () => {
  assert.equal(parseBenchArgs([]), { json: false, seconds: 3, tailEntries: 200_000, quick: false, soak: false, soakEntries: 10_000_000, soakCheckpointMs: 30_000, warmupSeconds: 5, rounds: 1 })
  const r = parseBenchArgs(['--rounds', '3'])
  assert.ok(r !== 'help' && r.rounds === 3)
  const o = parseBenchArgs(['--only', '1024B_x1,tail', '--seconds', '2', '--json'])
  assert.ok(o !== 'help' && o.seconds === 2 && o.json && o.only?.join() === '1024B_x1,tail')
  assert.is(parseBenchArgs(['--only', 'tail', '--help']), 'help')
  for (const [args, message] of [
    [['--bogus'], 'unknown option --bogus'],
    [['--seconds'], "Option '--seconds <value>' argument missing"],
    [['stray'], "Unexpected argument 'stray'"],
  ] as const) {
    assert.throws(() => parseBenchArgs([...args]), (err: Error & { code?: string }) => err.code === 'INVALID_CONFIG' && err.message === `${message} (--help lists the options)`)
  }
})

test('--rounds must be a whole number from 1 to 20: one error line', async () => {
  for (const bad of ['0', '2.5', '21']) {
    const r = await runBenchProcess(['--only', '1024B_x1', '--rounds', bad], 60_000)
    assert.is(r.code, 1, bad)
    assert.is(r.stderr, `error INVALID_CONFIG: --rounds must be a whole number from 1 to 20, got ${bad}\n`)
  }
})

test('rounds: per peer the round with the median CPU per entry is shown, every round listed in order, and the ratios are of the shown rounds', () => {
  const spec = { key: '1024B_x1', payloadBytes: 1024, inFlight: 1, logs: 1, ratePerSec: null, warmupSeconds: 2 }
  const round = (peer: PeerName, usPerEntry: number, opsPerSec: number): PeerCell => ({
    peer, ops: 1000, elapsedSeconds: 1, opsPerSec, mbPerSec: 1, inFlight: 1, latencyMs: { p50: 1, p99: 2, p999: 3, max: 4 },
    cpu: { clientUs: 0, processUs: {}, totalUs: 0, usPerEntry, clientUsPerEntry: 0, natsUsPerEntry: 0, bookiesUsPerEntry: 0 },
    nats: { inMsgs: 0, outMsgs: 0, msgsPerEntry: 0 },
  })
  const c = cellResult(spec, [
    round('quire', 900, 1), round('jetstreamR1', 100, 11), round('jetstreamR3', 500, 21),
    round('quire', 1200, 2), round('jetstreamR1', 300, 12), round('jetstreamR3', 400, 22),
    round('quire', 1000, 3), round('jetstreamR1', 200, 13),
  ], [{ peer: 'jetstreamR3', error: 'gone' }])
  assert.equal(c.roundsUsPerEntry, { quire: [900, 1200, 1000], jetstreamR1: [100, 300, 200], jetstreamR3: [500, 400] })
  // The median round itself (its other figures too), not a mix of rounds.
  assert.equal(c.peers.map((p) => [p.peer, p.cpu.usPerEntry, p.opsPerSec]), [['quire', 1000, 3], ['jetstreamR1', 200, 13], ['jetstreamR3', 400, 22]])
  assert.is(c.cpuRatio.overR1, 5)
  assert.is(c.cpuRatio.overR3, 2.5)
  assert.match(formatCells([c]), /1 KiB x1: quire 900\.0, 1200\.0, 1000\.0; jetstream R1 100\.0, 300\.0, 200\.0; jetstream R3 500\.0, 400\.0/)
  // One round: no per-round lines.
  assert.not.match(formatCells([cellResult(spec, [round('quire', 900, 1)], [])]), /each round/)
})

test('the protocol floor: its ratios and its row (bookies, /R1, /R3) next to Quire\'s in the one cell it runs in', () => {
  const spec = { key: '1024B_x1', payloadBytes: 1024, inFlight: 1, logs: 1, ratePerSec: null, warmupSeconds: 2 }
  const round = (peer: PeerName, usPerEntry: number): PeerCell => ({
    peer, ops: 1000, elapsedSeconds: 1, opsPerSec: 1000, mbPerSec: 1, inFlight: 1, latencyMs: { p50: 1, p99: 2, p999: 3, max: 4 },
    cpu: { clientUs: 0, processUs: {}, totalUs: 0, usPerEntry, clientUsPerEntry: 0, natsUsPerEntry: 0, bookiesUsPerEntry: usPerEntry / 2 },
    nats: { inMsgs: 0, outMsgs: 0, msgsPerEntry: 8 },
  })
  const c = cellResult(spec, [round('quire', 1200), round('jetstreamR1', 150), round('jetstreamR3', 600), round('floor', 480)], [])
  assert.equal(c.cpuRatio, { overR1: 8, overR3: 2, overFloor: 2.5, floorOverR1: 3.2, floorOverR3: 0.8 })
  const floorRow = formatCells([c]).split('\n').find((l) => l.includes('protocol floor') && l.includes('480.0'))
  assert.ok(floorRow, formatCells([c]))
  assert.match(floorRow!, /240\.0 +8\.00 +3\.20x +0\.80x$/)
  const fdatasync = { inFlight: 1, ops: 1, elapsedSeconds: 1, opsPerSec: 1, mbPerSec: 0, latencyMs: { p50: 1, p99: 1, p999: 1, max: 1 } }
  const ratios = ratiosOf([c], fdatasync, [])
  assert.is(ratios.find((r) => r.key === 'cpuFloorOverR1_1KiB_x1')?.value, 3.2)
  assert.is(ratios.find((r) => r.key === 'cpuQuireOverFloor_1KiB_x1')?.value, 2.5)
  // Without the floor's round the cell says nothing of it.
  const without = cellResult(spec, [round('quire', 1200), round('jetstreamR1', 150)], [])
  assert.is(without.cpuRatio.overFloor, null)
  assert.not.ok(ratiosOf([without], fdatasync, []).some((r) => r.key.includes('Floor')))
})

test('the protocol floor sends each entry to both its bookies, each writes it to its file and answers: 8 NATS messages an entry; an op whose bookie died fails', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'quire-floor-'))
  const steps: Array<() => Promise<unknown>> = []
  try {
    const floor = await startFloor(dir, { push: (s) => steps.push(s) }, ['1024B_x1'])
    assert.equal(floor.cells, ['1024B_x1'])
    assert.equal(floor.procs.map((p) => p.name), ['nats-server', ...Array.from({ length: FLOOR_BOOKIES }, (_, i) => `bookie-${i + 1}`)])
    const payload = Buffer.alloc(1024, 0x5a)
    const subject = await floor.open(payload)
    const before = await natsMessages(floor.monitorPorts)
    const OPS = 50
    for (let i = 0; i < OPS; i++) await subject.op()
    // Several in flight: each waits for its own two answers.
    await Promise.all(Array.from({ length: 16 }, () => subject.op()))
    const after = await natsMessages(floor.monitorPorts)
    const msgs = after.inMsgs + after.outMsgs - before.inMsgs - before.outMsgs
    assert.ok(msgs >= 8 * (OPS + 16) && msgs <= 8 * (OPS + 16) + 4, `${msgs} NATS messages for ${OPS + 16} entries`)
    for (let i = 1; i <= FLOOR_BOOKIES; i++) {
      const journal = await readFile(path.join(dir, `floor-journal-${i}`))
      assert.equal(journal.subarray(0, 1024), payload, `bookie ${i} wrote the entry`)
    }
    process.kill(floor.procs[1]!.pid, 'SIGKILL')
    // In flight when the bookie dies, or asked after: either way an error, never a wait forever.
    const failed = await Promise.all([subject.op(), new Promise((r) => setTimeout(r, 500)).then(() => subject.op())].map((p) => p.then(() => null, (e: unknown) => e)))
    for (const err of failed) assert.match(String(err), /floor bookie 1 exited/)
  } finally {
    for (const s of steps.reverse()) await s()
    await rm(dir, { recursive: true, force: true })
  }
})

test('--soak-entries must be a whole number of at least 1000', async () => {
  const r = await runBenchProcess(['--only', 'soak', '--soak-entries', '50'], 60_000)
  assert.is(r.code, 1)
  assert.match(r.stderr, /error INVALID_CONFIG: --soak-entries must be an integer of at least 1000, got 50/)
})

test('the soak\'s RSS ratio compares the peaks of the first and last quarters after the warm-up, not two single samples', () => {
  // A sawtooth with no growth: flat, though its last sample is 1.5x its first after the warm-up.
  const saw = [100, 200, 300, 200, 300, 200, 300, 200, 300]
  assert.is(rssPeakRatio(saw, 1), 1)
  // Growth shows: the last quarter's peak over the first's.
  assert.is(rssPeakRatio([100, 200, 200, 220, 230, 240, 250, 260, 400], 1), 2)
  assert.is(rssPeakRatio([100, 200], 1), 1)
})

test('the soak section writes, samples every bookie\'s RSS, deletes half the ledgers and measures real folders before and after', async () => {
  const entries = 20_000
  // Bookies that checkpoint every 3 s (the product's 30 s would be most of the test's time).
  const r = await runBenchProcess(['--only', 'soak', '--soak-entries', String(entries), '--soak-checkpoint-ms', '3000', '--seconds', '1', '--json'], 600_000)
  assert.is(r.code, 0, r.stderr.slice(-4000))
  const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as BenchResult
  const soak = result.soak!
  assert.ok(soak, 'no soak in the JSON')
  assert.is(result.cells.length, 0)
  // RSS: a sample per point and bookie, a ratio each, printed.
  assert.is(soak.points.length, soak.params.samples)
  assert.is(soak.points.at(-1)!.entries, entries)
  assert.is(soak.rss.length, 3)
  for (const b of soak.rss) {
    assert.is(b.rssMiB.length, soak.points.length)
    assert.ok(b.rssMiB.every((x) => x > 10), String(b.rssMiB))
    assert.ok(soak.points[b.baseIndex]!.entries > soak.params.warmupFraction * entries)
    assert.is(b.ratio, rssPeakRatio(b.rssMiB, b.baseIndex))
    assert.is(b.lastOverBase, b.rssMiB.at(-1)! / b.rssMiB[b.baseIndex]!)
  }
  // Disk: every entry on two of the three bookies; half the ledgers (and so half the entries) gone.
  assert.is(soak.deletedLedgers, soak.params.ledgers / 2)
  assert.is(soak.disk.reduce((n, d) => n + d.liveEntriesBefore, 0), 2 * entries)
  assert.is(soak.disk.reduce((n, d) => n + d.liveEntriesAfter, 0), entries)
  for (const d of soak.disk) {
    assert.is(d.gcDeletedLedgers, soak.deletedLedgers)
    assert.ok(d.compactions.length >= 1 && d.compactions.some((c) => Number(c['entriesMoved']) > 0), JSON.stringify(d.compactions))
    for (const part of ['journal', 'entries', 'entries.logs']) assert.ok(part in d.after.parts, `${d.bookie} has no ${part}: ${JSON.stringify(d.after.parts)}`)
    // Real folders: the compaction gave back space, and the ratio is their size over the live data.
    assert.ok(d.after.totalBytes < d.before.totalBytes, `${d.bookie}: ${d.before.totalBytes} -> ${d.after.totalBytes}`)
    assert.ok(d.after.parts['entries.logs']! < d.before.parts['entries.logs']!, JSON.stringify([d.before.parts, d.after.parts]))
    assert.is(d.liveBytesAfter, d.liveEntriesAfter * (soak.params.payloadBytes + soak.params.allowanceBytesPerEntry))
    assert.is(d.ratioAfter, d.after.totalBytes / d.liveBytesAfter)
  }
  for (const b of ['soak-bookie-1', 'soak-bookie-2', 'soak-bookie-3']) {
    for (const key of [`soakRssPeakLateOverEarly_${b}`, `soakDiskOverLive_${b}`]) {
      const x = result.ratios.find((q) => q.key === key)
      assert.ok(x && x.target !== null && typeof x.met === 'boolean', key)
    }
    assert.match(r.stderr, new RegExp(`soak ${b}: RSS peak, last / first quarter after warm-up\\s+\\d+\\.\\d\\d\\s+target <= 1\\.25\\s+(met|NOT MET)`))
    assert.match(r.stderr, new RegExp(`soak ${b}: disk use / live data after deleting half and compacting\\s+\\d+\\.\\d\\d\\s+target <= 1\\.2\\s+(met|NOT MET)`))
  }
  assert.match(r.stderr, /soak: entries\s+seconds\s+soak-bookie-1 RSS MiB/)
  assert.match(r.stderr, /RSS ratio = highest sample of the last quarter \/ highest of the first quarter after the warm-up/)
  assert.match(r.stderr, /soak: bookie\s+live entries/)
})

test.run()
