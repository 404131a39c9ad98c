// Named logs' metadata over a VersionedKv (the quire_logs bucket in JetStream KV; memoryKv in unit
// tests). PROTOCOL.md "Logs on top of ledgers":
// - a log is one JSON record under `log.<name>`: its options, its writer epoch, whether it is
//   sealed, and its segments (each a ledger) in order; every change is a compare-and-swap on the
//   record's revision, so two writers, a writer and a truncation, never both win;
// - a subscriber's cursor is one record under `cursor.<name>.<subscriber>` (names hold no `.`),
//   also changed by compare-and-swap.
// Values are checked when read: a record that does not hold a log is METADATA_ERROR naming it.

import { QuireError } from '../machines/errors.ts'
import { checkLogName, checkPosition, checkSubscriber, type LogPosition } from '../machines/logPosition.ts'
import type { LogMetadata } from '../machines/logRules.ts'
import { KvConflict, type VersionedKv } from './types.ts'

export interface Versioned<T> { value: T; revision: number }

export interface CursorRecord {
  position: LogPosition
  updatedAt: number
}

const logKey = (name: string): string => `log.${name}`
const cursorPrefix = (name: string): string => `cursor.${name}.`

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v))

function decode<T>(bytes: Uint8Array, what: string, check: (v: unknown) => v is T): T {
  let v: unknown
  try {
    v = JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    throw new QuireError('METADATA_ERROR', `${what} is not JSON`, {})
  }
  if (!check(v)) throw new QuireError('METADATA_ERROR', `${what} does not hold what it should`, {})
  return v
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v)

function isSegment(s: unknown): s is LogMetadata['segments'][number] {
  const o = s as Record<string, unknown> | null
  return o !== null && typeof o === 'object' && ['open', 'closed', 'truncated'].includes(o['state'] as string) &&
    ['segmentSeq', 'ledgerId', 'epoch', 'firstTxId', 'lastTxId', 'lastEntryId', 'recordCount', 'bytes', 'createdAt', 'closedAt'].every((k) => isInt(o[k]))
}

function isLog(v: unknown): v is LogMetadata {
  const o = v as Record<string, unknown> | null
  return o !== null && typeof o === 'object' && typeof o['name'] === 'string' && typeof o['options'] === 'object' && o['options'] !== null &&
    isInt(o['createdAt']) && isInt(o['epoch']) && typeof o['sealed'] === 'boolean' && isInt(o['nextSegmentSeq']) && isInt(o['ledgersClosedThrough']) &&
    Array.isArray(o['segments']) && o['segments'].every(isSegment)
}

function isCursor(v: unknown): v is CursorRecord {
  const o = v as Record<string, unknown> | null
  if (o === null || typeof o !== 'object' || !isInt(o['updatedAt'])) return false
  try { checkPosition(o['position']); return true } catch { return false }
}

export class LogStore {
  constructor(private readonly kv: VersionedKv) {}

  /** LOG_EXISTS when a log of that name exists. */
  async create(md: LogMetadata): Promise<Versioned<LogMetadata>> {
    checkLogName(md.name)
    try {
      return { value: md, revision: await this.kv.create(logKey(md.name), enc(md)) }
    } catch (err) {
      if (err instanceof KvConflict) throw new QuireError('LOG_EXISTS', `log ${md.name} exists`, { log: md.name })
      throw err
    }
  }

  /** NO_SUCH_LOG when there is none. */
  async read(name: string): Promise<Versioned<LogMetadata>> {
    const got = await this.kv.get(logKey(checkLogName(name)))
    if (!got) throw new QuireError('NO_SUCH_LOG', `no log named ${name}`, { log: name })
    return { value: decode(got.value, `log ${name}'s metadata`, isLog), revision: got.revision }
  }

  async exists(name: string): Promise<boolean> {
    return (await this.kv.get(logKey(checkLogName(name)))) !== null
  }

  /** Compare-and-swap at `revision`; KvConflict when the record changed since. */
  async write(md: LogMetadata, revision: number): Promise<Versioned<LogMetadata>> {
    return { value: md, revision: await this.kv.update(logKey(md.name), enc(md), revision) }
  }

  async delete(name: string): Promise<void> {
    await this.kv.delete(logKey(checkLogName(name)))
  }

  /** Names of logs starting with `prefix`, ascending. */
  async *list(prefix = ''): AsyncIterable<string> {
    const names: string[] = []
    for await (const k of this.kv.keys(logKey(prefix))) names.push(k.slice('log.'.length))
    yield* names.sort()
  }

  async readCursor(name: string, subscriber: string): Promise<Versioned<CursorRecord> | null> {
    const got = await this.kv.get(`${cursorPrefix(checkLogName(name))}${checkSubscriber(subscriber)}`)
    return got ? { value: decode(got.value, `cursor ${subscriber} of log ${name}`, isCursor), revision: got.revision } : null
  }

  /** Create (revision null) or compare-and-swap a cursor; KvConflict when it changed since. */
  async writeCursor(name: string, subscriber: string, c: CursorRecord, revision: number | null): Promise<number> {
    const key = `${cursorPrefix(checkLogName(name))}${checkSubscriber(subscriber)}`
    return revision === null ? this.kv.create(key, enc(c)) : this.kv.update(key, enc(c), revision)
  }

  async deleteCursor(name: string, subscriber: string): Promise<void> {
    await this.kv.delete(`${cursorPrefix(checkLogName(name))}${checkSubscriber(subscriber)}`)
  }

  /** The log's metadata with its subscribers' cursors (for the CLI, the admin API and the inspector). */
  async describe(name: string): Promise<LogMetadata & { revision: number; subscribers: Array<{ subscriber: string } & CursorRecord> }> {
    const { value, revision } = await this.read(name)
    const subscribers: Array<{ subscriber: string } & CursorRecord> = []
    for (const s of await this.listSubscribers(name)) {
      const c = await this.readCursor(name, s)
      if (c) subscribers.push({ subscriber: s, ...c.value })
    }
    return { ...value, revision, subscribers }
  }

  /** Subscribers of the log, ascending (not those of logs whose names extend this one). */
  async listSubscribers(name: string): Promise<string[]> {
    const prefix = cursorPrefix(checkLogName(name))
    const out: string[] = []
    for await (const k of this.kv.keys(prefix)) {
      const sub = k.slice(prefix.length)
      if (!sub.includes('.')) out.push(sub)
    }
    return out.sort()
  }
}
