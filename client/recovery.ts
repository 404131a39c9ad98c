// Open with recovery (PROTOCOL.md "Recovery"): CAS the metadata OPEN → IN_RECOVERY, then run
// machines/recovery.ts over the bookie transport (fencing LAC reads, fencing reads, recovery
// adds) and the metadata store (its close, IN_RECOVERY → CLOSED, is the machine's loop; each
// effect here answers with one event). Concurrent recoverers converge through that CAS: one that
// finds the ledger CLOSED at the same lastEntryId has succeeded too.
//
// A write-back that cannot reach Qa replaces the failed bookies through the writer's placement
// (pickBookies: live, writable, never a bookie the segment held); those ensemble changes ride on
// the closing CAS (segmentsAfterRecovery), the only metadata write valid for a recoverer while the
// ledger is IN_RECOVERY. The writer's own ensemble change stays refused in IN_RECOVERY (FENCED).

import { createActor, type AnyActorLogic } from 'xstate'
import { watchActor, type InspectSink } from '../transport/inspect.ts'
import { QuireError, asOperatingError, isQuireError, type ErrorCode } from '../machines/errors.ts'
import { recoveryMachine, type RecoveryChangeParams, type RecoveryEvent } from '../machines/recovery.ts'
import { pickBookies, type LedgerMetadata, type MetadataStore, type Versioned } from '../storage/metadataStore.ts'
import { KvConflict } from '../storage/types.ts'
import { decodeEntry } from '../transport/entry.ts'
import { RC, entryAnswer } from '../machines/responses.ts'
import type { BookieTransport } from './bookieClient.ts'
import type { Clock, Random } from '../transport/clock.ts'
import { ReadHandleImpl } from './readHandle.ts'
import type { SlowBookies } from './slowBookies.ts'
import type { ClientMetrics } from './telemetry.ts'

export interface RecoveryDeps {
  bookies: BookieTransport
  clock: Clock
  metadata: MetadataStore
  masterKey: Buffer
  readTimeoutMs: number
  addTimeoutMs: number
  /** Where the recovery publishes its inspection; null: nowhere. */
  inspect: InspectSink | null
  /** Placement's chance, when a write-back needs a replacement bookie. Default Math.random. */
  random?: Random
  /**
   * Reads that need one copy (the last entry, for the ledger's length) ask the next replica when
   * one has not answered within this many ms (0 or absent: only once it failed or timed out).
   * The client passes its `speculativeReadTimeoutMs`.
   */
  speculativeReadTimeoutMs?: number
  /** The client's bookie health: recovery's reads learn from it and teach it. */
  slowBookies?: SlowBookies
  /** Where reads count speculative reads and waits on a timeout. */
  metrics?: ClientMetrics
  /** Tests swap protocol rules here (machine.provide); the product never does. */
  logic?: (m: typeof recoveryMachine) => AnyActorLogic
}

const MAX_CAS_ATTEMPTS = 50

