// The client's public surface (client/index.ts, the package's `quire`) is a decision, pinned here:
// - the exact runtime names it exports, and the exact names (types included) its export lines
//   declare, so an accidental export fails this test;
// - the client and handle types an application compiles against carry no internals: the
//   `@ts-expect-error` lines below are compiled by the suite's `tsc --noEmit` and fail it the day
//   `nc`, `metadata` or a deps constructor becomes reachable through the public types;
// - client/internal.ts re-exports all of it, plus the classes behind the interfaces;
// - getLedgerMetadata on a real cluster (nats-server and bookie processes) for an open, a closed
//   and an unknown ledger.

import { readFile } from 'node:fs/promises'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import * as publicApi from '../../client/index.ts'
import * as internalApi from '../../client/internal.ts'
import { connect, isQuireError, type QuireClient, type ReadHandle, type WriteHandle } from '../../client/index.ts'
import { startCluster, type TestCluster } from '../support/cluster.ts'

const RUNTIME_EXPORTS = ['ERROR_CODES', 'MAX_ENTRY_BYTES_DEFAULT', 'QuireError', 'comparePositions', 'connect', 'formatPosition', 'isQuireError', 'parsePosition']

const TYPE_EXPORTS = [
  'Appended', 'AppendOptions', 'BookieRecord', 'ClientMetrics', 'ClientOptions', 'CreateLedgerOptions', 'CreateLogOptions', 'DigestType', 'ErrorCode',
  'LedgerEntry', 'LedgerMetadata', 'Log', 'LogMetadata', 'LogNamespace', 'LogOptions', 'LogPosition', 'LogReader', 'LogRecord', 'LogSegment',
  'LogWriter', 'LogWriterOptions', 'NatsAuth', 'NatsTls', 'OpenLedgerOptions', 'ProducerOptions', 'QuireClient', 'ReadHandle', 'ReaderOptions', 'Segment',
  'TailOptions', 'WriteHandle',
]

/**
 * Never called: compiled only. Each `@ts-expect-error` line must be an error in the public types;
 * were it not (an internal made reachable), tsc reports the unused directive.
 */
export function publicTypesHideInternals(client: QuireClient, r: ReadHandle, w: WriteHandle): unknown[] {
  return [
    // @ts-expect-error the NATS connection is internal (client/internal.ts)
    client.nc,
    // @ts-expect-error the raw metadata store (writeLedger, deleteLedger) is internal
    client.metadata,
    // @ts-expect-error the client's bookie transport is internal
    client.bookies,
    // @ts-expect-error a read handle's deps (bookie transport, master key) are internal
    r.deps,
    // @ts-expect-error a read handle's metadata is read through `metadata`, never written
    (r.metadata = r.metadata),
    // @ts-expect-error a writer's machine is internal
    w.actor,
    // @ts-expect-error a writer's deps (metadata store, clock) are internal
    w.w,
  ]
}

const t = suite<{ c: TestCluster; client: QuireClient }>('publicSurface')

t.before(async (ctx) => {
  ctx.c = await startCluster({ bookies: 3 })
  ctx.client = await connect({ servers: ctx.c.nats.url, addTimeoutMs: 5000, readTimeoutMs: 3000 })
})
t.after(async (ctx) => {
  await ctx.client?.close().catch(() => {})
  await ctx.c?.stop()
})

t('client/index.ts exports exactly the public runtime names', () => {
  assert.equal(Object.keys(publicApi).sort(), RUNTIME_EXPORTS)
})

t('client/index.ts declares exactly the public names, types included, and nothing else', async () => {
  const source = await readFile(new URL('../../client/index.ts', import.meta.url), 'utf8')
  const declared: string[] = []
  for (const raw of source.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('//')) continue
    if (/^import ['"][^'"]+['"];?$/.test(line)) continue // a side effect only (the Node.js version check)
    const m = /^export (type )?\{([^}]*)\} from ['"][^'"]+['"];?$/.exec(line)
    assert.ok(m, `client/index.ts: only "export { names } from" lines belong here, got: ${line}`)
    for (const name of m[2]!.split(',').map((s) => s.trim()).filter(Boolean)) {
      assert.not.match(name, / as /, `client/index.ts renames an export: ${name}`)
      declared.push(name.replace(/^type /, ''))
    }
  }
  assert.equal(declared.sort(), [...RUNTIME_EXPORTS, ...TYPE_EXPORTS].sort())
})

