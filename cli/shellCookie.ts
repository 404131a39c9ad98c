// `quire shell` commands about a bookie's identity (actors/cookie.ts):
// - updatecookie: rewrite the KV cookie from the data folder's, on purpose (a disk moved);
// - bookieformat: wipe a bookie's data folder and its KV cookie, so that it can start afresh;
// - bookieinfo: registration, state, liveness, cookie and (with --ledgers) ledger count.
// Invariants: nothing is rewritten or wiped while the metadata store says the bookie is alive,
// unless --force; bookieformat removes the folder's cookie first, so that an interrupted format
// leaves a folder that refuses to start (and can be formatted again), never one that starts with
// half its data; a KV cookie that belongs to another disk is never deleted by formatting this one.
// A disk taken on by updatecookie loses its clean-stop marker, so the bookie starts unchecked: it
// may lack entries its ledgers' metadata places on it (actors/integrityCheck.ts), like a wiped one.

import { readdir, rm } from 'node:fs/promises'
import path from 'node:path'
import {
  BOOKIE_ID_FILE, COOKIE_FILE, assertBookieId, clusterInstanceId, deleteKvCookie, putKvCookie, readBookieIdFile,
  readDataCookie, readKvCookie, removeDataCookie,
} from '../actors/cookie.ts'
import { removeCleanStopMarker } from '../actors/bookieStorage.ts'
import { QuireError } from '../machines/errors.ts'
import { isBookieAlive, type BookieRecord, type MetadataStore } from '../storage/metadataStore.ts'
import { openMetadata } from '../storage/openMetadata.ts'
import { connectNats } from '../transport/nats.ts'
import { natsTargetOf, type NatsCommandOptions } from './natsSettings.ts'

async function withMetadata<T>(o: NatsCommandOptions, fn: (m: MetadataStore) => Promise<T>): Promise<T> {
  const { servers, auth } = natsTargetOf(o)
  const nc = await connectNats(servers, { name: 'quire-shell', auth })
  try {
    return await fn(await openMetadata(nc))
  } finally {
    await nc.close()
  }
}

async function registration(m: MetadataStore, bookieId: string): Promise<BookieRecord | null> {
  return (await m.listBookies()).find((b) => b.bookieId === bookieId) ?? null
}

function refuseIfAlive(rec: BookieRecord | null, force: boolean, what: string): void {
  if (rec === null || force || !isBookieAlive(rec, Date.now())) return
  throw new QuireError('BOOKIE_RUNNING',
    `bookie ${rec.bookieId} is alive (host ${rec.host}, pid ${rec.pid}, heartbeat ${Date.now() - rec.heartbeatAt} ms ago): stop it before ${what}, or pass --force`,
    { bookieId: rec.bookieId })
}

const when = (ms: number): string => new Date(ms).toISOString()

async function updateCookie(m: MetadataStore, bookieId: string, dataDir: string, force: boolean): Promise<string> {
  assertBookieId(bookieId)
  const data = await readDataCookie(dataDir)
  if (data === null) {
    throw new QuireError('INVALID_CONFIG', `${dataDir} holds no cookie to update from (a wiped folder is reset with \`quire shell bookieformat\`)`, { dataDir })
  }
  if (data.bookieId !== bookieId) {
    throw new QuireError('INVALID_CONFIG', `${dataDir} holds the cookie of bookie ${data.bookieId}, not ${bookieId}`, { dataDir, bookieId })
  }
  const instanceId = await clusterInstanceId(m.clusterKv, false)
  if (instanceId !== data.instanceId) {
    throw new QuireError('COOKIE_MISMATCH',
      `${dataDir} belongs to Quire cluster ${data.instanceId}, this metadata store is ${instanceId ?? 'a cluster with no instance id yet'}: ` +
      'a disk cannot move between clusters; point --nats at its own cluster, or wipe it with `quire shell bookieformat`', { dataDir, instanceId })
  }
  refuseIfAlive(await registration(m, bookieId), force, 'rewriting its cookie')
  const before = await readKvCookie(m.clusterKv, bookieId)
  // Before the KV cookie: a start in between would still refuse the disk.
  await removeCleanStopMarker(dataDir)
  await putKvCookie(m.clusterKv, data)
  const was = before === null ? 'none before' : before.dataDirId === data.dataDirId ? 'unchanged' : `was ${before.dataDirId}`
  return `cookie of bookie ${bookieId} updated from ${dataDir}: data dir id ${data.dataDirId} (${was})`
}

