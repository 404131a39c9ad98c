// transport/natsParser.ts: the patched nats-core parser dispatches the same messages as the one
// nats-core ships, whatever the socket reads look like, and gathers a message that spans reads in
// one buffer of its exact size.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import fc from 'fast-check'
import { Kind, Parser, type ParserEvent } from '@nats-io/nats-core/internal'
import { exactMessageBuffersFor, patchParser, unpatchedParse } from '../../transport/natsParser.ts'

interface Frame {
  headers: boolean
  reply: boolean
  sid: number
  payload: Uint8Array
}

/** The protocol bytes a nats-server sends for `frames` (MSG or HMSG, a PING between some). */
function wire(frames: readonly Frame[]): Buffer {
  const parts: Buffer[] = []
  for (const [i, f] of frames.entries()) {
    const reply = f.reply ? ' _INBOX.r' : ''
    if (f.headers) {
      const hdr = Buffer.from('NATS/1.0\r\nk: v\r\n\r\n')
      parts.push(Buffer.from(`HMSG subject.${i} ${f.sid}${reply} ${hdr.length} ${hdr.length + f.payload.length}\r\n`), hdr)
    } else {
      parts.push(Buffer.from(`MSG subject.${i} ${f.sid}${reply} ${f.payload.length}\r\n`))
    }
    parts.push(Buffer.from(f.payload), Buffer.from('\r\n'))
    if (i % 3 === 2) parts.push(Buffer.from('PING\r\n'))
  }
  return Buffer.concat(parts)
}

interface Seen {
  kind: number
  subject: string
  sid: number
  reply: string
  data: Buffer
  /** Bytes of the buffer the message's data is a view of. */
  backing: number
}

/** What a parser dispatches for `bytes` read in pieces of the given sizes (cycled). */
function parse(bytes: Buffer, reads: readonly number[], patched: boolean): Seen[] {
  const seen: Seen[] = []
  const text = (b: Uint8Array | undefined): string => (b === undefined ? '' : Buffer.from(b).toString('latin1'))
  const parser = new Parser({
    push(e: ParserEvent) {
      const msg = e.msg
      seen.push({
        kind: e.kind,
        subject: text(msg?.subject),
        sid: msg?.sid ?? -1,
        reply: text(msg?.reply),
        data: Buffer.from(e.data ?? new Uint8Array(0)),
        backing: e.data?.buffer.byteLength ?? 0,
      })
    },
  } as unknown as ConstructorParameters<typeof Parser>[0])
  if (patched) patchParser(parser)
  let at = 0
  for (let i = 0; at < bytes.length; i++) {
    // Each read its own buffer, as a socket hands them over.
    const n = reads[i % reads.length]!
    const chunk = Buffer.from(bytes.subarray(at, at + n))
    if (patched) parser.parse(chunk)
    else unpatchedParse.call(parser, chunk)
    at += n
  }
  return seen
}

const frame = fc.record({
  headers: fc.boolean(),
  reply: fc.boolean(),
  sid: fc.integer({ min: 1, max: 1000 }),
  payload: fc.oneof(
    fc.uint8Array({ maxLength: 200 }),
    fc.integer({ min: 1, max: 300 * 1024 }).map((n) => Buffer.alloc(n, n % 251)),
  ),
})

test('the patched parser dispatches what the shipped one does, over any socket reads', () => {
  fc.assert(
    fc.property(fc.array(frame, { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 5 }), (frames, reads) => {
      const bytes = wire(frames)
      const patched = parse(bytes, reads, true)
      const shipped = parse(bytes, reads, false)
      assert.equal(patched.map(({ backing: _, ...m }) => m), shipped.map(({ backing: _, ...m }) => m))
      assert.is(patched.filter((m) => m.kind === Kind.MSG).length, frames.length)
    }),
    { numRuns: 150 },
  )
})

test('a 256 KiB message in 64 KiB reads is gathered in one buffer of its size, not a doubling one', () => {
  const payload = Buffer.alloc(256 * 1024, 7)
  const bytes = wire([{ headers: false, reply: true, sid: 3, payload }])
  const [patched] = parse(bytes, [64 * 1024], true).filter((m) => m.kind === Kind.MSG)
  const [shipped] = parse(bytes, [64 * 1024], false).filter((m) => m.kind === Kind.MSG)
  assert.ok(patched!.data.equals(payload) && shipped!.data.equals(payload))
  assert.is(patched!.backing, payload.length)
  assert.ok(shipped!.backing > payload.length, `the shipped parser's buffer: ${shipped!.backing} bytes`)
})

test('a connection\'s parser is patched, and so is the new one each reconnect makes', () => {
  const dispatcher = { push() {} } as unknown as ConstructorParameters<typeof Parser>[0]
  const handler = {
    parser: new Parser(dispatcher),
    resetOutbound(this: { parser: Parser }) { this.parser = new Parser(dispatcher) },
  }
  exactMessageBuffersFor({ protocol: handler } as unknown as Parameters<typeof exactMessageBuffersFor>[0])
  assert.ok(Object.hasOwn(handler.parser, 'parse'))
  const first = handler.parser
  handler.resetOutbound()
  assert.is.not(handler.parser, first)
  assert.ok(Object.hasOwn(handler.parser, 'parse'), 'the reconnect\'s parser is patched too')
  // Patching the connection again wraps nothing twice.
  const reset = handler.resetOutbound
  exactMessageBuffersFor({ protocol: handler } as unknown as Parameters<typeof exactMessageBuffersFor>[0])
  assert.is(handler.resetOutbound, reset)
})

test.run()