t('client/internal.ts re-exports the public surface and carries the classes behind it', () => {
  for (const name of RUNTIME_EXPORTS) assert.ok(name in internalApi, `internal.ts lacks ${name}`)
  for (const name of ['QuireClientImpl', 'ReadHandleImpl', 'WriteHandleImpl', 'connectClient', 'MetadataStore', 'MemoryKv', 'BookieClient']) {
    assert.ok(name in internalApi, `internal.ts lacks ${name}`)
    assert.not.ok(name in publicApi, `index.ts exports the internal ${name}`)
  }
})

t('getLedgerMetadata: an open ledger, then the same ledger closed', async ({ client }) => {
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2, customMetadata: { app: 'surface' } })
  const open = await client.getLedgerMetadata(w.ledgerId)
  assert.is(open.ledgerId, w.ledgerId)
  assert.is(open.state, 'OPEN')
  assert.is(open.lastEntryId, -1)
  assert.is(open.length, 0)
  assert.equal([open.ensembleSize, open.writeQuorum, open.ackQuorum], [3, 2, 2])
  assert.is(open.digestType, 'crc32c')
  assert.equal(open.customMetadata, { app: 'surface' })
  assert.is(open.segments.length, 1)
  assert.is(open.segments[0]!.firstEntryId, 0)
  const bookieIds = (await client.listBookies()).map((b) => b.bookieId)
  assert.is(open.segments[0]!.ensemble.length, 3)
  for (const b of open.segments[0]!.ensemble) assert.ok(bookieIds.includes(b), `ensemble member ${b} is a registered bookie`)

  for (let i = 0; i < 5; i++) await w.append(`entry-${i}`)
  await w.close()
  const closed = await client.getLedgerMetadata(w.ledgerId)
  assert.is(closed.state, 'CLOSED')
  assert.is(closed.lastEntryId, 4)
  assert.is(closed.length, 5 * 'entry-0'.length)
  assert.equal(closed.segments, open.segments)
  assert.equal(closed.customMetadata, { app: 'surface' })
})

t('getLedgerMetadata: an unknown id is NO_SUCH_LEDGER, a malformed one INVALID_CONFIG', async ({ client }) => {
  const w = await client.createLedger()
  await w.close()
  await client.deleteLedger(w.ledgerId)
  const unknown = await client.getLedgerMetadata(w.ledgerId).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(unknown, 'NO_SUCH_LEDGER'), `deleted ledger: ${String(unknown)}`)
  const never = await client.getLedgerMetadata(987_654_321).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(never, 'NO_SUCH_LEDGER'), `never created: ${String(never)}`)
  for (const bad of [-1, 1.5, Number.NaN]) {
    const err = await client.getLedgerMetadata(bad).then(() => null, (e: unknown) => e)
    assert.ok(isQuireError(err, 'INVALID_CONFIG'), `${bad}: ${String(err)}`)
  }
})

t('a ledger admin script needs only the public surface: list, metadata, delete', async ({ client }) => {
  const w = await client.createLedger()
  await w.append('x')
  await w.close()
  const listed: number[] = []
  for await (const id of client.listLedgers()) listed.push(id)
  assert.ok(listed.includes(w.ledgerId))
  assert.is((await client.getLedgerMetadata(w.ledgerId)).state, 'CLOSED')
  await client.deleteLedger(w.ledgerId)
  const after: number[] = []
  for await (const id of client.listLedgers()) after.push(id)
  assert.not.ok(after.includes(w.ledgerId))
  const reopened = await client.openLedger(w.ledgerId).then(() => null, (e: unknown) => e)
  assert.ok(isQuireError(reopened, 'NO_SUCH_LEDGER'), String(reopened))
})

t.run()
