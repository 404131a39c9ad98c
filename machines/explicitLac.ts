// Whether a bookie takes one item of a writeLacs frame (transport/wire.ts): decided from its
// ledger's state, before the item goes to the ledger's machine (machines/bookieLedger.ts) as an
// `explicitLac` event, so that the frame's answer says per ledger what became of its LAC.
//
// Invariants: a sender without the ledger's master key learns nothing of the ledger's state (the
// key is checked first); a fenced ledger's writer is done, so its LAC is refused, not applied.

import { sameKey, type BookieLedgerContext } from './bookieLedger.ts'
import { RC } from './responses.ts'

/** The refusal (UNAUTHORIZED or FENCED) of an explicit LAC for this ledger state, or null to take it. */
export function explicitLacRefusal(ledger: Pick<BookieLedgerContext, 'masterKey' | 'fenced'>, masterKey: Uint8Array): number | null {
  // A ledger that never took an add has no key: nothing to check the sender against.
  if (ledger.masterKey === null || !sameKey(ledger.masterKey, masterKey)) return RC.UNAUTHORIZED
  if (ledger.fenced) return RC.FENCED
  return null
}
