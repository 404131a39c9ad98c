// A publisher of order events to the named log `orders` (created when missing, segments rolled
// every 1,000 records): appends `count` events, many in flight (the writer packs what is appended
// in the same tick into one entry), and prints `acked <position> <payload>` for each, in order. With
// `--seal`, marks the end of the stream after the last one, which ends every reader.
// A second publisher takes the log over (it fences the first and recovers its last segment).
//
// usage: node publish.mjs <count> [--seal]

import { connect, formatPosition, isQuireError } from 'quire'

const count = Number(process.argv[2])
const seal = process.argv.includes('--seal')
if (!Number.isSafeInteger(count) || count < 0) {
  process.stderr.write('usage: node publish.mjs <count> [--seal]\n')
  process.exit(2)
}

const client = await connect({ servers: process.env.QUIRE_NATS ?? 'nats://127.0.0.1:4222', name: 'events-publisher' })
try {
  if (!(await client.logs.logExists('orders'))) {
    await client.logs.createLog('orders', { segmentRecordsMax: 1000 }).catch((err) => {
      if (!isQuireError(err, 'LOG_EXISTS')) throw err // another publisher made it first
    })
  }
  const writer = await (await client.logs.openLog('orders')).writer()
  const events = Array.from({ length: count }, (_, i) => JSON.stringify({ order: i, amount: 10 + (i % 7), at: new Date().toISOString() }))
  // All appended at once; the promises resolve in order, each once its entry is acknowledged.
  const positions = await Promise.all(events.map((e) => writer.append(e)))
  positions.forEach((p, i) => process.stdout.write(`acked ${formatPosition(p)} ${events[i]}\n`))
  if (seal) await writer.markEndOfStream()
  else await writer.close()
  await client.close()
} catch (err) {
  // FENCED: another publisher took the log; END_OF_STREAM: it is sealed.
  process.stderr.write(`publish: ${isQuireError(err) ? `${err.code}: ${err.message}` : err?.stack ?? err}\n`)
  process.exit(1)
}
