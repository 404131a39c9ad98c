// What opening a ledger costs, counted on a real cluster (nats-server, three bookie processes):
// everything the client sends during one openLedger, at its NATS connection (JetStream API
// requests are metadata reads; publishes on the bookies' subjects are bookie requests), and the
// order of its bookie requests and their answers. An open ledger costs one metadata read and one
// round of LAC reads sent at once (no request waits on another's answer), at most one per bookie
// of its last segment; a closed one, one metadata read and nothing else. Recovery is not counted:
// it fences, reads and writes by design.

import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import type { NatsConnection } from '@nats-io/transport-node'
import { BookieClient, QuireClientImpl, connectNats, openMetadata, realClock } from '../../client/internal.ts'
import { startCluster, type TestCluster } from '../support/cluster.ts'

interface Sent { metadata: string[]; bookie: string[] }

/** Counts what `nc` sends from now on: JetStream API requests and publishes to bookies. */
function countSends(nc: NatsConnection): { sent: Sent; reset(): void } {
  const sent: Sent = { metadata: [], bookie: [] }
  const note = (subject: string): void => {
    if (subject.startsWith('$JS.') || subject.startsWith('$KV.')) sent.metadata.push(subject)
    else if (subject.startsWith('quire.bookie.')) sent.bookie.push(subject)
  }
  // nats.js sends requests through the connection's own publish too: this one sees everything.
  const publish = nc.publish.bind(nc)
  nc.publish = (subject, ...rest) => { note(subject); return publish(subject, ...rest) }
  return { sent, reset: () => { sent.metadata.length = 0; sent.bookie.length = 0 } }
}

/**
 * Wraps the bookie transport's requests: for each, how many bookie answers had come in when it
 * was sent. One round: every request went out before any answer.
 */
function countRounds(bookies: BookieClient): { sentAfterAnswers: number[]; reset(): void } {
  const sentAfterAnswers: number[] = []
  let answered = 0
  for (const m of ['read', 'readLac', 'longPollLac'] as const) {
    const orig = (bookies[m] as (...a: unknown[]) => Promise<unknown>).bind(bookies)
    ;(bookies as unknown as Record<string, unknown>)[m] = (...args: unknown[]) => {
      sentAfterAnswers.push(answered)
      return orig(...args).finally(() => { answered++ })
    }
  }
  return { sentAfterAnswers, reset: () => { sentAfterAnswers.length = 0; answered = 0 } }
}

const t = suite<{ c: TestCluster; openId: number; closedId: number }>('openCost')

t.before(async (ctx) => {
  ctx.c = await startCluster({ bookies: 3 })
  const w = await ctx.c.client()
  const open = await w.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  for (let i = 0; i < 5; i++) await open.append(`entry ${i}`)
  const closed = await w.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 })
  for (let i = 0; i < 3; i++) await closed.append(`entry ${i}`)
  await closed.close()
  ctx.openId = open.ledgerId
  ctx.closedId = closed.ledgerId
})

t.after(async (ctx) => { await ctx.c?.stop() })

t('openLedger: one metadata read and one round of LAC reads, at most one per bookie; a closed ledger, the metadata read only', async (ctx) => {
  const nc = await connectNats(ctx.c.nats.url, { name: 'open-cost' })
  const metadata = await openMetadata(nc)
  const bookies = new BookieClient(nc)
  const client = new QuireClientImpl({ nc, bookies, metadata, clock: realClock, random: Math.random }, { readTimeoutMs: 5000 })
  try {
    const sends = countSends(nc)
    const rounds = countRounds(bookies)
    // Several opens: the first may pay for warm-up the later ones do not; each is held to the bound.
    for (let k = 0; k < 3; k++) {
      sends.reset()
      rounds.reset()
      const h = await client.openLedger(ctx.openId)
      const what = `open #${k}: ${JSON.stringify(sends.sent)}, bookie requests sent after [${rounds.sentAfterAnswers}] answers`
      assert.ok(h.lastAddConfirmed >= 3, `learned a LAC (${h.lastAddConfirmed}); ${what}`)
      assert.is(sends.sent.metadata.length, 1, `one metadata read: ${what}`)
      assert.ok(sends.sent.bookie.length >= 1 && sends.sent.bookie.length <= 3, `at most one request per bookie of the ensemble: ${what}`)
      assert.ok(rounds.sentAfterAnswers.every((n) => n === 0), `one round: no bookie request waited for an answer: ${what}`)
      assert.is(rounds.sentAfterAnswers.length, sends.sent.bookie.length, `every bookie request went through the transport: ${what}`)
    }
    sends.reset()
    rounds.reset()
    const closed = await client.openLedger(ctx.closedId)
    assert.is(closed.lastAddConfirmed, 2)
    assert.equal([sends.sent.metadata.length, sends.sent.bookie.length], [1, 0], `a closed ledger: ${JSON.stringify(sends.sent)}`)
  } finally {
    await client.close()
  }
})

t.run()
