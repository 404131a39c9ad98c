// A bookie's place in a simulated cluster: the product's bookie (actors/bookie.ts) run as a process
// over a memory disk that outlives it (storage/memoryDisk.ts), the simulated network
// (sim/network.ts), its own view of the metadata store (sim/kv.ts) and its own process clock.
// Starting, stopping and killing the process is this file's; what the bookie does is the product's.
//
// Fault model (the disk's, storage/memoryDisk.ts, plus the process's):
// - stop(): a clean stop (the bookie drains, checkpoints and writes its clean-stop marker); a
//   restart asked meanwhile starts once the stop is done;
// - crash(): kill -9: the process ends at once (its timers, connection and pending calls with it),
//   the journal's unsynced records are lost (never acknowledged);
// - powerCut(tear): crash(), and the store loses its unflushed writes; with `tear` the journal's last
//   synced record is torn, so the entries it held (acknowledged!) are gone unless a checkpoint had
//   them in the store. The next start is unclean: limbo until the integrity check;
// - rot(): flips a byte of one stored copy (bit rot);
// - disk full: `disk.fill(u)` (storage/memoryDisk.ts): over the threshold the bookie turns
//   read-only at its next disk check; at 1 its writes fail with ENOSPC at once;
// - clock skew: `skewMs` shifts what the process's clock reads (from its next start);
// - hang / unhang, partitions: the world's (sim/world.ts), by the bookie's node name.
// Two known-broken variants (sim/variants.ts) change what the process is handed, never the bookie:
// `limbo: false`: it is told every stop was clean and no journal tail was torn, so it never goes
// into limbo and answers "no such entry"; `ackBeforeSync`: its journal's appends resolve at once,
// before the sync, so it acknowledges adds a crash can still take.

import { Bookie } from '../actors/bookie.ts'
import { decodeRecord } from '../actors/journalRecords.ts'
import { MetadataStore } from '../storage/metadataStore.ts'
import { MemoryDisk } from '../storage/memoryDisk.ts'
import { withAppend, type BookieDisk } from '../storage/bookieDisk.ts'
import { readEntryHeader } from '../transport/entry.ts'
import type { SimKv } from './kv.ts'
import { ProcessClock, type SimNetwork } from './network.ts'
import type { World } from './world.ts'

export interface SimBookieOptions {
  /** Limbo after an unclean stop (the product's rule); false only in the known-broken variant. */
  limbo: boolean
  heartbeatMs: number
  /** The known-broken variant whose bookie acknowledges before its journal sync. */
  ackBeforeSync?: boolean
  /** The metadata buckets (ledgers, bookies, cluster, logs), shared by every process. */
  buckets: readonly [SimKv, SimKv, SimKv, SimKv]
}

interface Process {
  readonly bookie: Bookie
  kill(): void
}

export class SimBookieNode {
  readonly disk: MemoryDisk
  /** Copies (`ledgerId:entryId`) an unclean stop destroyed, for the checkers: they had reached it. */
  readonly lost = new Set<string>()
  /** Lines the bookie logged (the last ones), for a failing seed's report. */
  readonly log: string[] = []
  private proc: Process | null = null
  /** This node's clock skew (ms), kept across restarts; set by the run. */
  skewMs = 0
  private stopping = false
  private restartAfterStop = false

  constructor(readonly id: string, private readonly world: World, private readonly net: SimNetwork, private readonly opts: SimBookieOptions) {
    this.disk = new MemoryDisk({ clock: world, syncDelayMs: () => world.between(0.05, 0.6) })
  }

  /** A process is running (starting, serving or stopping). */
  get alive(): boolean {
    return this.proc !== null && !this.stopping
  }

  get bookie(): Bookie | null {
    return this.proc?.bookie ?? null
  }

  /** Start a process (replay, limbo after an unclean stop, the integrity check, registration). */
  restart(): void {
    if (this.stopping) {
      this.restartAfterStop = true
      return
    }
    if (this.proc !== null) return
    let dead = false
    const clock = new ProcessClock(this.world)
    clock.skewMs = this.skewMs
    const endpoint = this.net.endpoint(this.id)
    const alive = (): boolean => !dead
    const [ledgers, bookies, cluster, logs] = this.opts.buckets
    const metadata = new MetadataStore(ledgers.view(alive), bookies.view(alive), cluster.view(alive), logs.view(alive))
    const bookie = new Bookie({
      bookieId: this.id, dataDir: `memory:${this.id}`, nats: [],
      heartbeatMs: this.opts.heartbeatMs,
      checkpointIntervalMs: this.world.between(40, 250),
      gcIntervalMs: 0,
      integrityRecheckMs: 50,
      integrityStartMs: 200,
      diskCheckIntervalMs: 50,
      log: (msg, fields) => this.remember(msg, fields),
      parts: { disk: this.diskFor(this.disk.open(this.id)), clock, connect: async () => ({ network: endpoint, metadata }) },
    })
    const proc: Process = {
      bookie,
      kill: () => {
        dead = true
        clock.kill()
        endpoint.kill()
      },
    }
    this.proc = proc
    bookie.start().catch((err: unknown) => {
      // A start that failed ends the process, as the node command exits.
      this.remember('start failed', { error: String(err) })
      if (this.proc === proc) this.endProcess()
    })
  }

