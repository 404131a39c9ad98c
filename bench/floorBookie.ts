// One bookie of the protocol floor (bench/floor.ts): the least a bookie must do for an add, with
// nothing else. Each message on its subject is copied into one 4 KiB block, written with one
// O_DSYNC (and, where the file system takes it, O_DIRECT) write into a preallocated file, as a
// Quire journal writes a lone group, and then answered with 16 bytes. No framing, checksum, state,
// batching or entry store: what is left is the NATS traffic and the synced write, which any bookie
// of this protocol pays per add. Run by bench/floor.ts as
//   node --import tsx bench/floorBookie.ts <nats url> <subject> <file>
// and says `ready` on its IPC channel once it is subscribed.
// Invariants: every write is one block at a block-aligned position inside the preallocated
// stretch (the file never grows, so no write syncs a size change); a message is answered only
// after its write returned.

import { constants, writeSync } from 'node:fs'
import { connect } from '@nats-io/transport-node'
import { alignedBuffer, BLOCK_BYTES, openDirect } from '../storage/directIo.ts'
import { writeZeros } from '../storage/fileWrites.ts'

/** Zero-filled before the first add and written round and round, like a journal's preallocated stretch. */
const FILE_BYTES = 16 * 1024 * 1024
const ANSWER = new Uint8Array(16)

const [url, subject, file] = process.argv.slice(2)
if (!url || !subject || !file) throw new Error('usage: floorBookie.ts <nats url> <subject> <file>')
const { fh } = await openDirect(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC)
await writeZeros(fh, 0, FILE_BYTES)
const block = alignedBuffer(BLOCK_BYTES)
let position = 0
const nc = await connect({ servers: url, name: `quire-bench-floor-${subject}` })
nc.subscribe(subject, {
  callback: (err, m) => {
    if (err) return
    block.set(m.data.subarray(0, BLOCK_BYTES))
    writeSync(fh.fd, block, 0, BLOCK_BYTES, position)
    position = (position + BLOCK_BYTES) % FILE_BYTES
    m.respond(ANSWER)
  },
})
await nc.flush()
process.send?.('ready')
// Ends when its parent kills it (bench/floor.ts) or when the parent's IPC channel closes.
process.on('disconnect', () => process.exit(0))
