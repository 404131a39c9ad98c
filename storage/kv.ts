// VersionedKv over a JetStream KV bucket (file storage). A create on an existing key and an
// update at a stale revision both surface as KvConflict (JetStream API code 10071, "wrong last
// sequence"); every other failure propagates. Buckets are created by whoever comes first.

import type { NatsConnection } from '@nats-io/transport-node'
import { JetStreamApiError, StorageType } from '@nats-io/jetstream'
import { Kvm, type KV } from '@nats-io/kv'
import { QuireError } from '../machines/errors.ts'
import { KvConflict, type VersionedKv } from './types.ts'

const WRONG_LAST_SEQUENCE = 10071

function mapError(key: string, err: unknown): never {
  if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) throw new KvConflict(key)
  if (err instanceof Error && /timeout/i.test(err.message) && !(err instanceof QuireError)) {
    throw new QuireError('TIMEOUT', `metadata store did not answer for ${key}: ${err.message}`, { key })
  }
  throw err
}

export class JetStreamKv implements VersionedKv {
  constructor(private readonly kv: KV) {}

  async get(key: string): Promise<{ value: Uint8Array; revision: number } | null> {
    const e = await this.kv.get(key).catch((err) => mapError(key, err))
    if (!e || e.operation !== 'PUT') return null
    return { value: e.value, revision: e.revision }
  }

  create(key: string, value: Uint8Array): Promise<number> {
    return this.kv.create(key, value).catch((err) => mapError(key, err))
  }

  update(key: string, value: Uint8Array, revision: number): Promise<number> {
    return this.kv.update(key, value, revision).catch((err) => mapError(key, err))
  }

  put(key: string, value: Uint8Array): Promise<number> {
    return this.kv.put(key, value).catch((err) => mapError(key, err))
  }

  async delete(key: string): Promise<void> {
    await this.kv.delete(key).catch((err) => mapError(key, err))
  }

  async *keys(prefix?: string): AsyncIterable<string> {
    const it = await this.kv.keys().catch((err) => mapError(prefix ?? '>', err))
    for await (const k of it) if (prefix === undefined || k.startsWith(prefix)) yield k
  }
}

export async function openKv(nc: NatsConnection, bucket: string, opts: { history?: number; ttlMs?: number; replicas?: number } = {}): Promise<JetStreamKv> {
  const kvm = new Kvm(nc)
  const kv = await kvm.create(bucket, {
    history: opts.history ?? 1,
    replicas: opts.replicas ?? 1,
    ttl: opts.ttlMs ?? 0,
    storage: StorageType.File,
  }).catch(async (err) => {
    // Another process created it with other options first: open what is there.
    try {
      return await kvm.open(bucket)
    } catch {
      throw err
    }
  })
  return new JetStreamKv(kv)
}
