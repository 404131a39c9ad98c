// A bookie's add path (actors/bookieAdds.ts) around a real ledger machine (machines/bookieLedger.ts),
// with its storage counted (a unit test: the journal and the entry store are stand-ins that
// record what they get). What it pins per entry: the write cache and the entry store get the very
// entry object the add request was decoded into (no second object per entry), one journal record
// per batch, one `adds` and one `journal.synced` event per batch, and acks after the sync only.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createActor } from 'xstate'
import { AddAcks } from '../../actors/addAcks.ts'
import { BookieAdds, type LedgerActor } from '../../actors/bookieAdds.ts'
import type { BookieStorage } from '../../actors/bookieStorage.ts'
import type { JournalRecord } from '../../actors/journalRecords.ts'
import { bookieLedgerMachine, type BookieEntry } from '../../machines/bookieLedger.ts'
import type { StoredEntry } from '../../storage/types.ts'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'
import { RC, type AddRequest } from '../../transport/wire.ts'

const key = masterKeyOf('pw')
const LEDGER = 42

test('entries reach the entry store as the objects the machine decided on; one record and two events per batch', async () => {
  const records: JournalRecord[] = []
  const stored: StoredEntry[] = []
  const synced: Array<() => void> = []
  const storage = {
    append: (r: JournalRecord) => { records.push(r); return new Promise<void>((resolve) => synced.push(resolve)) },
    putEntries: (entries: readonly StoredEntry[]) => { stored.push(...entries) },
  } as unknown as BookieStorage
  const acked: Array<[string, number, number[]]> = []
  const acks = new AddAcks('b', () => {})
  const queue = acks.queue.bind(acks)
  acks.queue = (replyTo, ledgerId, rc, ids) => { acked.push([replyTo, rc, [...ids]]); queue(replyTo, ledgerId, rc, ids) }
  let actor: LedgerActor | null = null
  const adds = new BookieAdds({
    maxEntryBytes: 1 << 20, acks, stats: { adds: 0 }, writable: () => true,
    ledger: async () => actor, storage: () => storage, writeFailed: () => false,
  })
  const decided: BookieEntry[] = []
  const events: string[] = []
  actor = createActor(bookieLedgerMachine.provide({
    actions: {
      'journal.add': (_, p) => {
        for (const a of p.adds) decided.push(...a.entries)
        adds.journal(LEDGER, p.adds, actor!)
      },
      'journal.masterKey': () => {},
      'store.put': (_, p) => adds.put(p.entries),
      'reply.add': (_, p) => acks.queue(p.replyTo, LEDGER, p.rc, p.entryIds),
    },
  }), { input: { ledgerId: LEDGER, masterKey: null, digestType: null, fenced: false, lac: -1, lastEntryId: -1 } })
  actor.system.inspect((e) => { if (e.type === '@xstate.event' && e.actorRef === actor) events.push(e.event.type) })
  actor.start()

  const request = (ids: number[]): AddRequest => ({
    op: 'add',
    groups: [{ ledgerId: LEDGER, masterKey: key, digestType: 'crc32c', recovery: false, entries: ids.map((e) => encodeEntry('crc32c', key, LEDGER, e, e - 1, 0, Buffer.from(`e${e}`))) }],
  })
  // Two requests of one turn: one batch.
  adds.onAdd(request([0, 1]), 'client-a')
  adds.onAdd(request([2]), 'client-b')
  await new Promise((r) => setImmediate(r))
  assert.is(records.length, 1, 'one journal record for the batch')
  assert.equal(events.filter((t) => t !== 'xstate.init'), ['adds'])
  assert.is(acked.length, 0, 'nothing acknowledged before the sync')
  for (const s of synced) s()
  await new Promise((r) => setImmediate(r))
  assert.equal(events.filter((t) => t !== 'xstate.init'), ['adds', 'journal.synced'])
  assert.equal(acked, [['client-a', RC.OK, [0, 1]], ['client-b', RC.OK, [2]]])
  assert.is(stored.length, 3)
  stored.forEach((e, i) => {
    assert.ok((e as unknown) === decided[i], `entry ${i}: the store holds the object the machine decided on, no copy`)
    assert.equal([e.ledgerId, e.entryId], [LEDGER, i])
  })
  assert.is(adds.inflight, 0)
})

test.run()
