// Limbo ledgers and the integrity check on real bookie processes (real nats-server, fsync,
// RocksDB): a bookie that stopped uncleanly (kill -9) or came back on a formatted disk answers
// IN_LIMBO, never NO_SUCH_ENTRY / NO_SUCH_LEDGER, for what it lacks of the ledgers it cannot
// vouch for, until its integrity check finds them closed (or deleted) in the metadata; fences on a
// limbo ledger work; a clean stop (SIGTERM) puts nothing in limbo. PROTOCOL.md's recovery rule
// counts NO_SUCH_ENTRY as absence, so without limbo such a bookie could truncate a ledger.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { BookieClient } from '../../client/bookieClient.ts'
import { isQuireError } from '../../machines/errors.ts'
import { AutorecoveryStore } from '../../storage/autorecoveryStore.ts'
import { openMetadata } from '../../storage/openMetadata.ts'
import { masterKeyOf } from '../../transport/entry.ts'
import { connectNats } from '../../transport/nats.ts'
import { RC, inspectSubject, rcName, type ReadResponse } from '../../transport/wire.ts'
import { payloadFor, startCluster, type TestCluster } from '../support/cluster.ts'
import { cleanEnv, quire, show, type Run } from '../support/nodes.ts'

const t = suite<{ c: TestCluster }>('limbo')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3, inspect: true }) })
t.after(async (ctx) => { await ctx.c?.stop() })

const KEY = masterKeyOf('')

const shell = (c: TestCluster, ...args: string[]): Promise<Run> => quire(['shell', ...args, '--nats', c.nats.url], cleanEnv(), 90_000)

/** A read from one bookie, asked again while it does not answer yet (just restarted). */
async function readFrom(c: TestCluster, bookieId: string, ledgerId: number, ids: number[], fence = false): Promise<ReadResponse> {
  const nc = await connectNats(c.nats.url)
  try {
    const bc = new BookieClient(nc)
    const deadline = Date.now() + 30_000
    for (;;) {
      try {
        return await bc.read(bookieId, ledgerId, ids, 1 << 20, 2000, fence ? { masterKey: KEY } : undefined)
      } catch (err) {
        if (!isQuireError(err, 'TIMEOUT') || Date.now() > deadline) throw err
      }
    }
  } finally {
    await nc.close()
  }
}

/** The bookie's inspection state (what the inspector shows) once `pred` holds of its integrity part. */
async function inspectedIntegrity(c: TestCluster, bookieId: string, pred: (i: { unchecked: boolean; limboLedgers: number; limbo: number[] }) => boolean) {
  const nc = await connectNats(c.nats.url)
  try {
    const sub = nc.subscribe(inspectSubject('bookie', bookieId), { timeout: 30_000 })
    for await (const m of sub) {
      const i = (JSON.parse(Buffer.from(m.data).toString('utf8')) as { context: { integrity?: Parameters<typeof pred>[0] | null } }).context.integrity
      if (i && pred(i)) return i
    }
    throw new Error(`no inspection message of ${bookieId} matched`)
  } finally {
    await nc.close()
  }
}

const codes = (r: ReadResponse): string[] => r.rc === RC.OK ? r.entries.map(([rc]) => rcName(rc)) : [rcName(r.rc)]

/** An open ledger on every bookie (E = Qw = Qa = 3) holding `n` acknowledged entries. */
async function openLedgerWith(c: TestCluster, n: number) {
  const w = await (await c.client()).createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  for (let i = 0; i < n; i++) await w.append(payloadFor(i, 100))
  return w
}

async function killAndRestart(c: TestCluster, i: number): Promise<void> {
  const b = c.bookie(`bookie-${i}`)
  b.kill('SIGKILL')
  await b.exited
  await c.startBookie(i)
}

