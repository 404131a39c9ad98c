// A bookie's identity: its cookie {instanceId, bookieId, dataDirId, createdAt}, kept twice, in the
// data folder (cookie.json) and in the metadata store (cluster bucket, key `cookies.<bookieId>`),
// as BookKeeper keeps one in its disks and one in ZooKeeper.
// Why: a bookie that comes back under a known id with an empty or foreign disk would answer "no
// such entry" for entries it once acknowledged, and recovery counts such answers as absence, so an
// acknowledged entry could be cut off. Both cookies must agree, or the bookie refuses to start.
// Invariants:
// - the cluster's instanceId is created once (CAS create) and never rewritten;
// - on a first start the data folder's cookie is made durable (fsync, rename, fsync of the folder)
//   before the KV one is created, so a crash between the two leaves a data-folder cookie without a
//   KV one, which the next start completes (same cluster and bookie id only);
// - otherwise a start proceeds only when both exist and agree on instanceId, bookieId and
//   dataDirId; every other case is COOKIE_MISMATCH with a message naming the fix;
// - no host or port in the cookie: the bookie id and its disk are the identity, so a bookie that
//   changes address keeps it.
// The bookie id itself lives in the data folder too (`bookie-id`), so a restart without --id keeps it.

import { randomBytes, randomUUID } from 'node:crypto'
import { open, readFile, rename, rm } from 'node:fs/promises'
import path from 'node:path'
import { QuireError, assert } from '../machines/errors.ts'
import { KvConflict, type VersionedKv } from '../storage/types.ts'
import { syncDir } from '../storage/syncDir.ts'

export interface Cookie {
  instanceId: string
  bookieId: string
  dataDirId: string
  createdAt: number
}

export const COOKIE_FILE = 'cookie.json'
export const BOOKIE_ID_FILE = 'bookie-id'
const INSTANCE_KEY = 'instanceId'
export const cookieKey = (bookieId: string): string => `cookies.${bookieId}`

const BOOKIE_ID = /^[A-Za-z0-9_-]+$/
const enc = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v))
const dec = <T>(b: Uint8Array): T => JSON.parse(Buffer.from(b).toString('utf8')) as T
const when = (ms: number): string => new Date(ms).toISOString()

export function assertBookieId(id: string): void {
  if (!BOOKIE_ID.test(id)) throw new QuireError('INVALID_CONFIG', `bookie id may hold letters, digits, - and _ only: ${id}`, { bookieId: id })
}

// --- the data folder -------------------------------------------------------------------------

/** Write a small file so that it is whole and durable, or absent: temp file, fsync, rename, fsync folder. */
async function writeDurably(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`
  const fh = await open(tmp, 'w')
  try {
    await fh.writeFile(text)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, file)
  await syncDir(path.dirname(file))
}


export async function readBookieIdFile(dataDir: string): Promise<string | null> {
  const s = await readFile(path.join(dataDir, BOOKIE_ID_FILE), 'utf8').then((t) => t.trim(), () => null)
  return s === null || s === '' ? null : s
}

export async function writeBookieIdFile(dataDir: string, bookieId: string): Promise<void> {
  assertBookieId(bookieId)
  await writeDurably(path.join(dataDir, BOOKIE_ID_FILE), `${bookieId}\n`)
}

export async function readDataCookie(dataDir: string): Promise<Cookie | null> {
  const file = path.join(dataDir, COOKIE_FILE)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  try {
    const c = JSON.parse(text) as Partial<Cookie>
    if (typeof c.instanceId === 'string' && typeof c.bookieId === 'string' && typeof c.dataDirId === 'string' && typeof c.createdAt === 'number') {
      return { instanceId: c.instanceId, bookieId: c.bookieId, dataDirId: c.dataDirId, createdAt: c.createdAt }
    }
  } catch {
    // Reported below, with the fix.
  }
  throw new QuireError('COOKIE_MISMATCH', `${file} is not a readable cookie; if this folder's data is lost, run \`quire shell bookieformat --data ${dataDir}\``, { file })
}

export async function writeDataCookie(dataDir: string, cookie: Cookie): Promise<void> {
  await writeDurably(path.join(dataDir, COOKIE_FILE), `${JSON.stringify(cookie, null, 2)}\n`)
}

export async function removeDataCookie(dataDir: string): Promise<void> {
  await rm(path.join(dataDir, COOKIE_FILE), { force: true })
  await syncDir(dataDir).catch(() => {})
}

/**
 * The bookie id for a data folder: the one it keeps (bookie-id, else its cookie's), which a given
 * id must match; else the given one; else a new random one. Nothing is written here.
 */
export async function resolveBookieId(dataDir: string, given: string | undefined): Promise<string> {
  if (given !== undefined) assertBookieId(given)
  const stored = (await readBookieIdFile(dataDir)) ?? (await readDataCookie(dataDir))?.bookieId ?? null
  if (stored !== null && given !== undefined && stored !== given) {
    throw new QuireError('INVALID_CONFIG', `data directory ${dataDir} belongs to bookie ${stored}, not ${given}`, { dataDir, stored, given })
  }
  return stored ?? given ?? `bookie-${randomBytes(4).toString('hex')}`
}

// --- the metadata store ----------------------------------------------------------------------

