// Crash and restart with real processes: kill -9 every bookie after acks, restart them, and every
// acknowledged entry reads back byte for byte (journal replay). A torn last journal record is
// the end of the journal; a corrupt record before the tail refuses start-up (CORRUPT_JOURNAL).

import { open, readFile, readdir, stat } from 'node:fs/promises'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from '../../storage/journal.ts'
import { PADDING_FLAG } from '../../storage/journalFormat.ts'
import { payloadFor, startCluster, type TestCluster } from '../support/cluster.ts'

const t = suite<{ c: TestCluster }>('restart')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3 }) })
t.after(async (ctx) => { await ctx.c?.stop() })

async function lastJournalFile(dataDir: string): Promise<string> {
  const dir = path.join(dataDir, 'journal')
  const files = (await readdir(dir)).filter((f) => f.endsWith('.log')).sort()
  for (let i = files.length - 1; i >= 0; i--) {
    const f = path.join(dir, files[i]!)
    if ((await stat(f)).size > 0) return f
  }
  throw new Error(`no journal data in ${dir}`)
}

/**
 * The records of a journal segment file (padding records skipped): where each starts and ends
 * and where its group write starts, up to the zero-filled space past the last one or a record
 * running past the end of the file.
 */
async function journalRecords(file: string): Promise<{ start: number; end: number; groupStart: number }[]> {
  const buf = await readFile(file)
  const out: { start: number; end: number; groupStart: number }[] = []
  let off = SEGMENT_HEADER_BYTES
  while (off + RECORD_HEADER_BYTES <= buf.length) {
    const field = buf.readUInt32BE(off)
    if (field === 0) break
    const end = off + RECORD_HEADER_BYTES + ((field & ~PADDING_FLAG) >>> 0)
    if (end > buf.length) break
    if ((field & PADDING_FLAG) === 0) out.push({ start: off, end, groupStart: off - buf.readUInt32BE(off + 4) })
    off = end
  }
  return out
}

/** A ledger on every bookie (E = Qw = Qa = 3) with n acknowledged entries, then kill -9 all bookies. */
async function writeThenKillAll(c: TestCluster, n: number) {
  const w = await (await c.client()).createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  for (let i = 0; i < n; i++) await w.append(payloadFor(i, 300))
  await killAll(c)
  return w
}

async function killAll(c: TestCluster): Promise<void> {
  for (const b of c.bookies) b.kill('SIGKILL')
  await Promise.all(c.bookies.map((b) => b.exited))
}

t('kill -9 every bookie after acks: after restart every acked entry reads back', async ({ c }) => {
  const client = await c.client()
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  const n = 3000
  const acked = await Promise.all(Array.from({ length: n }, (_, i) => w.append(payloadFor(i, 200))))
  assert.is(acked.length, n)
  await killAll(c)
  for (let i = 1; i <= 3; i++) await c.startBookie(i)
  // The writer is alive; only the bookies died. It closes at its LAC (no bookie needed for that).
  await w.close()
  const r = await (await c.client()).openLedger(w.ledgerId)
  assert.is(r.lastAddConfirmed, n - 1)
  const got = await r.read(0, n - 1)
  got.forEach((e, i) => assert.ok(e.payload.equals(payloadFor(i, 200)), `entry ${i} differs after restart`))
})

t('a torn last journal record is ignored; the other replica still serves the entry', async ({ c }) => {
  const w = await writeThenKillAll(c, 50)
  const file = await lastJournalFile(c.bookie('bookie-1').data)
  const last = (await journalRecords(file)).at(-1)
  assert.ok(last !== undefined && last.end - last.start > 100)
  const fh = await open(file, 'r+')
  await fh.truncate(last.end - 7)
  await fh.close()
  for (let i = 1; i <= 3; i++) await c.startBookie(i)
  await w.close()
  const r = await (await c.client()).openLedger(w.ledgerId)
  const got = await r.read(0, 49)
  got.forEach((e, i) => assert.ok(e.payload.equals(payloadFor(i, 300))))
})

t('a corrupt record before the journal tail refuses start-up with CORRUPT_JOURNAL', async ({ c }) => {
  await writeThenKillAll(c, 40)
  const file = await lastJournalFile(c.bookie('bookie-2').data)
  const records = await journalRecords(file)
  assert.ok(records.at(-1)!.groupStart > records[0]!.start, 'records of a later group write follow the first')
  // The group offset in the header of the segment's first record (past the padding that fills
  // the header's block); intact records of later group writes follow it.
  const at = records[0]!.start + 4
  const fh = await open(file, 'r+')
  const byte = Buffer.alloc(1)
  await fh.read(byte, 0, 1, at)
  byte[0] = byte[0]! ^ 0xff
  await fh.write(byte, 0, 1, at)
  await fh.close()
  const refused = await c.startBookie(2).then(() => null, (err: Error) => err)
  assert.ok(refused, 'bookie-2 must refuse to start')
  assert.match(refused.message, /CORRUPT_JOURNAL/)
  const b2 = c.bookie('bookie-2')
  assert.is(await b2.exited, 1)
  assert.match(b2.output(), /error CORRUPT_JOURNAL: .*journal-\d+\.log/)
  assert.not.match(b2.output(), /\n\s+at /, 'no stack trace for an operating error')
  await c.startBookie(1)
  await c.startBookie(3)
})

t.run()
