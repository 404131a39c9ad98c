// The inspection hook every actor is started with: it publishes each change of an actor's state
// value on `quire.inspect.<kind>.<id>` so that an inspector can follow the cluster live.
// It watches snapshots (actor.subscribe), not xstate's `inspect` stream: that stream builds an
// event for every microstep and action, which cost a writer ~20 µs per append; a snapshot
// observer costs one comparison per event and publishes only when the state value changes.
// Publishing is fire-and-forget and never blocks or fails the actor.

import type { AnyActorRef } from 'xstate'
import { inspectSubject } from '../transport/wire.ts'

export interface InspectSink {
  publish(subject: string, data: Uint8Array): void
}

export interface InspectMessage {
  kind: string
  id: string
  state: unknown
  status: string
  at: number
}

/** Start publishing `actor`'s state changes; returns a function that stops it. */
export function watchActor(actor: AnyActorRef, sink: InspectSink | null, kind: string, id: string): () => void {
  if (sink === null) return () => {}
  const subject = inspectSubject(kind, id)
  let lastValue: unknown = undefined
  let lastKey = ''
  const publish = (snap: { value?: unknown; status?: string }): void => {
    if (snap.value === lastValue) return
    lastValue = snap.value
    const key = JSON.stringify(snap.value ?? null) + (snap.status ?? '')
    if (key === lastKey) return
    lastKey = key
    const msg: InspectMessage = { kind, id, state: snap.value ?? null, status: snap.status ?? 'active', at: Date.now() }
    try {
      sink.publish(subject, Buffer.from(JSON.stringify(msg)))
    } catch {
      // A closed connection must not take the actor down with it.
    }
  }
  const sub = actor.subscribe({ next: publish, error: () => {}, complete: () => publish(actor.getSnapshot() as never) })
  publish(actor.getSnapshot() as never)
  return () => sub.unsubscribe()
}
