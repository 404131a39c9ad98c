// A bookie's response codes, defined once (the wire, the bookie's machines, the client and the
// roles all use these), and the three classes of PROTOCOL.md "Response classes":
// - ok;
// - explicit negative: the bookie says no, and says why (no such entry, no such ledger, fenced,
//   unauthorized, read-only; and a request it refuses as too large or malformed);
// - unknown: anything else (IN_LIMBO, CORRUPT, STOPPING, ERROR, a code this build does not know,
//   a timeout or a transport error).
// Only explicit negatives are evidence: recovery and reads never take an unknown as "absent".
// Also here: the digest types, one type from the client to the disk.

export const RC = {
  OK: 0,
  NO_SUCH_ENTRY: 1,
  NO_SUCH_LEDGER: 2,
  FENCED: 3,
  UNAUTHORIZED: 4,
  READ_ONLY: 5,
  CORRUPT: 6,
  TOO_LARGE: 7,
  STOPPING: 8,
  ERROR: 9,
  /** The frame failed its schema (transport/validate.ts); nothing of it was acted on. */
  BAD_REQUEST: 10,
  /**
   * Unknown, never absent: the bookie does not hold the entry (or knows nothing of the ledger) but
   * cannot vouch that it never had it, because it stopped uncleanly or came back on a wiped disk
   * and its integrity check has not cleared the ledger yet (actors/integrityCheck.ts). Per entry
   * for a ledger in limbo; as the whole reply instead of NO_SUCH_LEDGER while the bookie is
   * unchecked. Readers and recovery count it as unknown.
   */
  IN_LIMBO: 11,
} as const
export type ResponseCode = (typeof RC)[keyof typeof RC]

export const rcName = (rc: number): string =>
  (Object.keys(RC) as (keyof typeof RC)[]).find((k) => RC[k] === rc) ?? `RC_${rc}`

export type ResponseClass = 'ok' | 'negative' | 'unknown'

const NEGATIVE: ReadonlySet<number> = new Set([
  RC.NO_SUCH_ENTRY, RC.NO_SUCH_LEDGER, RC.FENCED, RC.UNAUTHORIZED, RC.READ_ONLY, RC.TOO_LARGE, RC.BAD_REQUEST,
])

/** The class of a reply's code, or of one entry's code in a read reply. */
export function classify(rc: number): ResponseClass {
  if (rc === RC.OK) return 'ok'
  return NEGATIVE.has(rc) ? 'negative' : 'unknown'
}

export type EntryAnswer = 'ok' | 'absent' | 'corrupt' | 'unknown'

/**
 * What a read reply says of one of its entries: `ok` (its bytes are there, still to be checked),
 * `absent` (explicit: the bookie has no such ledger, or no such entry), `corrupt` (it holds a copy
 * it cannot serve) or `unknown` (limbo, an error, a refusal that says nothing of the entry, or no
 * answer for it). `entry` is the entry's [code, bytes], undefined when the reply stopped short.
 */
export function entryAnswer(replyRc: number, entry: readonly [number, unknown] | undefined): EntryAnswer {
  if (replyRc === RC.NO_SUCH_LEDGER) return 'absent'
  if (replyRc !== RC.OK || entry === undefined) return 'unknown'
  const [rc, data] = entry
  if (rc === RC.OK) return data ? 'ok' : 'unknown'
  if (rc === RC.NO_SUCH_ENTRY || rc === RC.NO_SUCH_LEDGER) return 'absent'
  return rc === RC.CORRUPT ? 'corrupt' : 'unknown'
}

export type DigestType = 'crc32c' | 'hmac-sha256' | 'none'
export const DIGEST_TYPES: readonly DigestType[] = ['crc32c', 'hmac-sha256', 'none']