/** Recover ledger `ledgerId` (fence, find the last entry, write back, close); returns the closed metadata. */
export async function recoverLedger(deps: RecoveryDeps, ledgerId: number): Promise<LedgerMetadata> {
  const start = await markInRecovery(deps.metadata, ledgerId)
  if (start.value.state === 'CLOSED') return start.value
  const md = start.value
  const segment = md.segments[md.segments.length - 1]!
  const outcome = await new Promise<{ ok: true; closed: LedgerMetadata } | { ok: false; code: ErrorCode; message: string }>((resolve) => {
    let closed: LedgerMetadata | null = null
    /** The metadata the close last read, with its revision (what its write goes over). */
    let lastRead: Versioned<LedgerMetadata> | null = null
    const send = (e: RecoveryEvent): void => actor.send(e)
    const failed = (err: unknown, what: string): void => {
      const q = asOperatingError(err, 'METADATA_ERROR', what)
      send({ type: 'metadata.failed', code: q.code, message: q.message })
    }
    const logic = recoveryMachine.provide({
      actions: {
        fence: (_, p) => {
          for (const b of p.bookies) {
            deps.bookies.readLac(b, ledgerId, deps.readTimeoutMs, { masterKey: deps.masterKey }).then(
              (r) => send(r.rc === RC.OK
                ? { type: 'fence.ok', bookieId: b, lac: r.lac }
                : { type: 'fence.failed', bookieId: b, code: r.rc === RC.UNAUTHORIZED ? 'UNAUTHORIZED' : 'BOOKIE_UNAVAILABLE' }),
              (err) => send({ type: 'fence.failed', bookieId: b, code: isQuireError(err) ? err.code : 'BOOKIE_UNAVAILABLE' }),
            )
          }
        },
        readEntry: (_, p) => {
          for (const b of p.bookies) {
            // Recovery reads fence too, so a bookie that missed the fencing LAC read is fenced now.
            // Every replica of the write set at once: none is waited on while the others answer,
            // and each answer is evidence from its own bookie only (a timeout is unknown).
            deps.bookies.read(b, ledgerId, [p.entryId], 8 * 1024 * 1024, deps.readTimeoutMs, p.fence ? { masterKey: deps.masterKey } : undefined, deps.masterKey).then(
              (r) => {
                deps.slowBookies?.answered(b)
                send(classifyRead(md, deps.masterKey, ledgerId, p.entryId, b, r.rc, r.entries[0]))
              },
              () => {
                deps.slowBookies?.timedOut(b)
                send({ type: 'read.unknown', entryId: p.entryId, bookieId: b })
              },
            )
          }
        },
        writeBack: (_, p) => {
          const pending = new Set(p.bookies)
          let unregister: () => void = () => {}
          const timer = deps.clock.setTimeout(() => {
            unregister()
            for (const b of pending) send({ type: 'write.failed', entryId: p.entryId, bookieId: b })
          }, deps.addTimeoutMs)
          unregister = deps.bookies.registerWriter(ledgerId, (bookieId, rc, ids) => {
            if (!ids.includes(p.entryId) || !pending.delete(bookieId)) return
            send(rc === RC.OK
              ? { type: 'write.acked', entryId: p.entryId, bookieId }
              : { type: 'write.failed', entryId: p.entryId, bookieId })
            if (pending.size === 0) {
              deps.clock.clearTimeout(timer)
              unregister()
            }
          })
          for (const b of p.bookies) deps.bookies.queueAdd(b, ledgerId, deps.masterKey, md.digestType, true, p.data)
        },
        changeEnsemble: (_, p) => {
          replaceFailed(deps, p).then(
            (ensemble) => send({ type: 'ensemble.changed', ensemble }),
            (err) => {
              const q = asOperatingError(err, 'METADATA_ERROR', 'listing the bookies')
              send({ type: 'ensemble.failed', code: q.code, message: q.message })
            },
          )
        },
        readLength: (_, p) => {
          lengthFromEntry(deps, md, p.entryId).then(
            (ledgerLength) => send({ type: 'length.read', ledgerLength }),
            (err) => failed(err, `reading entry ${p.entryId} of ledger ${ledgerId} for its length`),
          )
        },
        readMetadata: () => {
          deps.metadata.readLedger(ledgerId).then(
            (cur) => {
              lastRead = cur
              send({ type: 'metadata.read', ledger: cur.value })
            },
            (err) => failed(err, `closing recovered ledger ${ledgerId}`),
          )
        },
        writeMetadata: (_, p) => {
          const cur = lastRead!
          deps.metadata.writeLedger({ ...cur.value, state: 'CLOSED', lastEntryId: p.lastEntryId, length: p.ledgerLength, segments: p.segments }, cur.revision).then(
            (written) => {
              closed = written.value
              send({ type: 'metadata.written' })
            },
            (err) => {
              if (err instanceof KvConflict) send({ type: 'metadata.conflict' })
              else failed(err, `closing recovered ledger ${ledgerId}`)
            },
          )
        },
        adoptRead: () => { closed = lastRead!.value },
      },
    })
    const actor = createActor(deps.logic ? deps.logic(logic) : logic, {
      input: { ledgerId, quorum: md, segment: { firstEntryId: segment.firstEntryId, ensemble: segment.ensemble } },
    })
    watchActor(actor, deps.inspect, 'recovery', String(ledgerId))
    actor.subscribe((snap) => {
      if (snap.status !== 'done') return
      const ctx = snap.context as { error: { code: ErrorCode; message: string } | null }
      resolve(snap.value === 'done' && closed ? { ok: true, closed } : { ok: false, code: ctx.error?.code ?? 'RECOVERY_INCOMPLETE', message: ctx.error?.message ?? 'recovery failed' })
    })
    actor.start()
  })
  if (!outcome.ok) throw new QuireError(outcome.code, outcome.message, { ledgerId })
  // What the closing CAS wrote (or the CLOSED metadata it found): a re-read could be served by a
  // replica that has not applied it yet.
  return outcome.closed
}

