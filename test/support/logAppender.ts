// A log writer in its own process, for tests that kill -9 or SIGSTOP it: takes the log, then
// appends records `<tag>.<n>` forever with up to `inFlight` appends outstanding, and prints each
// acknowledged one as `ack <position> <payload>` (in order), then `fenced` and exit 3 when
// a newer writer fences it. Writes to a pipe are synchronous on Linux: a printed ack is one the
// writer had when it was killed.
// Usage: node --import tsx test/support/logAppender.ts <natsUrl> <log> <tag> <inFlight>

import { connect, formatPosition } from '../../client/index.ts'
import { isQuireError } from '../../machines/errors.ts'
import './exitWithParent.ts'

const [url, name, tag, inFlightArg] = process.argv.slice(2)
const inFlight = Number(inFlightArg ?? 8)
const client = await connect({ servers: url!, addTimeoutMs: 5000 })
const w = await (await client.logs.openLog(name!)).writer()
process.stdout.write(`writer ${w.epoch}\n`)
let n = 0
let chain: Promise<void> = Promise.resolve()
const one = async (): Promise<void> => {
  for (;;) {
    const payload = `${tag}.${n++}`
    const appended = w.append(payload)
    // Printed in append order: each waits for the one before.
    const before = chain
    chain = (async () => {
      const p = await appended.catch((err: unknown) => {
        if (isQuireError(err, 'FENCED')) {
          process.stdout.write('fenced\n')
          process.exit(3)
        }
        throw err
      })
      await before
      process.stdout.write(`ack ${formatPosition(p)} ${payload}\n`)
    })()
    await appended.catch(() => {})
  }
}
await Promise.all(Array.from({ length: inFlight }, one))
