// The metadata store in a simulation: memoryKv's CAS semantics (storage/memoryKv.ts), with every
// call taking a random slice of virtual time, so metadata updates interleave with everything else
// the way JetStream KV round trips do.

import { MemoryKv } from '../storage/memoryKv.ts'
import type { VersionedKv } from '../storage/types.ts'
import type { World } from './world.ts'

export class SimKv implements VersionedKv {
  private readonly kv: MemoryKv

  constructor(private readonly world: World) {
    this.kv = new MemoryKv({ now: () => world.now() })
  }

  private delay(): Promise<void> {
    return new Promise((r) => this.world.setTimeout(r, this.world.between(0.1, 1.5)))
  }

  async get(key: string) { await this.delay(); return this.kv.get(key) }
  async create(key: string, value: Uint8Array) { await this.delay(); return this.kv.create(key, value) }
  async update(key: string, value: Uint8Array, revision: number) { await this.delay(); return this.kv.update(key, value, revision) }
  async put(key: string, value: Uint8Array) { await this.delay(); return this.kv.put(key, value) }
  async delete(key: string) { await this.delay(); return this.kv.delete(key) }
  async *keys(prefix?: string): AsyncIterable<string> {
    await this.delay()
    const all: string[] = []
    for await (const k of this.kv.keys(prefix)) all.push(k)
    yield* all
  }
}
