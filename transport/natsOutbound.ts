// Outbound NATS bytes written without joining large payloads first. nats-core's ProtocolHandler
// queues each command and payload it is given in a DataBuffer and, when it flushes, joins them all
// into one new zero-filled Uint8Array (DataBuffer.pack) for one socket write: a writer's 256 KiB add
// group was zeroed and copied once more there (17 % of a writer's main thread at 256 KiB ×128 in a
// CPU profile, as much as encoding the entries; and as much external memory again for V8 to collect).
// Here a flush whose queue holds a part of GATHER_PART_BYTES_MIN or more gives the socket the large
// parts as they are and each run of small parts between them joined, inside cork()/uncork(), so
// Node writes them with one writev. Other flushes go the original way (one join, one write: for
// many small parts that is cheaper than a write request each).
// Only Quire's own connections are patched (connectNats): other NATS connections of the process
// (an application's own, a benchmark's peers) keep nats-core's flush.
// Invariants: the bytes on the wire and their order are what the original flush writes (the socket
// keeps the order of writes); the queue is empty afterwards, as after the original; a transport
// without a Node socket (another transport) keeps the original flush. test/integration/natsOutbound.test.ts
// compares the bytes written with the queue's, and checks a real server receives them whole.

import type { Socket } from 'node:net'
import type { NatsConnection } from '@nats-io/transport-node'
import { ProtocolHandler } from '@nats-io/nats-core/internal'

/** A queued part this large is written as it is rather than copied into a join. */
export const GATHER_PART_BYTES_MIN = 16 * 1024

/** What the patch reads of nats-core's ProtocolHandler (fields of the installed version). */
export interface OutboundHandler {
  connected: boolean
  infoReceived: boolean
  outbound: { buffers: Uint8Array[]; reset(): void }
  transport: { send(frame: Uint8Array): void; socket?: Socket }
}

const originalFlush = (ProtocolHandler.prototype as unknown as { flushPending(this: OutboundHandler): void }).flushPending

/** The patched flush, called on a connection's ProtocolHandler. */
export function gatheredFlush(this: OutboundHandler): void {
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

/** Patches the flush of `nc`'s protocol handler; a connection without one is left as it is. */
export function gatheredWritesFor(nc: NatsConnection): void {
  const h = (nc as { protocol?: unknown }).protocol
  if (h instanceof ProtocolHandler) (h as unknown as { flushPending: () => void }).flushPending = gatheredFlush
}

/** `parts` in order: the large ones as they are, each run of small ones joined, in one corked write. */
function writeGathered(transport: OutboundHandler['transport'], socket: Socket, parts: readonly Uint8Array[]): void {
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
