// Messages that span socket reads, gathered into one buffer of their exact size. nats.js's
// protocol parser (nats-core's Parser) takes a message that arrives whole in one socket read as a
// view of that read, but gathers one that spans reads in a DenoBuffer that doubles as it fills: a
// 256 KiB add arriving in 64 KiB reads allocated 64 + 192 + 448 KiB, copied its bytes about twice,
// and the message then kept the 448 KiB buffer alive as long as its payload was kept (a bookie
// keeps an add's bytes in its write cache). On a bookie taking 256 KiB adds that garbage, all of it
// external memory, set the pace of V8's full collections.
// Here the parser, once it has started gathering such a message, gets a buffer of exactly the
// message's size holding what it gathered so far; later reads are copied into it without growing.
// Invariants: the parser's behaviour is otherwise unchanged (every message it dispatches has the
// same bytes; test/natsParser.test.ts checks that against the unpatched parser over random socket
// reads); installing twice is installing once.

import { DenoBuffer, Parser, State } from '@nats-io/nats-core/internal'

/** The parser's state that the patch reads and replaces (fields of nats-core's Parser). */
interface ParserGathering {
  state: State
  msgBuf?: DenoBuffer
  ma: { size: number }
}

const originalParse = Parser.prototype.parse
let installed = false

/** Patches nats-core's Parser for every connection of this process (the client's and the roles'). */
export function installExactMessageBuffers(): void {
  if (installed) return
  installed = true
  Parser.prototype.parse = function parse(this: Parser, buf: Uint8Array): void {
    originalParse.call(this, buf)
    exactMessageBuffer(this as unknown as ParserGathering)
  }
}

/** After a parse: a message being gathered in a buffer smaller than the message moves to one of its size. */
function exactMessageBuffer(p: ParserGathering): void {
  const gathered = p.msgBuf
  if (p.state !== State.MSG_PAYLOAD || gathered === undefined || gathered.capacity >= p.ma.size) return
  const exact = new DenoBuffer(new ArrayBuffer(p.ma.size))
  exact.reset()
  exact.write(gathered.bytes({ copy: false }))
  p.msgBuf = exact
}

/** The parser as nats-core ships it, for the test that compares the two. */
export const unpatchedParse = originalParse
