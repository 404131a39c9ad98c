// A key-value store whose every change is written ahead to a Quire ledger, so that it survives
// kill -9 of its own process: `set` and `delete` resolve only once the change is in the ledger
// (on Qa bookies' disks), and are applied to the in-memory map after that. On start the store
// finds its earlier ledgers, recovers them (which fences a writer that may still be alive, so
// nothing it appends later can be acknowledged) and replays them, then starts a new ledger.
//
// Where the store keeps the list of its ledgers: in each ledger's own custom metadata
// (`kv-wal.store` and `kv-wal.generation`), written in the same compare-and-swap that creates the
// ledger. So there is no window in which a ledger exists that the next start cannot find, and
// nothing is kept on the local disk.
//
// The new ledger's first entry is a snapshot of the whole map; once it is acknowledged the older
// ledgers are deleted. A crash between the two is harmless: the leftovers replay before the
// snapshot, which replaces the map.
//
// One process per store: two starting at the same moment would both write a new generation.

import { connect, isQuireError } from 'quire'

const STORE_KEY = 'kv-wal.store'
const GENERATION_KEY = 'kv-wal.generation'

class KvWal {
  #client
  #writer
  #map

  constructor(client, writer, map, recoveredFrom) {
    this.#client = client
    this.#writer = writer
    this.#map = map
    /** The ledgers the start replayed (and then deleted). */
    this.recoveredFrom = recoveredFrom
  }

  /** Recover store `name` from its ledgers and start writing to a new one. */
  static async open(client, name, password) {
    const previous = await ledgersOf(client, name)
    const map = new Map()
    for (const { ledgerId } of previous) {
      // Recovery fences the ledger's bookies (its writer, if alive, gets no more acks) and closes
      // it after the last entry it finds: every acknowledged change is at or below it. On a
      // ledger already closed it only reads the metadata.
      const reader = await client.openLedger(ledgerId, { password, recovery: true })
      for await (const entry of reader.entries({ from: 0 })) apply(map, JSON.parse(entry.payload.toString('utf8')))
    }
    const generation = (previous.at(-1)?.generation ?? 0) + 1
    const writer = await client.createLedger({ password, customMetadata: { [STORE_KEY]: name, [GENERATION_KEY]: String(generation) } })
    await writer.append(JSON.stringify({ op: 'snapshot', entries: [...map] }))
    for (const { ledgerId } of previous) await client.deleteLedger(ledgerId).catch(unlessDeleted)
    return new KvWal(client, writer, map, previous.map((l) => l.ledgerId))
  }

  get ledgerId() {
    return this.#writer.ledgerId
  }

  get(key) {
    return this.#map.get(key)
  }

  entries() {
    return this.#map.entries()
  }

  /** Resolves once the change is durable; appends resolve in order, so the map applies them in order. */
  async set(key, value) {
    await this.#writer.append(JSON.stringify({ op: 'set', key, value }))
    this.#map.set(key, value)
  }

  async delete(key) {
    await this.#writer.append(JSON.stringify({ op: 'delete', key }))
    this.#map.delete(key)
  }

  /** Closes the ledger (the next start then needs no recovery) and the client. */
  async close() {
    await this.#writer.close()
    await this.#client.close()
  }
}

function apply(map, change) {
  if (change.op === 'set') map.set(change.key, change.value)
  else if (change.op === 'delete') map.delete(change.key)
  else if (change.op === 'snapshot') {
    map.clear()
    for (const [key, value] of change.entries) map.set(key, value)
  } else throw new Error(`unknown change ${JSON.stringify(change)}`)
}

/** This store's ledgers, oldest generation first (a scan of every ledger's metadata). */
async function ledgersOf(client, name) {
  const found = []
  for await (const ledgerId of client.listLedgers()) {
    const md = await client.getLedgerMetadata(ledgerId).catch(unlessDeleted)
    if (md?.customMetadata[STORE_KEY] === name) found.push({ ledgerId, generation: Number(md.customMetadata[GENERATION_KEY]) })
  }
  return found.sort((a, b) => a.generation - b.generation || a.ledgerId - b.ledgerId)
}

/** A ledger deleted since it was listed (or by an earlier start) is no error here. */
function unlessDeleted(err) {
  if (isQuireError(err) && err.code === 'NO_SUCH_LEDGER') return null
  throw err
}

// ---- command line ----

const USAGE = `usage: node kv-wal.mjs [--store NAME] <command>
  fill <n> [start]     set key-<i> to value-<i> for i = start .. start+n-1 (start 0), deleting
                       key-<i-1> after every third set; prints "acked set <key> <value>" or
                       "acked delete <key>" as each change is acknowledged
  set <key> <value>    set one key
  delete <key>         delete one key
  get <key>            print one value
  dump                 print the whole map as one JSON object
NATS: $QUIRE_NATS (default nats://127.0.0.1:4222); password: $KV_WAL_PASSWORD`

async function main(argv) {
  let store = 'demo'
  if (argv[0] === '--store') {
    store = argv[1]
    argv = argv.slice(2)
  }
  const [command, ...args] = argv
  const arity = { fill: [1, 2], set: [2, 2], delete: [1, 1], get: [1, 1], dump: [0, 0] }[command]
  if (!store || !arity || args.length < arity[0] || args.length > arity[1]) {
    process.stderr.write(`${USAGE}\n`)
    return 2
  }
  const client = await connect({ servers: process.env.QUIRE_NATS ?? 'nats://127.0.0.1:4222', name: 'kv-wal' })
  let kv
  try {
    kv = await KvWal.open(client, store, process.env.KV_WAL_PASSWORD ?? 'kv-wal-example')
  } catch (err) {
    await client.close()
    throw err
  }
  process.stderr.write(`store ${store}: recovered ${[...kv.entries()].length} keys from ledgers [${kv.recoveredFrom}], writing to ledger ${kv.ledgerId}\n`)
  if (command === 'fill') {
    const [n, start = 0] = args.map(Number)
    for (let i = start; i < start + n; i++) {
      await kv.set(`key-${i}`, `value-${i}`)
      process.stdout.write(`acked set key-${i} value-${i}\n`)
      if (i % 3 === 2) {
        await kv.delete(`key-${i - 1}`)
        process.stdout.write(`acked delete key-${i - 1}\n`)
      }
    }
  } else if (command === 'set') await kv.set(args[0], args[1])
  else if (command === 'delete') await kv.delete(args[0])
  else if (command === 'get') {
    const value = kv.get(args[0])
    if (value === undefined) {
      process.stderr.write(`no key ${args[0]}\n`)
      await kv.close()
      return 1
    }
    process.stdout.write(`${value}\n`)
  } else process.stdout.write(`${JSON.stringify(Object.fromEntries(kv.entries()))}\n`)
  await kv.close()
  return 0
}

try {
  process.exitCode = await main(process.argv.slice(2))
} catch (err) {
  // FENCED here means another process opened this store and recovered its ledger.
  process.stderr.write(`kv-wal: ${isQuireError(err) ? `${err.code}: ${err.message}` : err?.stack ?? err}\n`)
  process.exit(1) // without waiting for a writer or connection that may be stuck
}
