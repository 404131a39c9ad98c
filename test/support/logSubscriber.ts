// A log reader in its own process, for tests that kill -9 it: reads a log as subscriber <name>
// from that subscriber's cursor on, prints each record as `got <position> <payload>`, and after
// every <commitEvery> records commits the last one's position and prints `committed <position>`
// once the commit has resolved; prints `end` and exits 0 when the log is sealed. Writes to a pipe
// are synchronous on Linux: a printed line happened before any kill.
// Usage: node --import tsx test/support/logSubscriber.ts <natsUrl> <log> <subscriber> <commitEvery>

import { connect, formatPosition } from '../../client/index.ts'
import './exitWithParent.ts'

const [url, name, subscriber, commitEveryArg] = process.argv.slice(2)
const commitEvery = Number(commitEveryArg ?? 50)
const client = await connect({ servers: url!, readTimeoutMs: 3000 })
const reader = (await client.logs.openLog(name!)).reader({ subscriber: subscriber! })
let n = 0
for await (const r of reader.records()) {
  process.stdout.write(`got ${formatPosition(r.position)} ${Buffer.from(r.payload).toString()}\n`)
  if (++n % commitEvery === 0) {
    await reader.commit(r.position)
    process.stdout.write(`committed ${formatPosition(r.position)}\n`)
  }
}
process.stdout.write('end\n')
await client.close()
process.exit(0)
