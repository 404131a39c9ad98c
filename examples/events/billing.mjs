// A consumer with a cursor: reads the log `orders` as subscriber `billing`, from where that
// subscriber last committed (the start of the log the first time), prints `<position> <payload>`
// for each event and commits its position once it is handled. Stopped at any moment (Ctrl-C,
// kill -9, or after `max` events), it resumes after the last commit the next time: every event is
// handled at least once, in order, and none is skipped. Ends when the log is sealed.
//
// usage: node billing.mjs [max]      (max: until the log is sealed)

import { connect, formatPosition, isQuireError } from 'quire'

const max = process.argv[2] === undefined ? Infinity : Number(process.argv[2])
if (!(max >= 0)) {
  process.stderr.write('usage: node billing.mjs [max]\n')
  process.exit(2)
}

const client = await connect({ servers: process.env.QUIRE_NATS ?? 'nats://127.0.0.1:4222', name: 'events-billing' })
try {
  const reader = (await client.logs.openLog('orders')).reader({ subscriber: 'billing' })
  let handled = 0
  let total = 0
  if (max > 0) {
    for await (const r of reader.records()) {
      const order = JSON.parse(Buffer.from(r.payload).toString('utf8'))
      total += order.amount
      process.stdout.write(`${formatPosition(r.position)} ${Buffer.from(r.payload).toString('utf8')}\n`)
      // One commit per event keeps the example short; an application commits every N events or
      // every few seconds (a commit is one compare-and-swap in JetStream KV).
      await reader.commit(r.position)
      if (++handled >= max) break
    }
  }
  process.stderr.write(`${handled} events handled, amount ${total}${handled < max ? '; the log is sealed' : ''}\n`)
  await client.close()
} catch (err) {
  // NO_SUCH_LOG: nothing published yet; TRUNCATED: the cursor is before what the log still holds.
  process.stderr.write(`billing: ${isQuireError(err) ? `${err.code}: ${err.message}` : err?.stack ?? err}\n`)
  process.exit(1)
}
