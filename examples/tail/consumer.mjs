// A tailing consumer: follows a ledger as its writer appends (long polls parked at the bookies,
// no busy loop) and prints `<entryId> <payload>` for every entry, from `from` on, in order, exactly
// once. Ends when the ledger is closed and its last entry printed, or on Ctrl-C.
//
// usage: node consumer.mjs <ledgerId> [from]      (from: 0)

import { count, fromEvent, lastValueFrom, takeUntil, tap } from 'rxjs'
import { connect, isQuireError } from 'quire'

const ledgerId = Number(process.argv[2])
const from = Number(process.argv[3] ?? 0)
if (!Number.isSafeInteger(ledgerId) || !Number.isSafeInteger(from) || from < 0) {
  process.stderr.write('usage: node consumer.mjs <ledgerId> [from]\n')
  process.exit(2)
}

const client = await connect({ servers: process.env.QUIRE_NATS ?? 'nats://127.0.0.1:4222', name: 'tail-consumer' })
try {
  // Without recovery: a reader never fences the writer and never writes metadata.
  const reader = await client.openLedger(ledgerId)
  const printed = await lastValueFrom(reader.tail$({ from }).pipe(
    takeUntil(fromEvent(process, 'SIGINT')), // unsubscribing cancels the parked long polls
    tap((entry) => process.stdout.write(`${entry.entryId} ${entry.payload.toString('utf8')}\n`)),
    count(),
  ))
  process.stderr.write(reader.isClosed || (await reader.refreshMetadata()).state === 'CLOSED'
    ? `ledger ${ledgerId} is closed; ${printed} entries\n`
    : `stopped; ${printed} entries\n`)
  await client.close()
} catch (err) {
  process.stderr.write(`consumer: ${isQuireError(err) ? `${err.code}: ${err.message}` : err?.stack ?? err}\n`)
  process.exit(1)
}
