// Where a client's adds to each bookie stand, for client/bookieClient.ts: how many are in flight
// (coalescing holds new adds while there are), which add messages of each ledger are unanswered
// (a writer asks whether a stalled add was lost, see `addState`), and the last add message each
// bookie got (adds of several writers coalesce at a bookie that answered the last one already).
// Nothing here sends or times anything: the client tells it what it sent and what it heard.
// Invariants: a bookie answers adds in the order they were sent to it, so an answer up to an entry
// id answers every message of its ledger that carried no higher one; in-flight counts never go
// below zero (a forged or repeated ack only empties them early); an answer not heard of for
// IN_FLIGHT_STALE_MS counts as none, so a lost answer cannot hold later adds for good.

/**
 * A bookie whose adds in flight have had no answer for this long counts as having none: a lost
 * answer (a message dropped, a bookie restarted) must not hold its later adds for good.
 */
export const IN_FLIGHT_STALE_MS = 1000

export type AddState = 'lost' | 'behind' | 'silent'

/** Per bookie: entries sent and not yet answered, and when that last moved (sent from none, or answered). */
interface InFlight { entries: number; since: number }
/** Per bookie: when it last answered, and when the newest add message it has answered was sent. */
interface BookieAnswers { at: number; sentAt: number }

export class AddTracking {
  private readonly inFlight = new Map<string, InFlight>()
  /** Per ledger, per bookie: the add messages unanswered that carried it, oldest first (highest entry id, send time). */
  private readonly unanswered = new Map<number, Map<string, Array<{ last: number; at: number }>>>()
  private readonly answersOf = new Map<string, BookieAnswers>()
  /** Per bookie, the last add message sent to it: when, and its ledger (-1: several). */
  private readonly lastAdds = new Map<string, { at: number; ledgerId: number }>()

  /**
   * One message of `entries` adds went to `bookieId`, carrying per ledger of `lastOf` entries up to
   * its id there. Only ledgers `tracked` says have a writer are remembered for `addState`: adds that
   * go after the last writer left (held while it failed) must leave nothing behind.
   */
  sent(bookieId: string, entries: number, lastOf: ReadonlyMap<number, number>, tracked: (ledgerId: number) => boolean): void {
    const now = performance.now()
    this.lastAdds.set(bookieId, { at: now, ledgerId: lastOf.size === 1 ? lastOf.keys().next().value! : -1 })
    const f = this.inFlight.get(bookieId)
    if (f) f.entries += entries
    else this.inFlight.set(bookieId, { entries, since: now })
    for (const [ledgerId, last] of lastOf) {
      if (!tracked(ledgerId)) continue
      let perBookie = this.unanswered.get(ledgerId)
      if (!perBookie) this.unanswered.set(ledgerId, (perBookie = new Map()))
      const sent = perBookie.get(bookieId)
      if (sent) sent.push({ last, at: now })
      else perBookie.set(bookieId, [{ last, at: now }])
    }
  }

  /**
   * `bookieId` answered adds of `ledgerId` up to the highest of `ids`: the messages that carried
   * it up to there were answered (a bookie answers in the order it was sent to), so the latest of
   * them says how recent an add the bookie has got to (see `addState`).
   */
  heard(bookieId: string, ledgerId: number, ids: readonly number[]): void {
    const now = performance.now()
    const known = this.answersOf.get(bookieId)
    if (known) known.at = now
    else this.answersOf.set(bookieId, { at: now, sentAt: -Infinity })
    const sent = this.unanswered.get(ledgerId)?.get(bookieId)
    if (!sent || ids.length === 0) return
    let high = ids[0]!
    for (const id of ids) if (id > high) high = id
    let answeredAt = -Infinity
    while (sent.length > 0 && sent[0]!.last <= high) answeredAt = sent.shift()!.at
    const a = this.answersOf.get(bookieId)!
    if (answeredAt > a.sentAt) a.sentAt = answeredAt
  }

  /** `bookieId` answered `entries` adds. */
  answered(bookieId: string, entries: number): void {
    const f = this.inFlight.get(bookieId)
    if (!f) return
    f.entries -= entries
    f.since = performance.now()
    if (f.entries <= 0) this.inFlight.delete(bookieId)
  }

  /** Whether `bookieId` has adds in flight (an answer not heard of for IN_FLIGHT_STALE_MS counts as none). */
  busy(bookieId: string, now: number): boolean {
    const f = this.inFlight.get(bookieId)
    if (!f) return false
    if (now - f.since < IN_FLIGHT_STALE_MS) return true
    this.inFlight.delete(bookieId)
    return false
  }

  /**
   * Whether `ledgers` hold another ledger than the last add message to `bookieId`, sent less than
   * `withinMs` ago: several writers share the bookie, and their adds should wait to go together
   * even though it answered the last one already (with bookies answering in a millisecond or two,
   * 1,000 ledgers written at 1,000 entries/s went nearly one message per entry). A single writer's
   * one add at a time is never held.
   */
  sharedRecently(bookieId: string, ledgers: Iterable<number>, now: number, withinMs: number): boolean {
    const last = this.lastAdds.get(bookieId)
    if (!last || now - last.at >= withinMs) return false
    for (const ledgerId of ledgers) if (ledgerId !== last.ledgerId) return true
    return false
  }

  /** See BookieTransport.addState. */
  addState(bookieId: string, ledgerId: number, entryId: number): AddState {
    const heard = this.answersOf.get(bookieId)
    const sent = this.unanswered.get(ledgerId)?.get(bookieId)?.find((m) => m.last >= entryId)
    // No message that carried it is unanswered: a later answer of the ledger passed it by.
    if (!sent) return 'lost'
    if (heard && heard.sentAt > sent.at) return 'lost'
    // Behind only while it keeps answering: answers that stopped may have stopped with our adds lost.
    return heard && heard.at > sent.at && performance.now() - heard.at < IN_FLIGHT_STALE_MS ? 'behind' : 'silent'
  }

  /** The ledger's last writer left: forget its messages. */
  forgetLedger(ledgerId: number): void {
    this.unanswered.delete(ledgerId)
  }

  /** The connection was lost: what was in flight on it may never be answered. */
  connectionLost(): void {
    this.inFlight.clear()
  }
}
