// What a bookie does with a frame that fails its schema (transport/validate.ts): nothing of it is
// acted on; it is answered BAD_REQUEST when it has a reply subject, counted in
// quire_bookie_bad_requests_total{op}, and logged at most once per interval, with the number of
// refusals left unlogged since the last line (anyone on the NATS can send them as fast as it likes,
// and the log must not become the denial of service). The bookie goes on serving.

import { badRequestReply, opLabel } from '../transport/validate.ts'
import type { WireMessage } from '../transport/wire.ts'
import { bookieMetrics } from './metrics.ts'

export const BAD_FRAME_LOG_INTERVAL_MS = 10_000

export class BadFrames {
  private lastLogAt = Number.NEGATIVE_INFINITY
  private unlogged = 0
  /** Frames refused since start. */
  total = 0

  constructor(
    private readonly bookieId: string,
    private readonly publish: (subject: string, msg: WireMessage) => void,
    private readonly log: (msg: string, fields?: Record<string, unknown>) => void,
    private readonly intervalMs = BAD_FRAME_LOG_INTERVAL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  refuse(frame: unknown, replyTo: string | null, reason: string): void {
    const op = opLabel(frame)
    this.total++
    bookieMetrics.badRequest(op)
    if (replyTo !== null) this.publish(replyTo, badRequestReply(frame, this.bookieId, reason))
    this.logLimited('bad request refused', { op, reason, replyTo: replyTo?.slice(0, 100) ?? null })
  }

  /** A valid frame whose handling threw (a bug): logged under the same limit, the bookie goes on. */
  failed(frame: unknown, err: unknown): void {
    this.logLimited('request handling failed', { op: opLabel(frame), error: err instanceof Error ? err.message : String(err) })
  }

  private logLimited(msg: string, fields: Record<string, unknown>): void {
    const now = this.now()
    if (now - this.lastLogAt < this.intervalMs) {
      this.unlogged++
      return
    }
    this.log(msg, { ...fields, unloggedSinceLast: this.unlogged })
    this.lastLogAt = now
    this.unlogged = 0
  }
}
