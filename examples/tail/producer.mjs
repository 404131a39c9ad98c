// An RxJS producer: appends one entry every `intervalMs` to a new ledger through `append$`, which
// keeps at most `maxInFlight` entries unacknowledged and emits each entry, in order, once Qa
// bookies have it on disk. Prints `ledger <id>` first, then `acked <entryId> <payload>` per entry.
// Stops after `count` entries or on Ctrl-C, and closes the ledger, which ends every tailing reader.
//
// usage: node producer.mjs [count] [intervalMs]      (count: until Ctrl-C; intervalMs: 200)

import { fromEvent, interval, lastValueFrom, map, take, takeUntil, tap } from 'rxjs'
import { connect, isQuireError } from 'quire'

const count = process.argv[2] === undefined ? Infinity : Number(process.argv[2])
const intervalMs = Number(process.argv[3] ?? 200)
if (!(count >= 0) || !(intervalMs >= 0)) {
  process.stderr.write('usage: node producer.mjs [count] [intervalMs]\n')
  process.exit(2)
}

const client = await connect({ servers: process.env.QUIRE_NATS ?? 'nats://127.0.0.1:4222', name: 'tail-producer' })
try {
  const writer = await client.createLedger({ customMetadata: { example: 'tail' } })
  process.stdout.write(`ledger ${writer.ledgerId}\n`)

  const messages$ = interval(intervalMs).pipe(
    take(count),
    takeUntil(fromEvent(process, 'SIGINT')),
    map((i) => `message ${i} at ${new Date().toISOString()}`),
  )
  const acked = writer.append$(messages$, { maxInFlight: 64 }).pipe(
    tap(({ entryId, payload }) => process.stdout.write(`acked ${entryId} ${Buffer.from(payload).toString('utf8')}\n`)),
  )
  await lastValueFrom(acked, { defaultValue: null })
  await writer.close()
  process.stdout.write(`closed ledger ${writer.ledgerId} at entry ${writer.metadata.lastEntryId}\n`)
  await client.close()
} catch (err) {
  // FENCED: someone recovered the ledger; LEDGER_CLOSED: it was closed under us.
  process.stderr.write(`producer: ${isQuireError(err) ? `${err.code}: ${err.message}` : err?.stack ?? err}\n`)
  process.exit(1)
}
