// The simulator's disk and network (storage/memoryDisk.ts, sim/network.ts): what a process was
// handed stops working when it dies (its calls never settle, nothing of it lands on the disk),
// unsynced journal records die with it, a power cut takes the store's unflushed writes and can tear
// the journal's last record, a wipe leaves nothing; NATS subject matching; a killed endpoint and
// process clock do nothing more.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemoryDisk } from '../../storage/memoryDisk.ts'
import type { ReplayEnding } from '../../storage/journal.ts'
import { ProcessClock, SimNetwork, subjectMatches } from '../../sim/network.ts'
import { World, settle } from '../../sim/world.ts'

const entry = (ledgerId: number, entryId: number) => ({ ledgerId, entryId, data: Buffer.from(`e${entryId}`) })

async function records(disk: ReturnType<MemoryDisk['open']>, ending?: ReplayEnding): Promise<string[]> {
  const out: string[] = []
  for await (const r of disk.replayJournal(null, ending)) out.push(r.record.toString())
  return out
}

test('a synced record survives a crash, an unsynced one does not, and the dead process is ignored', async () => {
  const world = new World(1)
  const disk = new MemoryDisk({ clock: world, syncDelayMs: () => 1 })
  const p1 = disk.open('b1')
  const store = await p1.openStore({ readOnly: false })
  const journal = await p1.openJournal({})
  let synced = false
  void journal.append(Buffer.from('one')).then(() => { synced = true })
  await world.run(2)
  assert.ok(synced, 'synced after the disk delay')
  let settledLate = false
  void journal.append(Buffer.from('two')).then(() => { settledLate = true }, () => { settledLate = true })
  disk.crash()
  await world.run(10)
  assert.not.ok(settledLate, 'the dead process hears nothing back, not even a failure')
  // A call the dead process makes after its death lands nowhere.
  let stored = false
  void store.putEntries([entry(1, 0)]).then(() => { stored = true })
  await settle()
  assert.not.ok(stored)
  assert.not.ok(disk.store.holds(1, 0), 'nothing of a dead process reaches the disk')
  const p2 = disk.open('b1')
  assert.equal(await records(p2), ['one'])
  assert.not.ok(await p2.hasCleanStopMarker(), 'a crash leaves no clean-stop marker')
})

test('a power cut loses the unflushed store writes and may tear the last record; a wipe leaves nothing', async () => {
  const world = new World(2)
  const disk = new MemoryDisk({ clock: world, syncDelayMs: () => 1 })
  const p1 = disk.open('b1')
  const store = await p1.openStore({ readOnly: false })
  await store.putEntries([entry(1, 0)])
  await store.flush()
  await store.putEntries([entry(1, 1)])
  const journal = await p1.openJournal({})
  void journal.append(Buffer.from('a'))
  void journal.append(Buffer.from('b'))
  await world.run(2)
  disk.powerCut(true)
  assert.ok(disk.store.holds(1, 0))
  assert.not.ok(disk.store.holds(1, 1), 'written after the last flush')
  const ending: ReplayEnding = { damaged: null }
  assert.equal(await records(disk.open('b1'), ending), ['a'], 'the torn tail ends the replay')
  assert.ok(ending.damaged !== null, 'and is told, so the start is unclean')
  const p3 = disk.open('b1')
  await p3.writeCleanStopMarker()
  disk.wipe()
  const p4 = disk.open('b1')
  assert.equal(await records(p4), [])
  assert.not.ok(await p4.hasCleanStopMarker())
  assert.not.ok(disk.store.holds(1, 0))
})

test('subjects match as in NATS; a killed endpoint and process clock do nothing more', async () => {
  assert.ok(subjectMatches('quire.ws.*.b2.>'.split('.'), 'quire.ws.b1.b2.add'.split('.')))
  assert.not.ok(subjectMatches('quire.ws.*.b2.>'.split('.'), 'quire.ws.b1.b2'.split('.')), '> needs a token')
  assert.not.ok(subjectMatches('quire.bookie.b1'.split('.'), 'quire.bookie.b12'.split('.')))
  const world = new World(3)
  world.faults = { ...world.faults, minDelayMs: 1, maxDelayMs: 1 }
  const net = new SimNetwork(world)
  const a = net.endpoint('a')
  const b = net.endpoint('b')
  const got: string[] = []
  b.subscribe('x.>', (data, replyTo) => got.push(`${Buffer.from(data).toString()}:${replyTo}`))
  a.request('x.y', Buffer.from('1'), '_INBOX.a')
  a.publish('z', Buffer.from('2'))
  await world.run(5)
  assert.equal(got, ['1:_INBOX.a'])
  a.publish('x.y', Buffer.from('3'))
  b.kill()
  await world.run(10)
  assert.equal(got, ['1:_INBOX.a'], 'a message in flight to a killed endpoint is not delivered')
  const clock = new ProcessClock(world)
  let fired = 0
  clock.setTimeout(() => fired++, 5)
  clock.skewMs = 1000
  assert.is(clock.now(), world.now() + 1000, 'skew shifts what now() reads')
  clock.kill()
  clock.setTimeout(() => fired++, 1)
  await world.run(world.now() + 20)
  assert.is(fired, 0)
})

test.run()
