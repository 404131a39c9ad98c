// Messages that span socket reads, gathered into one buffer of their exact size. nats.js's
// protocol parser (nats-core's Parser) takes a message that arrives whole in one socket read as a
// view of that read, but gathers one that spans reads in a DenoBuffer that doubles as it fills: a
// 256 KiB add arriving in 64 KiB reads allocated 64 + 192 + 448 KiB, copied its bytes about twice,
// and the message then kept the 448 KiB buffer alive as long as its payload was kept (a bookie
// keeps an add's bytes in its write cache). On a bookie taking 256 KiB adds that garbage, all of it
// external memory, set the pace of V8's full collections.
// Here the parser, once it has started gathering such a message, gets a buffer of exactly the
// message's size holding what it gathered so far; later reads are copied into it without growing.
// Only Quire's own connections are patched (connectNats): other NATS connections of the process
// (an application's own, a benchmark's peers) keep nats-core's parser. nats-core makes a new
// parser at each (re)connect, so the connection's resetOutbound is wrapped to patch each new one.
// Invariants: the parser's behaviour is otherwise unchanged (every message it dispatches has the
// same bytes; test/unit/natsParser.test.ts checks that against the unpatched parser over random socket
// reads); patching twice is patching once.

import type { NatsConnection } from '@nats-io/transport-node'
import { DenoBuffer, Parser, State } from '@nats-io/nats-core/internal'

/** The parser's state that the patch reads and replaces (fields of nats-core's Parser). */
interface ParserGathering {
  state: State
  msgBuf?: DenoBuffer
  ma: { size: number }
}

/** What the patch reads of a connection's nats-core ProtocolHandler. */
interface Handler {
  parser?: Parser
  resetOutbound?: () => void
}

const originalParse = Parser.prototype.parse
const PATCHED = Symbol('quire.exactMessageBuffers')

/** `parser` gathers a message that spans reads in a buffer of its exact size. */
export function patchParser(parser: Parser): void {
  const p = parser as Parser & { [PATCHED]?: true }
  if (p[PATCHED]) return
  p[PATCHED] = true
  p.parse = function parse(this: Parser, buf: Uint8Array): void {
    originalParse.call(this, buf)
    exactMessageBuffer(this as unknown as ParserGathering)
  }
}

/** Patches the parser of `nc` and of every reconnect of it; a connection without one is left as it is. */
export function exactMessageBuffersFor(nc: NatsConnection): void {
  const h = (nc as { protocol?: Handler & { [PATCHED]?: true } }).protocol
  if (!h || !(h.parser instanceof Parser) || typeof h.resetOutbound !== 'function' || h[PATCHED]) return
  h[PATCHED] = true
  patchParser(h.parser)
  const reset = h.resetOutbound
  h.resetOutbound = function resetOutbound(this: Handler): void {
    reset.call(this)
    if (this.parser instanceof Parser) patchParser(this.parser)
  }
}

/** After a parse: a message being gathered in a buffer smaller than the message moves to one of its size. */
function exactMessageBuffer(p: ParserGathering): void {
  const gathered = p.msgBuf
  if (p.state !== State.MSG_PAYLOAD || gathered === undefined || gathered.capacity >= p.ma.size) return
  // Not zero-filled: every byte is written from the socket before the message is dispatched.
  const exact = new DenoBuffer(Buffer.allocUnsafeSlow(p.ma.size).buffer)
  exact.reset()
  exact.write(gathered.bytes({ copy: false }))
  p.msgBuf = exact
}

/** The parser as nats-core ships it, for the test that compares the two. */
export const unpatchedParse = originalParse
