// The metadata store in a simulation: memoryKv's CAS semantics (storage/memoryKv.ts), with every
// call taking a random slice of virtual time, so metadata updates interleave with everything else
// the way JetStream KV round trips do. Processes share one bucket (`kv`), each through its own
// view: a view whose process died (`alive` false) gets no answer to a call made before or after
// its death (a dead process's write may still have landed, as a request on the wire does).

import { MemoryKv } from '../storage/memoryKv.ts'
import type { VersionedKv } from '../storage/types.ts'
import type { World } from './world.ts'

export class SimKv implements VersionedKv {
  readonly kv: MemoryKv

  constructor(private readonly world: World, kv?: MemoryKv, private readonly alive: () => boolean = () => true) {
    this.kv = kv ?? new MemoryKv({ now: () => world.now() })
  }

  /** The same bucket, seen by a process that lives while `alive()`. */
  view(alive: () => boolean): SimKv {
    return new SimKv(this.world, this.kv, alive)
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    await new Promise((r) => this.world.setTimeout(() => r(undefined), this.world.between(0.1, 1.5)))
    if (!this.alive()) return new Promise<T>(() => {})
    const result = await fn()
    if (!this.alive()) return new Promise<T>(() => {})
    return result
  }

  get(key: string) { return this.call(() => this.kv.get(key)) }
  create(key: string, value: Uint8Array) { return this.call(() => this.kv.create(key, value)) }
  update(key: string, value: Uint8Array, revision: number) { return this.call(() => this.kv.update(key, value, revision)) }
  put(key: string, value: Uint8Array) { return this.call(() => this.kv.put(key, value)) }
  delete(key: string) { return this.call(() => this.kv.delete(key)) }
  async *keys(prefix?: string): AsyncIterable<string> {
    const all = await this.call(async () => {
      const out: string[] = []
      for await (const k of this.kv.keys(prefix)) out.push(k)
      return out
    })
    yield* all
  }
}
