// A ledger admin script over the public client API.
//
//   node admin.mjs list              every ledger: state, ensemble size and quorums, last entry,
//                                    length, segments (ensemble changes), custom metadata
//   node admin.mjs metadata <id>     one ledger's metadata as JSON
//   node admin.mjs delete <id>       delete a ledger (its entries are then garbage collected by
//                                    the bookies); an open ledger's writer fails on its next change
//   node admin.mjs bookies           registered bookies: state, host, pid, last heartbeat
//
// NATS: $QUIRE_NATS (default nats://127.0.0.1:4222). Errors print `admin: <CODE>: <message>` and
// exit 1 (e.g. NO_SUCH_LEDGER for an unknown id); a bad command line exits 2.

import { connect, isQuireError } from 'quire'

const USAGE = 'usage: node admin.mjs list | metadata <ledgerId> | delete <ledgerId> | bookies'

async function list(client) {
  const rows = [['ledger', 'state', 'E/Qw/Qa', 'last entry', 'length', 'segments', 'custom metadata']]
  for await (const ledgerId of client.listLedgers()) {
    let md
    try {
      md = await client.getLedgerMetadata(ledgerId)
    } catch (err) {
      if (isQuireError(err) && err.code === 'NO_SUCH_LEDGER') continue // deleted since it was listed
      throw err
    }
    // The metadata holds the last entry once the ledger is closed; while it is open only its
    // writer and its bookies (the LAC, readable with the ledger's password) know it.
    const last = md.state === 'CLOSED' ? String(md.lastEntryId) : '-'
    const custom = Object.entries(md.customMetadata).map(([k, v]) => `${k}=${v}`).join(',')
    rows.push([String(ledgerId), md.state, `${md.ensembleSize}/${md.writeQuorum}/${md.ackQuorum}`, last,
      md.state === 'CLOSED' ? String(md.length) : '-', String(md.segments.length), custom])
  }
  printTable(rows)
  process.stderr.write(`${rows.length - 1} ledgers\n`)
}

async function bookies(client) {
  const now = Date.now()
  const rows = [['bookie', 'state', 'host', 'pid', 'heartbeat', 'alive']]
  for (const b of await client.listBookies()) {
    const ageMs = now - b.heartbeatAt
    // A bookie counts as dead after five missed heartbeats (its record stays until it drains).
    rows.push([b.bookieId, b.state, b.host, String(b.pid), `${(ageMs / 1000).toFixed(1)} s ago`, ageMs > 5 * b.heartbeatMs ? 'no' : 'yes'])
  }
  printTable(rows)
}

function printTable(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)))
  for (const r of rows) process.stdout.write(`${r.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd()}\n`)
}

function ledgerIdArg(arg) {
  const id = Number(arg)
  return arg !== undefined && /^\d+$/.test(arg) && Number.isSafeInteger(id) ? id : null
}

async function main([command, arg, ...rest]) {
  const needsId = command === 'metadata' || command === 'delete'
  const ledgerId = ledgerIdArg(arg)
  if (rest.length > 0 || !['list', 'bookies', 'metadata', 'delete'].includes(command) || (needsId ? ledgerId === null : arg !== undefined)) {
    process.stderr.write(`${USAGE}\n`)
    return 2
  }
  const client = await connect({ servers: process.env.QUIRE_NATS ?? 'nats://127.0.0.1:4222', name: 'quire-admin-example' })
  try {
    if (command === 'list') await list(client)
    else if (command === 'bookies') await bookies(client)
    else if (command === 'metadata') process.stdout.write(`${JSON.stringify(await client.getLedgerMetadata(ledgerId), null, 2)}\n`)
    else {
      await client.deleteLedger(ledgerId)
      process.stdout.write(`deleted ledger ${ledgerId}\n`)
    }
    return 0
  } finally {
    await client.close()
  }
}

try {
  process.exitCode = await main(process.argv.slice(2))
} catch (err) {
  process.stderr.write(`admin: ${isQuireError(err) ? `${err.code}: ${err.message}` : err?.stack ?? err}\n`)
  process.exitCode = 1
}