/** The cluster's instance id, created by the first process that asks with `create`. */
export async function clusterInstanceId(kv: VersionedKv, create: boolean, now: () => number = Date.now): Promise<string | null> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const got = await kv.get(INSTANCE_KEY)
    if (got) return dec<{ instanceId: string }>(got.value).instanceId
    if (!create) return null
    try {
      const instanceId = randomUUID()
      await kv.create(INSTANCE_KEY, enc({ instanceId, createdAt: now() }))
      return instanceId
    } catch (err) {
      if (!(err instanceof KvConflict)) throw err
      // Another process created it first: read theirs.
    }
  }
  throw new QuireError('METADATA_CONFLICT', 'could not read or create the cluster instance id')
}

export async function readKvCookie(kv: VersionedKv, bookieId: string): Promise<Cookie | null> {
  const got = await kv.get(cookieKey(bookieId))
  return got ? dec<Cookie>(got.value) : null
}

/** Rewrite the KV cookie unconditionally (`quire shell updatecookie`). */
export async function putKvCookie(kv: VersionedKv, cookie: Cookie): Promise<void> {
  assertBookieId(cookie.bookieId)
  await kv.put(cookieKey(cookie.bookieId), enc(cookie))
}

export async function deleteKvCookie(kv: VersionedKv, bookieId: string): Promise<void> {
  await kv.delete(cookieKey(bookieId))
}

// --- the check at start-up -------------------------------------------------------------------

/**
 * Why the two cookies do not allow `bookieId` to start on `dataDir` in cluster `instanceId`, as a
 * message naming the fix; null when they agree. `kvCookie` null with a data cookie of this cluster
 * and bookie is allowed (the first start crashed before the KV write; the caller completes it).
 */
export function cookieMismatch(
  dataDir: string, bookieId: string, instanceId: string, data: Cookie | null, kvCookie: Cookie | null,
): string | null {
  if (kvCookie !== null) assert(kvCookie.bookieId === bookieId, `KV cookie under ${bookieId} names ${kvCookie.bookieId}`)
  if (data !== null && data.instanceId !== instanceId) {
    return `data folder ${dataDir} belongs to another Quire cluster (instance ${data.instanceId}), but the metadata store ` +
      `at this NATS is cluster ${instanceId}: point --nats at the cluster this disk belongs to, or, if its data is no longer ` +
      `wanted, wipe it with \`quire shell bookieformat --data ${dataDir} --bookie ${bookieId}\``
  }
  if (data !== null && data.bookieId !== bookieId) {
    return `data folder ${dataDir} holds the cookie of bookie ${data.bookieId}, not ${bookieId}: start it as --id ${data.bookieId}, or give bookie ${bookieId} its own data folder`
  }
  if (data === null && kvCookie !== null) {
    return `the metadata store holds a cookie for bookie ${bookieId} (data dir id ${kvCookie.dataDirId}, created ${when(kvCookie.createdAt)}) ` +
      `but ${dataDir} has none: the data folder was wiped or another disk is mounted there. Mount the bookie's disk at ${dataDir}; ` +
      `if its data is lost, run \`quire shell bookieformat --data ${dataDir} --bookie ${bookieId}\` and start it again, ` +
      `preferably under a new id (its ledgers lost a copy and need re-replication)`
  }
  if (data !== null && kvCookie !== null && data.dataDirId !== kvCookie.dataDirId) {
    return `data folder ${dataDir} (data dir id ${data.dataDirId}, created ${when(data.createdAt)}) is not the disk the metadata store ` +
      `knows for bookie ${bookieId} (data dir id ${kvCookie.dataDirId}, created ${when(kvCookie.createdAt)}): mount the right disk at ${dataDir}, ` +
      `or, if this disk was moved here on purpose and the other one is gone, run \`quire shell updatecookie --bookie ${bookieId} --data ${dataDir}\``
  }
  return null
}

export interface CookieCheck {
  cookie: Cookie
  /** 'created': first start; 'completed': the KV cookie was missing and written from the data folder's; 'matched'. */
  outcome: 'created' | 'completed' | 'matched'
}

/**
 * Verify (or on a first start create) the cookies of `bookieId` on `dataDir`. Throws COOKIE_MISMATCH
 * when the bookie must not start. Writes the bookie-id file with a new cookie.
 */
export async function verifyCookie(
  kv: VersionedKv, dataDir: string, bookieId: string, now: () => number = Date.now,
): Promise<CookieCheck> {
  assertBookieId(bookieId)
  const instanceId = await clusterInstanceId(kv, true, now)
  assert(instanceId !== null, 'instance id created')
  for (let attempt = 0; attempt < 10; attempt++) {
    const data = await readDataCookie(dataDir)
    const stored = await readKvCookie(kv, bookieId)
    const why = cookieMismatch(dataDir, bookieId, instanceId, data, stored)
    if (why !== null) throw new QuireError('COOKIE_MISMATCH', why, { bookieId, dataDir, instanceId })
    if (data !== null && stored !== null) return { cookie: data, outcome: 'matched' }
    const cookie = data ?? { instanceId, bookieId, dataDirId: randomBytes(8).toString('hex'), createdAt: now() }
    if (data === null) {
      await writeBookieIdFile(dataDir, bookieId)
      await writeDataCookie(dataDir, cookie)
    }
    try {
      await kv.create(cookieKey(bookieId), enc(cookie))
      return { cookie, outcome: data === null ? 'created' : 'completed' }
    } catch (err) {
      if (!(err instanceof KvConflict)) throw err
      // Another start of the same id won the creation: compare against its cookie on the next pass.
    }
  }
  throw new QuireError('METADATA_CONFLICT', `could not settle the cookie of bookie ${bookieId}`, { bookieId })
}