async function bookieFormat(m: MetadataStore, dataDir: string, given: string | undefined, force: boolean): Promise<string> {
  if (given !== undefined) assertBookieId(given)
  const names = await readdir(dataDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [] as string[]
    throw err
  })
  const data = names.includes(COOKIE_FILE) ? await readDataCookie(dataDir).catch(() => null) : null
  const kept = (await readBookieIdFile(dataDir)) ?? data?.bookieId
  if (kept !== undefined && kept !== null && given !== undefined && kept !== given) {
    throw new QuireError('INVALID_CONFIG', `${dataDir} belongs to bookie ${kept}, not ${given}`, { dataDir, bookieId: given })
  }
  const bookieId = kept ?? given
  if (names.length > 0 && !names.includes(COOKIE_FILE) && !names.includes(BOOKIE_ID_FILE) && !force) {
    throw new QuireError('INVALID_CONFIG', `${dataDir} does not look like a bookie's data folder (no ${COOKIE_FILE}, no ${BOOKIE_ID_FILE}); pass --force to wipe it anyway`, { dataDir })
  }
  if (bookieId !== undefined) refuseIfAlive(await registration(m, bookieId), force, 'formatting it')
  // The folder's cookie goes first: from here on the folder refuses to start until formatted.
  await removeDataCookie(dataDir).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
  let kv = 'the folder names no bookie, so no cookie was removed from the metadata store (pass --bookie ID for that)'
  if (bookieId !== undefined) {
    kv = 'no cookie in the metadata store'
    const stored = await readKvCookie(m.clusterKv, bookieId)
    if (stored !== null && data !== null && stored.dataDirId !== data.dataDirId) {
      kv = `the metadata store's cookie (data dir id ${stored.dataDirId}) belongs to another disk and was kept`
    } else if (stored !== null) {
      await deleteKvCookie(m.clusterKv, bookieId)
      kv = 'its cookie removed from the metadata store'
    }
  }
  for (const name of names) await rm(path.join(dataDir, name), { recursive: true, force: true })
  return `${bookieId === undefined ? 'data folder' : `bookie ${bookieId}`} formatted: ${dataDir} wiped, ${kv}`
}

async function bookieInfo(m: MetadataStore, bookieId: string, countLedgers: boolean): Promise<string[]> {
  assertBookieId(bookieId)
  const now = Date.now()
  const rec = await registration(m, bookieId)
  const cookie = await readKvCookie(m.clusterKv, bookieId)
  const out = [`bookie ${bookieId}`]
  out.push(rec === null
    ? 'registration: none (not running, or drained)'
    : `registration: ${rec.state}, ${isBookieAlive(rec, now) ? 'alive' : 'dead'} (heartbeat ${now - rec.heartbeatAt} ms ago, every ${rec.heartbeatMs} ms), host ${rec.host}, pid ${rec.pid}, started ${when(rec.startedAt)}`)
  out.push(cookie === null
    ? 'cookie: none'
    : `cookie: instance ${cookie.instanceId}, data dir id ${cookie.dataDirId}, created ${when(cookie.createdAt)}`)
  if (countLedgers) {
    let n = 0
    for await (const id of m.listLedgers()) {
      const md = await m.readLedger(id).then((v) => v.value, () => null)
      if (md?.segments.some((s) => s.ensemble.includes(bookieId))) n++
    }
    out.push(`ledgers: ${n} with this bookie in an ensemble`)
  }
  return out
}

// The commands' actions; cli/shell.ts declares the commands and imports this file when one runs.

export const runUpdateCookie = (o: { nats: string; bookie: string; data: string; force?: boolean }): Promise<void> => withMetadata(o, async (m) => {
  console.log(await updateCookie(m, o.bookie, path.resolve(o.data), o.force === true))
})

export const runBookieFormat = (o: { nats: string; data: string; bookie?: string; force?: boolean }): Promise<void> => withMetadata(o, async (m) => {
  console.log(await bookieFormat(m, path.resolve(o.data), o.bookie, o.force === true))
})

export const runBookieInfo = (id: string, o: { nats: string; ledgers?: boolean }): Promise<void> => withMetadata(o, async (m) => {
  for (const line of await bookieInfo(m, id, o.ledgers === true)) console.log(line)
})
