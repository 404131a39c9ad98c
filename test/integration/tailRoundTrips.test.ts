// What a tailing reader sends per entry, on real bookie processes: a read reply carries the LAC
// its bookie knows, so a reader behind its writer goes from read to read and long-polls only once
// it has caught up (a poll between every two batches doubled the round trips, and a reader at
// 10,000 entries/s fell seconds behind and never caught up). Counted on the wire (a second NATS
// connection listening on the bookies' subjects), never timed.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { BookieClient } from '../../client/bookieClient.ts'
import { connectNats } from '../../transport/nats.ts'
import { bookieSubject, decode, type WireMessage } from '../../transport/wire.ts'
import { payloadFor, sleep, startCluster, type TestCluster } from '../support/cluster.ts'

const t = suite<{ c: TestCluster }>('tail round trips')
t.before(async (ctx) => { ctx.c = await startCluster({ bookies: 3 }) })
t.after(async (ctx) => { await ctx.c?.stop() })

/** Waits for `cond`, polling; fails naming `what` after `ms`. */
async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

t('a read reply carries the LAC its bookie knows', async ({ c }) => {
  const w = await (await c.client({ explicitLacIntervalMs: 30 })).createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 })
  for (let i = 0; i < 10; i++) await w.append(payloadFor(i))
  const raw = (await c.client() as unknown as { bookies: BookieClient }).bookies
  const bookie = w.metadata.segments[0]!.ensemble[0]!
  // The idle writer's explicit LAC tells every bookie 9.
  await until(async () => ((await raw.read(bookie, w.ledgerId, [0], 1 << 20, 5000)).lac ?? -1) >= 9, 'a read reply with LAC 9')
  const resp = await raw.read(bookie, w.ledgerId, [0, 1], 1 << 20, 5000)
  assert.is(resp.lac, 9)
  assert.is(resp.entries.length, 2)
  await w.close()
})

t('a reader behind its writer reads batch after batch with no long poll until it has caught up', async ({ c }) => {
  const writer = await c.client({ explicitLacIntervalMs: 30 })
  const w = await writer.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  for (let i = 0; i < 100; i++) void w.append(payloadFor(i))
  await w.append(payloadFor(100))
  // No speculative reads: a loaded machine leaving a request unanswered for 500 ms would add some.
  const rc = await c.client({ speculativeReadTimeoutMs: 600_000 })
  const r = await rc.openLedger(w.ledgerId)
  await until(async () => (await r.readLac()) >= 100, 'the reader to learn LAC 100')
  // The writer goes on: the bookies learn LACs past what the reader knows.
  const more: Promise<number>[] = []
  for (let i = 101; i < 1000; i++) more.push(w.append(payloadFor(i)))
  await Promise.all(more)
  await w.append(payloadFor(1000))

  const raw = (rc as unknown as { bookies: BookieClient }).bookies
  const spy = await connectNats(c.nats.url)
  const sent: WireMessage[] = []
  for (const b of w.metadata.segments[0]!.ensemble) {
    spy.subscribe(bookieSubject(b), {
      callback: (_e, m) => {
        if (m.reply !== raw.inbox) return
        try { sent.push(decode(m.data)) } catch { /* not the reader's */ }
      },
    })
  }
  await spy.flush()
  const it = r.entries({ from: 0, batch: 100, pollMs: 10_000 })
  try {
    const start = r.lastAddConfirmed
    assert.ok(start >= 100 && start < 999, `the reader starts behind (LAC ${start})`)
    for (let i = 0; i < 1000; i++) {
      const e = await it.next()
      assert.is(e.value?.entryId, i)
    }
    await spy.flush()
    // Entry 1000 carried LAC 999 to the bookies: a poll from a LAC under that was sent behind.
    const polls = sent.flatMap((m) => (m.op === 'readLac' ? [m.previousLac ?? -2] : []))
    const reads = sent.flatMap((m) => (m.op === 'read' ? [m.entryIds] : []))
    assert.equal(polls.filter((lac) => lac < 999), [], `no long poll while behind (polls from ${polls.join(', ')})`)
    // Ten batches of 100, each asked of the three bookies (E3 Qw2: each holds two thirds), and
    // up to two more where a batch stopped at the LAC the reader knew when it asked.
    const asked = reads.filter((ids) => ids[0]! < 1000)
    assert.ok(asked.length <= 36, `${asked.length} read requests for 1,000 entries`)
  } finally {
    await it.return?.()
    await spy.close()
  }
  await w.close()
})

t.run()
