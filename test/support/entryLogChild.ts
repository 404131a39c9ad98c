// A process that works on a bookie's storage until the test kills it with SIGKILL (or kills
// itself with SIGKILL at a chosen point): test/integration/entryLog.test.ts and test/integration/compaction.test.ts.
// argv[2] is a JSON command:
//   {mode: 'unsynced', dir, ledgerId, count}: opens a BookieStorage, journals and puts `count`
//     entries (no checkpoint after the replay's), prints "ready" once they are in the entry store;
//   {mode: 'migrate', dir, killAfterChunk}: opens the entry store (migrating it), SIGKILL after
//     the chunk whose running total reaches killAfterChunk entries;
//   {mode: 'compact', dir, threshold, step, nth}: compacts the entry logs, SIGKILL at the nth
//     time `step` is reached;
//   {mode: 'checkpoints', dir, ledgerId}: adds entries one batch after another while checkpoints
//     run back to back; prints each batch's last entry id once its journal record is synced.
import './exitWithParent.ts'
import path from 'node:path'
import { BookieStorage } from '../../actors/bookieStorage.ts'
import { openEntryStore } from '../../storage/entryStore.ts'
import { testEntry } from './entryLogData.ts'

const cmd = JSON.parse(process.argv[2]!) as { mode: string; dir: string; ledgerId?: number; count?: number; killAfterChunk?: number; threshold?: number; step?: string; nth?: number }
const die = (): never => {
  process.kill(process.pid, 'SIGKILL')
  throw new Error('unreachable')
}

if (cmd.mode === 'unsynced') {
  const s = await BookieStorage.open(cmd.dir)
  await s.replayAndOpen()
  const l = cmd.ledgerId!
  for (let e = 0; e < cmd.count!; e += 10) {
    const batch = Array.from({ length: 10 }, (_, i) => ({ ledgerId: l, entryId: e + i, data: testEntry(l, e + i) }))
    await s.append({ t: 'add', l, e: batch.map((b) => b.data) })
    s.putEntries(batch)
  }
  while ((await s.store.lastEntryId(l)) < cmd.count! - 1) await new Promise((r) => setTimeout(r, 10))
  console.log('ready')
  setInterval(() => {}, 1000)
} else if (cmd.mode === 'migrate') {
  await openEntryStore(path.join(cmd.dir, 'entries'), {
    onMigrateChunk: async (n) => { if (n >= cmd.killAfterChunk!) die() },
  })
  console.log('migrated')
  process.exit(0)
} else if (cmd.mode === 'compact') {
  const store = await openEntryStore(path.join(cmd.dir, 'entries'))
  let seen = 0
  await store.compactEntryLogs(cmd.threshold!, async (step) => {
    if (step === cmd.step && ++seen === cmd.nth) die()
  })
  console.log('compacted')
  process.exit(0)
} else if (cmd.mode === 'checkpoints') {
  const s = await BookieStorage.open(cmd.dir)
  await s.replayAndOpen()
  const l = cmd.ledgerId!
  const from = (await s.summary(l)).lastEntryId + 1
  void (async () => { for (;;) await s.checkpoint() })()
  for (let e = from; ; e += 20) {
    const batch = Array.from({ length: 20 }, (_, i) => ({ ledgerId: l, entryId: e + i, data: testEntry(l, e + i) }))
    await s.append({ t: 'add', l, e: batch.map((b) => b.data) })
    s.putEntries(batch)
    console.log(e + 19)
  }
}
