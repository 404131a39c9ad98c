// Publishing one NATS message made of several buffers without joining them first: a bookie's add
// message is the add groups of its write sets side by side (transport/addFrame.ts), and each group
// is shared with the other bookies of its write set. Joining them here would copy every entry once
// per bookie; nats.js already joins everything it has queued into one buffer before the socket
// write, so the parts go to its protocol handler as they are and that join is the only one.
//
// nats.js's public publish() takes one buffer; the parts go through its protocol handler's
// sendCommand (what publish() itself calls), with the same checks publish() makes (closed
// connection, max_payload). Where that handler is not there (another NATS client, a newer nats.js
// that moved it), the parts are joined and published the ordinary way: correct, one copy more.
// test/integration/addFrame.test.ts pins that the installed nats.js takes the gathered path.

import type { NatsConnection } from '@nats-io/transport-node'

interface ProtocolHandler {
  sendCommand(cmd: string | Uint8Array, ...payloads: Uint8Array[]): void
  info?: { max_payload: number }
  outBytes: number
  outMsgs: number
}

const CRLF = new Uint8Array([13, 10])

function protocolOf(nc: NatsConnection): ProtocolHandler | null {
  const p = (nc as { protocol?: Partial<ProtocolHandler> }).protocol
  return p && typeof p.sendCommand === 'function' && typeof p.outBytes === 'number' && typeof p.outMsgs === 'number'
    ? (p as ProtocolHandler) : null
}

/** Whether `nc` takes gathered messages without joining them (the installed nats.js does). */
export const publishesGathered = (nc: NatsConnection): boolean => protocolOf(nc) !== null

/**
 * Publish `parts` as one message on `subject`. Throws as publish() does: on a closed connection,
 * or when the message exceeds the server's max_payload.
 */
export function publishGathered(nc: NatsConnection, subject: string, parts: readonly Uint8Array[], reply: string): void {
  const p = protocolOf(nc)
  if (parts.length === 1 || p === null) {
    nc.publish(subject, parts.length === 1 ? parts[0]! : Buffer.concat(parts), { reply })
    return
  }
  if (nc.isClosed()) throw new Error('connection closed')
  let len = 0
  for (const part of parts) len += part.byteLength
  if (p.info && len > p.info.max_payload) throw new Error(`message of ${len} bytes exceeds max_payload ${p.info.max_payload}`)
  p.outBytes += len
  p.outMsgs++
  p.sendCommand(`PUB ${subject} ${reply} ${len}\r\n`, ...parts, CRLF)
}
