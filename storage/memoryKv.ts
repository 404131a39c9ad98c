// In-memory VersionedKv for unit tests and the deterministic simulator, with JetStream KV's
// semantics (storage/kv.ts is the real one; test/integration/kv.test.ts runs one contract against both):
// - revisions come from one bucket-wide sequence, like a stream sequence: every create, update,
//   put and delete takes the next number, and numbers are never reused (not even after a delete);
// - a delete writes a marker: `get` and `keys` hide the key, `create` works on it again, and the
//   marker keeps the key's revision, as the server's "last subject sequence" does;
// - `update` succeeds only when the key's last revision equals the one given, so a missing key
//   always conflicts;
// - with `ttlMs` (bucket-level TTL, the only kind NATS 2.9 has) a key whose last write is older
//   than the TTL is gone, as if never written; time comes from the injected `now`.
// Keys follow nats.js's rule (letters, digits, `-/_=.`, no empty dot-separated token); a bad
// key is a programmer error and fails an assertion here exactly as it would against NATS.
//
// Fault model: `failNext(n, when)` makes the next n calls (any method; `keys` counts when called)
// throw QuireError TIMEOUT. With when = 'before' (default) the call has no effect, like a request
// that never reached the server. With 'after' a write is applied first and then reported as a
// timeout, like a reply lost on the way back: the caller cannot tell the two apart, which is the
// ambiguity real callers must handle (a retried update then meets its own revision as a conflict).

import { QuireError, assert } from '../machines/errors.ts'
import { KvConflict, type VersionedKv } from './types.ts'

const VALID_KEY = /^[-/=.\w]+$/

/** The key rule of nats.js KV plus "no empty token", which the server would reject as a subject. */
export function isValidKey(key: string): boolean {
  return VALID_KEY.test(key) && !key.startsWith('.') && !key.endsWith('.') && !key.includes('..')
}

export function assertValidKey(key: string): void {
  assert(isValidKey(key), `invalid KV key ${JSON.stringify(key)}`)
}

export function assertValidRevision(revision: number): void {
  assert(Number.isSafeInteger(revision) && revision > 0, `KV revision must be a positive integer, got ${revision}`)
}

export interface MemoryKvOptions {
  /** Bucket-level TTL; 0 or absent for none. */
  ttlMs?: number
  /** Clock for the TTL; the simulator injects its own. */
  now?: () => number
}

export type FaultTiming = 'before' | 'after'

interface Slot {
  /** null: a delete marker. */
  value: Uint8Array | null
  revision: number
  writtenAtMs: number
}

export class MemoryKv implements VersionedKv {
  readonly #slots = new Map<string, Slot>()
  readonly #ttlMs: number
  readonly #now: () => number
  #sequence = 0
  #faults = 0
  #faultTiming: FaultTiming = 'before'

  constructor(opts: MemoryKvOptions = {}) {
    this.#ttlMs = opts.ttlMs ?? 0
    assert(Number.isFinite(this.#ttlMs) && this.#ttlMs >= 0, 'ttlMs must be >= 0')
    this.#now = opts.now ?? Date.now
  }

  /** The next `n` calls throw TIMEOUT; see the fault model in the header. */
  failNext(n: number, when: FaultTiming = 'before'): void {
    assert(Number.isSafeInteger(n) && n >= 0, `failNext needs a count >= 0, got ${n}`)
    this.#faults = n
    this.#faultTiming = when
  }

  /** The bucket's last sequence number (0 when nothing was ever written). */
  get lastRevision(): number {
    return this.#sequence
  }

  async get(key: string): Promise<{ value: Uint8Array; revision: number } | null> {
    assertValidKey(key)
    return this.#run('get', key, () => {
      const slot = this.#live(key)
      if (slot === undefined || slot.value === null) return null
      // A copy, as a fetch from the server would be: callers must not alias stored bytes.
      return { value: slot.value.slice(), revision: slot.revision }
    })
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    assertValidKey(key)
    return this.#run('create', key, () => {
      const slot = this.#live(key)
      if (slot !== undefined && slot.value !== null) throw new KvConflict(key)
      return this.#write(key, value)
    })
  }

  async update(key: string, value: Uint8Array, revision: number): Promise<number> {
    assertValidKey(key)
    assertValidRevision(revision)
    return this.#run('update', key, () => {
      if (this.#live(key)?.revision !== revision) throw new KvConflict(key)
      return this.#write(key, value)
    })
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    assertValidKey(key)
    return this.#run('put', key, () => this.#write(key, value))
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key)
    // Like JetStream, deleting a key that does not exist still writes a marker.
    this.#run('delete', key, () => this.#write(key, null))
  }

  keys(prefix = ''): AsyncIterable<string> {
    // The fault is decided at call time so that failNext counts calls, not iterations.
    const fault = this.#takeFault()
    const snapshot = fault ? [] : this.#liveKeys(prefix)
    const timeout = fault ? this.#timeout('keys', prefix) : null
    return (async function* () {
      if (timeout) throw timeout
      yield* snapshot
    })()
  }

  #run<T>(op: string, key: string, apply: () => T): T {
    if (!this.#takeFault()) return apply()
    if (this.#faultTiming === 'after') {
      try {
        apply()
      } catch (err) {
        // A conflict the caller never hears about: the reply was "lost" either way.
        if (!(err instanceof KvConflict)) throw err
      }
    }
    throw this.#timeout(op, key)
  }

  #takeFault(): boolean {
    if (this.#faults === 0) return false
    this.#faults--
    return true
  }

  #timeout(op: string, key: string): QuireError {
    return new QuireError('TIMEOUT', `metadata store did not answer ${op} ${key} in time (injected)`, {
      op,
      key,
      injected: true,
    })
  }

  #write(key: string, value: Uint8Array | null): number {
    this.#sequence++
    this.#slots.set(key, { value: value?.slice() ?? null, revision: this.#sequence, writtenAtMs: this.#now() })
    return this.#sequence
  }

  /** The key's last record, after applying the bucket TTL. */
  #live(key: string): Slot | undefined {
    const slot = this.#slots.get(key)
    if (slot !== undefined && this.#expired(slot)) {
      this.#slots.delete(key)
      return undefined
    }
    return slot
  }

  #liveKeys(prefix: string): string[] {
    const out: string[] = []
    for (const key of [...this.#slots.keys()]) {
      if (!key.startsWith(prefix)) continue
      const slot = this.#live(key)
      if (slot !== undefined && slot.value !== null) out.push(key)
    }
    return out
  }

  #expired(slot: Slot): boolean {
    return this.#ttlMs > 0 && this.#now() - slot.writtenAtMs >= this.#ttlMs
  }
}
