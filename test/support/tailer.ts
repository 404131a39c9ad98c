// A tailing reader in its own process, for tests: follows ledger <id> from 0 and prints
// `entry <id>` for each entry as it arrives, then `done <count> <sha256 of all payloads>` when
// the ledger is closed and fully read.
// Usage: node --import tsx test/support/tailer.ts <natsUrl> <ledgerId>

import './exitWithParent.ts'
import { createHash } from 'node:crypto'
import { connect } from '../../client/index.ts'

const [url, id] = process.argv.slice(2)
const client = await connect({ servers: url! })
const reader = await client.openLedger(Number(id))
const hash = createHash('sha256')
let count = 0
for await (const e of reader.entries({ from: 0, pollMs: 500 })) {
  if (e.entryId !== count) throw new Error(`expected entry ${count}, got ${e.entryId}`)
  hash.update(e.payload)
  count++
  process.stdout.write(`entry ${e.entryId}\n`)
}
process.stdout.write(`done ${count} ${hash.digest('hex')}\n`)
await client.close()