/** The write ensemble with `failed` replaced by live, writable bookies none of `exclude` (the writer's placement). */
async function replaceFailed(deps: RecoveryDeps, p: RecoveryChangeParams): Promise<string[]> {
  const picked = pickBookies(await deps.metadata.listBookies(), p.failed.length, deps.clock.now(), deps.random ?? Math.random, p.exclude)
  return p.ensemble.map((b) => (p.failed.includes(b) ? picked[p.failed.indexOf(b)]! : b))
}

function classifyRead(
  md: LedgerMetadata, masterKey: Buffer, ledgerId: number, entryId: number, bookieId: string,
  rc: number, answer: [number, Uint8Array | null] | undefined,
): RecoveryEvent {
  // Only explicit negatives are evidence of absence; IN_LIMBO (a bookie that may have lost what
  // it acknowledged, docs/protocol-notes.md), CORRUPT and errors are unknown.
  const a = entryAnswer(rc, answer)
  if (a === 'absent') return { type: 'read.missing', entryId, bookieId }
  if (a !== 'ok') return { type: 'read.unknown', entryId, bookieId }
  const data = answer![1]!
  try {
    const { header } = decodeEntry(md.digestType, masterKey, data, { ledgerId, entryId })
    return { type: 'read.found', entryId, bookieId, data, ledgerLength: header.ledgerLength }
  } catch {
    // A copy that fails its digest is not evidence either way.
    return { type: 'read.unknown', entryId, bookieId }
  }
}

/** Step 1: OPEN → IN_RECOVERY (or already IN_RECOVERY from another recoverer, or CLOSED: done). */
async function markInRecovery(metadata: MetadataStore, ledgerId: number): Promise<Versioned<LedgerMetadata>> {
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const cur = await metadata.readLedger(ledgerId)
    if (cur.value.state !== 'OPEN') return cur
    try {
      return await metadata.writeLedger({ ...cur.value, state: 'IN_RECOVERY' }, cur.revision)
    } catch (err) {
      if (!(err instanceof KvConflict)) throw err
    }
  }
  throw new QuireError('METADATA_CONFLICT', `could not mark ledger ${ledgerId} in recovery: too many concurrent updates`)
}

/**
 * The ledger length travels in every entry header: read the last entry to learn it. A speculative
 * read like any other (machines/speculativeRead.ts): a hung first replica costs the speculative
 * delay, not the read timeout.
 */
async function lengthFromEntry(deps: RecoveryDeps, md: LedgerMetadata, entryId: number): Promise<number> {
  const reader = new ReadHandleImpl({
    bookies: deps.bookies, masterKey: deps.masterKey, readTimeoutMs: deps.readTimeoutMs, clock: deps.clock,
    ...(deps.speculativeReadTimeoutMs !== undefined ? { speculativeReadTimeoutMs: deps.speculativeReadTimeoutMs } : {}),
    ...(deps.slowBookies ? { slowBookies: deps.slowBookies } : {}),
    ...(deps.metrics ? { metrics: deps.metrics } : {}),
  }, { ...md, state: 'CLOSED', lastEntryId: entryId })
  const [entry] = await reader.read(entryId, entryId)
  if (!entry) throw new QuireError('RECOVERY_INCOMPLETE', `could not read entry ${entryId} of ledger ${md.ledgerId} for its length`)
  return entry.ledgerLength
}

