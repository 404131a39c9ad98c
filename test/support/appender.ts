// A writer in its own process, for tests that kill -9 the writer: creates a ledger (E/Qw/Qa, default
// 3/2/2, password 'pw'), appends `entry-<i>-` payloads with a few appends in flight, and prints
// `ledger <id>`, `ensemble <bookie,...>`, then `acked <entryId>` for every entry whose append
// resolved. It never closes the ledger; it runs until killed.
// Usage: node --import tsx test/support/appender.ts <natsUrl> [inFlight] [E/Qw/Qa]

import './exitWithParent.ts'
import { connect } from '../../client/index.ts'

const [url, inFlightArg, configArg] = process.argv.slice(2)
const [ensembleSize, writeQuorum, ackQuorum] = (configArg ?? '3/2/2').split('/').map(Number)
const client = await connect({ servers: url!, addTimeoutMs: 3000 })
const w = await client.createLedger({ ensembleSize, writeQuorum, ackQuorum, password: 'pw' })
process.stdout.write(`ledger ${w.ledgerId}\nensemble ${w.metadata.segments[0]!.ensemble.join(',')}\n`)
let n = 0
const payload = (i: number): Buffer => Buffer.from(`entry-${i}-`.padEnd(64, '#'))
async function worker(): Promise<void> {
  for (;;) {
    const i = n++
    const id = await w.append(payload(i))
    process.stdout.write(`acked ${id}\n`)
  }
}
await Promise.all(Array.from({ length: Number(inFlightArg ?? 8) }, worker)).catch((err) => {
  process.stdout.write(`error ${String(err)}\n`)
})