  /** Clean stop: drain, checkpoint, clean-stop marker. */
  stop(): void {
    const proc = this.proc
    if (proc === null || this.stopping) return
    this.stopping = true
    void proc.bookie.stop().catch((err: unknown) => { this.remember('stop failed', { error: String(err) }) }).then(() => {
      if (this.proc === proc) this.endProcess()
      this.stopping = false
      if (this.restartAfterStop) {
        this.restartAfterStop = false
        this.restart()
      }
    })
  }

  /** kill -9: unsynced journal records are lost; no marker. */
  crash(): void {
    this.fault(() => this.disk.crash())
  }

  /** Power cut: crash(), the store back to its last flush, and with `tear` the last journal record torn. */
  powerCut(tear: boolean): void {
    this.fault(() => this.disk.powerCut(tear))
  }

  /** The entries of the last synced journal record, which a torn tail would take; null if it is no add. */
  tailEntries(): { ledgerId: number; entryIds: number[] } | null {
    const last = this.disk.journal.lastRecord
    if (last === null) return null
    const r = decodeRecord(last)
    return r.t === 'add' ? { ledgerId: r.l, entryIds: r.e.map((data) => readEntryHeader(data).entryId) } : null
  }

  /** Bit rot in one stored copy; false if the store holds none (a copy still only in the journal heals on replay). */
  rot(ledgerId: number, entryId: number): boolean {
    return this.disk.store.corrupt(ledgerId, entryId)
  }

  /** Every copy a start would find (`ledgerId:entryId`): the store's and the journal's synced adds. */
  copies(): Set<string> {
    const out = new Set<string>()
    for (const [l, e] of this.disk.store.storedEntries()) out.add(`${l}:${e}`)
    for (const raw of this.disk.journal.syncedRecords()) {
      const r = decodeRecord(raw)
      if (r.t === 'add') for (const data of r.e) out.add(`${r.l}:${readEntryHeader(data).entryId}`)
    }
    return out
  }

  /** A report line: what the disk holds of one entry and the ledger's stored state. */
  describe(ledgerId: number, entryId: number): string {
    const held = this.copies().has(`${ledgerId}:${entryId}`)
    const st = this.disk.store.stateOf(ledgerId)
    const limboRaw = this.disk.store.metaOf('limbo')
    const limbo = limboRaw ? JSON.parse(limboRaw.toString('utf8')) as { unchecked: boolean; ledgers: number[] } : null
    const inLimbo = limbo && (limbo.unchecked || limbo.ledgers.includes(ledgerId)) ? ',limbo' : ''
    const copy = held ? 'held' : this.lost.has(`${ledgerId}:${entryId}`) ? 'lost' : '-'
    return `${this.id}${this.alive ? '' : '(down)'}:${copy}${inLimbo}${st?.fenced ? ',fenced' : ''}${st?.digestType ? `,${st.digestType}` : ''}`
  }

  private fault(onDisk: () => void): void {
    if (this.proc === null) return
    const before = this.copies()
    this.endProcess()
    this.stopping = false
    this.restartAfterStop = false
    onDisk()
    const after = this.copies()
    for (const k of before) if (!after.has(k)) this.lost.add(k)
  }

  private endProcess(): void {
    this.proc?.kill()
    this.proc = null
  }

  /** The disk as the process sees it, changed only by the known-broken variants (see the header). */
  private diskFor(disk: BookieDisk): BookieDisk {
    let out = disk
    if (!this.opts.limbo) out = { ...out, hasCleanStopMarker: async () => true, replayJournal: (from) => disk.replayJournal(from) }
    if (this.opts.ackBeforeSync) {
      out = {
        ...out,
        openJournal: async (o) => {
          const j = await disk.openJournal(o)
          return withAppend(j, (record) => {
            j.append(record).catch(() => {})
            return Promise.resolve(j.syncedPosition)
          })
        },
      }
    }
    return out
  }

  private remember(msg: string, fields?: Record<string, unknown>): void {
    this.log.push(`${this.world.now().toFixed(2)} ${msg}${fields ? ` ${JSON.stringify(fields)}` : ''}`)
    if (this.log.length > 50) this.log.shift()
  }
}