t('kill -9: the restarted bookie answers IN_LIMBO for an entry it lacks in an open ledger; fencing works; once recovery closes the ledger, bookieintegritycheck clears it', async ({ c }) => {
  const w = await openLedgerWith(c, 5)
  await killAndRestart(c, 1)
  // What it holds it serves; entry 7 was never written, but after a power cut it could have been
  // acknowledged and lost: unknown, not absent.
  assert.equal(codes(await readFrom(c, 'bookie-1', w.ledgerId, [0, 4, 7])), ['OK', 'OK', 'IN_LIMBO'])
  // The inspector's state of the bookie names the ledger in limbo.
  const seen = await inspectedIntegrity(c, 'bookie-1', (i) => i.limboLedgers > 0)
  assert.equal(seen.limbo, [w.ledgerId])
  assert.is(seen.unchecked, false)
  // A bookie still running cleanly says what it knows.
  assert.equal(codes(await readFrom(c, 'bookie-2', w.ledgerId, [7])), ['NO_SUCH_ENTRY'])
  // A fencing read on the limbo ledger: fenced (journaled) and answered as usual.
  assert.equal(codes(await readFrom(c, 'bookie-1', w.ledgerId, [5], true)), ['IN_LIMBO'])
  const refused = await w.append(payloadFor(5, 100)).then(() => null, (err: unknown) => err)
  assert.ok(isQuireError(refused, 'FENCED'), `the old writer is fenced out: ${String(refused)}`)
  // Still open in the metadata: the check keeps it in limbo.
  const before = await shell(c, 'bookieintegritycheck', 'bookie-1')
  assert.is(before.code, 0, show(before))
  assert.match(before.stdout, /1 ledger\(s\) still in limbo/)
  // Recovery by another client closes it (bookies 2 and 3 vouch for the end; the refused add of
  // entry 5 reached them, so recovery may keep it).
  const r = await (await c.client()).openLedger(w.ledgerId, { recovery: true })
  assert.ok(r.lastAddConfirmed >= 4 && r.lastAddConfirmed <= 5, `closed at ${r.lastAddConfirmed}`)
  const after = await shell(c, 'bookieintegritycheck', 'bookie-1')
  assert.is(after.code, 0, show(after))
  assert.match(after.stdout, /bookie bookie-1: checked, nothing in limbo; 1 ledger\(s\) left limbo, 0 marked/)
  assert.equal(codes(await readFrom(c, 'bookie-1', w.ledgerId, [7])), ['NO_SUCH_ENTRY'])
})

t('a clean stop (SIGTERM) puts nothing in limbo', async ({ c }) => {
  const w = await openLedgerWith(c, 3)
  await c.bookie('bookie-2').stop()
  await c.startBookie(2)
  assert.equal(codes(await readFrom(c, 'bookie-2', w.ledgerId, [0, 9])), ['OK', 'NO_SUCH_ENTRY'])
  const r = await shell(c, 'bookieintegritycheck', 'bookie-2')
  assert.match(r.stdout, /checked, nothing in limbo; 0 ledger\(s\) left limbo/)
  await w.close()
})

t('a formatted bookie is unchecked: it answers IN_LIMBO for an open ledger placed on it, and marks the closed ones it lacks for re-copy', async ({ c }) => {
  const open = await openLedgerWith(c, 4)
  const closed = await openLedgerWith(c, 6)
  await closed.close()
  await c.bookie('bookie-3').stop()
  const fmt = await shell(c, 'bookieformat', '--data', c.bookie('bookie-3').data, '--bookie', 'bookie-3')
  assert.is(fmt.code, 0, show(fmt))
  await c.startBookie(3)
  // It lost everything: for the open ledger, that is unknown, not absent (old code: NO_SUCH_LEDGER).
  assert.equal(codes(await readFrom(c, 'bookie-3', open.ledgerId, [0, 3])), ['IN_LIMBO'])
  // The closed one left limbo at start-up, marked for an in-place re-copy onto bookie-3.
  const nc = await connectNats(c.nats.url)
  try {
    const md = await openMetadata(nc)
    const mark = await new AutorecoveryStore(md.clusterKv).readMark(closed.ledgerId)
    assert.ok(mark, 'the closed ledger is marked under-replicated')
    assert.equal(mark.value.damaged, ['bookie-3'])
    assert.is(await new AutorecoveryStore(md.clusterKv).readMark(open.ledgerId), null)
  } finally {
    await nc.close()
  }
  assert.equal(codes(await readFrom(c, 'bookie-3', closed.ledgerId, [0])), ['NO_SUCH_LEDGER'])
  await open.close()
})

t('bookieintegritycheck: a bookie that is not running is a typed error', async ({ c }) => {
  const r = await shell(c, 'bookieintegritycheck', 'bookie-nope', '--timeout-ms', '3000')
  assert.is(r.code, 1)
  assert.match(r.stderr, /BOOKIE_UNAVAILABLE|TIMEOUT/)
  assert.not.match(r.stderr, /\n\s+at /)
  const wild = await shell(c, 'bookieintegritycheck', '*')
  assert.is(wild.code, 1, show(wild))
  assert.match(wild.stderr, /error INVALID_CONFIG: bookie id may hold letters, digits, - and _ only/)
})

t.run()
