// Outbound NATS bytes written without joining large payloads first. nats-core's ProtocolHandler
// queues each command and payload it is given in a DataBuffer and, when it flushes, joins them all
// into one new zero-filled Uint8Array (DataBuffer.pack) for one socket write: a writer's 256 KiB add
// group was zeroed and copied once more there (17 % of a writer's main thread at 256 KiB ×128 in a
// CPU profile, as much as encoding the entries; and as much external memory again for V8 to collect).
// Here a flush whose queue holds a part of GATHER_PART_BYTES_MIN or more gives the socket the large
// parts as they are and each run of small parts between them joined, inside cork()/uncork(), so
// Node writes them with one writev. Other flushes go the original way (one join, one write: for
// many small parts that is cheaper than a write request each).
// Invariants: the bytes on the wire and their order are what the original flush writes (the socket
// keeps the order of writes); the queue is empty afterwards, as after the original; a transport
// without a Node socket (another transport) keeps the original flush. test/natsOutbound.test.ts
// compares the bytes a server receives with the patch and without, and pins that the installed
// nats-core still has the fields this reads.

import type { Socket } from 'node:net'
import { ProtocolHandler } from '@nats-io/nats-core/internal'

/** A queued part this large is written as it is rather than copied into a join. */
export const GATHER_PART_BYTES_MIN = 16 * 1024

/** What the patch reads of nats-core's ProtocolHandler (fields of the installed version). */
interface Handler {
  connected: boolean
  infoReceived: boolean
  outbound: { buffers: Uint8Array[]; reset(): void }
  transport: { send(frame: Uint8Array): void; socket?: Socket }
}

const proto = ProtocolHandler.prototype as unknown as { flushPending(this: Handler): void }
const originalFlush = proto.flushPending
let installed = false

/** Patches nats-core's ProtocolHandler for every connection of this process. */
export function installGatheredWrites(): void {
  if (installed) return
  installed = true
  proto.flushPending = function flushPending(this: Handler): void {
    const socket = this.transport?.socket
    const parts = this.outbound?.buffers
    if (!this.infoReceived || !this.connected || !socket || typeof socket.cork !== 'function' || !Array.isArray(parts) ||
      !parts.some((p) => p.byteLength >= GATHER_PART_BYTES_MIN)) {
      originalFlush.call(this)
      return
    }
    const queued = parts.slice()
    this.outbound.reset()
    writeGathered(this.transport, socket, queued)
  }
}

/** `parts` in order: the large ones as they are, each run of small ones joined, in one corked write. */
function writeGathered(transport: Handler['transport'], socket: Socket, parts: readonly Uint8Array[]): void {
  let run: Uint8Array[] = []
  const sendRun = (): void => {
    if (run.length === 0) return
    transport.send(run.length === 1 ? run[0]! : Buffer.concat(run))
    run = []
  }
  socket.cork()
  try {
    for (const part of parts) {
      if (part.byteLength < GATHER_PART_BYTES_MIN) {
        run.push(part)
        continue
      }
      sendRun()
      transport.send(part)
    }
    sendRun()
  } finally {
    socket.uncork()
  }
}

/** The flush as nats-core ships it, for the test that compares the two. */
export const unpatchedFlush = originalFlush
