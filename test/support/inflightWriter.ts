// A writer in its own process that dies with an entry in flight, for tests that kill -9 it:
// creates a ledger (E=3 Qw=2 Qa=2, password 'pw'), appends `entries` entries (payloadFor(ledgerId *
// 1000 + k)) and waits for their acks, then sends the next entry to the first bookie of its write
// set only (as a writer killed between two sends would) and waits for that one ack. It prints
// `ledger <id> <ensemble,...>`, `acked <n>`, then `inflight <entryId> <bookie that has it> <bookie
// that does not>`, and runs until killed.
// Usage: node --import tsx test/support/inflightWriter.ts <natsUrl> <entries>

import { BookieClient } from '../../client/bookieClient.ts'
import { connect } from '../../client/index.ts'
import { writeSetIndices } from '../../machines/quorum.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { connectNats } from '../../transport/nats.ts'
import { RC } from '../../transport/wire.ts'
import { payloadFor } from './cluster.ts'

const [url, entriesArg] = process.argv.slice(2)
const entries = Number(entriesArg ?? 5)
const client = await connect({ servers: url!, addTimeoutMs: 5000 })
const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, password: 'pw' })
const ensemble = w.metadata.segments[0]!.ensemble
process.stdout.write(`ledger ${w.ledgerId} ${ensemble.join(',')}\n`)
let length = 0
for (let k = 0; k < entries; k++) {
  const payload = payloadFor(w.ledgerId * 1000 + k)
  await w.append(payload)
  length += payload.byteLength
}
process.stdout.write(`acked ${entries}\n`)

// The entry in flight: its LAC is the last acknowledged entry, as the writer would piggyback it.
const id = entries
const payload = payloadFor(w.ledgerId * 1000 + id)
const data = encodeEntry('crc32c', masterKeyOf('pw'), w.ledgerId, id, id - 1, length + payload.byteLength, payload)
const [has, lacks] = writeSetIndices(id, 3, 2).map((i) => ensemble[i]!)
const bookies = new BookieClient(await connectNats(url!))
await new Promise<void>((resolve, reject) => {
  const unregister = bookies.registerWriter(w.ledgerId, (bookieId, rc, ids) => {
    if (bookieId !== has || !ids.includes(id)) return
    unregister()
    if (rc === RC.OK) resolve()
    else reject(new Error(`bookie ${has} refused entry ${id}: rc ${rc}`))
  })
  bookies.queueAdd(has!, w.ledgerId, masterKeyOf('pw'), 'crc32c', false, data)
})
process.stdout.write(`inflight ${id} ${has} ${lacks}\n`)
setInterval(() => {}, 60_000)
