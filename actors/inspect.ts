// The inspection hook every actor is started with: it publishes each change of an actor's state
// value on `quire.inspect.<kind>.<id>` so that an inspector can follow the cluster live. Only
// state changes are published (not every context update), so a busy writer costs nothing extra
// per entry; publishing is fire-and-forget and never blocks the actor.

import type { InspectionEvent } from 'xstate'
import { inspectSubject } from '../transport/wire.ts'

export interface InspectSink {
  publish(subject: string, data: Uint8Array): void
}

export interface InspectMessage {
  kind: string
  id: string
  state: unknown
  event: string
  at: number
}

export function inspector(sink: InspectSink | null, kind: string, id: string): (ev: InspectionEvent) => void {
  const subject = inspectSubject(kind, id)
  let last = ''
  return (ev) => {
    if (ev.type !== '@xstate.snapshot' || sink === null) return
    const snap = ev.snapshot as { value?: unknown }
    const state = JSON.stringify(snap.value ?? null)
    if (state === last) return
    last = state
    const msg: InspectMessage = { kind, id, state: snap.value ?? null, event: ev.event.type, at: Date.now() }
    try {
      sink.publish(subject, Buffer.from(JSON.stringify(msg)))
    } catch {
      // A closed connection must not take the actor down with it.
    }
  }
}
