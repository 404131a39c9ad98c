// `quire shell ...`: admin commands in the spirit of BookKeeper's shell. Each connects to NATS
// (--nats), does one thing, prints a readable answer and exits non-zero on any error.
// Every shell command, its options and description are declared here; the ledger commands are
// carried out here too, the others by cli/shellCookie.ts, shellBookie.ts and
// shellAutorecovery.ts. This file imports only commander's types, node built-ins and
// machines/errors.ts at run time: the client, storage and those modules are imported by the
// action that needs them, so `quire shell --help` (and `quire --help`, which declares these
// commands too) loads none of them.

import type { Command, Option } from 'commander'
import type { QuireClientImpl as QuireClient } from '../client/internal.ts'
import { QuireError } from '../machines/errors.ts'
import { natsTargetOf, type NatsCommandOptions } from './natsSettings.ts'
import { ledgerPassword, type PasswordOptions } from './shellPasswords.ts'

export async function withClient<T>(o: NatsCommandOptions, fn: (c: QuireClient) => Promise<T>, opts: { inspect?: boolean } = {}): Promise<T> {
  const { connectClient } = await import('../client/internal.ts')
  const target = natsTargetOf(o)
  const client = await connectClient({ ...target, name: 'quire-shell', ...opts })
  try {
    return await fn(client)
  } finally {
    await client.close()
  }
}

function ledgerIdArg(v: string): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new QuireError('INVALID_CONFIG', `not a ledger id: ${v}`)
  return n
}

function intOpt(name: string, v: string | undefined, dflt: number, min = 0): number {
  if (v === undefined) return dflt
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min) throw new QuireError('INVALID_CONFIG', `${name} must be an integer >= ${min}, got ${v}`)
  return n
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')

export function printable(buf: Buffer): boolean {
  for (const b of buf) if (b < 0x09 || (b > 0x0d && b < 0x20) || b === 0x7f) return false
  return buf.toString('utf8').includes('\uFFFD') === false
}

export function addShellCommands(shell: Command, natsOption: () => Option): void {
  addCookieCommands(shell, natsOption)
  shell.command('listbookies').description('list registered bookies with their state and liveness').addOption(natsOption())
    .option('--readonly', 'only the read-only bookies (disk full)')
    .action((o: { nats: string; readonly?: boolean }) => withClient(o, async (c) => {
      const { isBookieAlive } = await import('../storage/metadataStore.ts')
      const now = Date.now()
      const list = (await c.listBookies()).filter((b) => !o.readonly || b.state === 'readonly')
      for (const b of list) {
        const alive = isBookieAlive(b, now) ? 'alive' : 'dead'
        console.log(`${b.bookieId}\t${b.state}\t${alive}\thost=${b.host} pid=${b.pid} heartbeat=${now - b.heartbeatAt}ms ago`)
      }
      if (list.length === 0) console.log(o.readonly ? 'no read-only bookies' : 'no bookies registered')
    }))

  addBookieShellCommands(shell, natsOption)
  addAutorecoveryCommands(shell, natsOption)

  shell.command('listledgers').description('list ledger ids (with state and last entry when --meta)').addOption(natsOption())
    .option('--meta', 'also print each ledger\'s state, last entry id and length')
    .action((o: { nats: string; meta?: boolean }) => withClient(o, async (c) => {
      for await (const id of c.listLedgers()) {
        if (!o.meta) console.log(String(id))
        else {
          const { value: md } = await c.metadata.readLedger(id).catch(() => ({ value: null }))
          console.log(md ? `${id}\t${md.state}\tlastEntryId=${md.lastEntryId}\tlength=${md.length}` : `${id}\t(deleted)`)
        }
      }
    }))

  shell.command('ledgermetadata <ledgerId>').description('print a ledger\'s metadata (segments, state, quorums)').addOption(natsOption())
    .action((id: string, o: { nats: string }) => withClient(o, async (c) => {
      const { value: md, revision } = await c.metadata.readLedger(ledgerIdArg(id))
      const { passwordCheck: _hidden, ...shown } = md
      console.log(JSON.stringify({ ...shown, revision }, null, 2))
    }))

  shell.command('readledger <ledgerId>').description('print entries of a ledger').addOption(natsOption())
    .option('--from <entryId>', 'first entry', '0')
    .option('--to <entryId>', 'last entry (default: the last confirmed)')
    .option('--password <password>', 'ledger password (visible in ps: prefer --password-file or QUIRE_PASSWORD)')
    .option('--password-file <file>', 'file whose first line is the ledger password')
    .option('--hex', 'always print payloads as hex')
    .action((id: string, o: NatsCommandOptions & PasswordOptions & { from: string; to?: string; hex?: boolean }) => withClient(o, async (c) => {
      const h = await c.openLedger(ledgerIdArg(id), { password: ledgerPassword(o) })
      const from = intOpt('--from', o.from, 0)
      const to = intOpt('--to', o.to, h.lastAddConfirmed)
      if (to < from) {
        console.log(`ledger ${id}: no entries in ${from}..${to} (last confirmed ${h.lastAddConfirmed})`)
        return
      }
      for (let first = from; first <= to; first += 1000) {
        for (const e of await h.read(first, Math.min(to, first + 999))) {
          const text = !o.hex && printable(e.payload) ? JSON.stringify(e.payload.toString('utf8')) : e.payload.toString('hex')
          console.log(`${e.entryId}\t${e.payload.byteLength}B\t${text}`)
        }
      }
    }))

  shell.command('tail <ledgerId>').description('follow a ledger and print entries as they arrive, until it is closed').addOption(natsOption())
    .option('--from <entryId>', 'first entry', '0')
    .option('--password <password>', 'ledger password (visible in ps: prefer --password-file or QUIRE_PASSWORD)')
    .option('--password-file <file>', 'file whose first line is the ledger password')
    .option('--hex', 'always print payloads as hex')
    .action((id: string, o: NatsCommandOptions & PasswordOptions & { from: string; hex?: boolean }) => withClient(o, async (c) => {
      const h = await c.openLedger(ledgerIdArg(id), { password: ledgerPassword(o) })
      for await (const e of h.entries({ from: intOpt('--from', o.from, 0) })) {
        const text = !o.hex && printable(e.payload) ? JSON.stringify(e.payload.toString('utf8')) : e.payload.toString('hex')
        console.log(`${e.entryId}\t${e.payload.byteLength}B\t${text}`)
      }
      console.log(`ledger ${id} closed at entry ${h.lastAddConfirmed}`)
    }, { inspect: true })) // the reader shows in the inspector (quire.inspect.reader.*)

  shell.command('deleteledger <ledgerId>').description('delete a ledger from the metadata').addOption(natsOption())
    .action((id: string, o: { nats: string }) => withClient(o, async (c) => {
      await c.deleteLedger(ledgerIdArg(id))
      console.log(`ledger ${id} deleted`)
    }))

  shell.command('recover <ledgerIdOrBookieId>')
    .description('a ledger id: fence the ledger, find its last entry, and close it there (open with recovery); a bookie id: re-replicate everything that stopped bookie held')
    .addOption(natsOption())
    .option('--password <password>', 'ledger password (visible in ps: prefer --password-file or QUIRE_PASSWORD)')
    .option('--password-file <file>', 'file whose first line is the ledger password')
    .option('--bookie', 'the argument is a bookie id (for bookie ids made of digits only)')
    .option('--grace-ms <ms>', 'bookie: how long open ledgers are left to their writers before being fenced', '0')
    .option('--timeout-s <s>', 'bookie: give up after this long', '3600')
    .action((id: string, o: NatsCommandOptions & PasswordOptions & { bookie?: boolean; graceMs: string; timeoutS: string }) => o.bookie || !/^\d+$/.test(id)
      ? import('./shellAutorecovery.ts').then((m) => m.rereplicateBookie(natsTargetOf(o), id, m.rereplicateOptions(o, false)))
      : withClient(o, async (c) => {
      const before = (await c.metadata.readLedger(ledgerIdArg(id))).value
      const h = await c.openLedger(ledgerIdArg(id), { password: ledgerPassword(o), recovery: true })
      const md = h.metadata
      const what = before.state === 'CLOSED' ? 'was already closed' : 'recovered'
      console.log(`ledger ${id} ${what}: CLOSED at entry ${md.lastEntryId}, length ${md.length}, ${md.segments.length} segment(s)`)
    }))

  shell.command('simpletest').description('write N entries to a new ledger, close it, read all back and verify every byte').addOption(natsOption())
    .option('--ensemble <n>', 'ensemble size', '3')
    .option('--write-quorum <n>', 'write quorum', '2')
    .option('--ack-quorum <n>', 'ack quorum', '2')
    .option('--entries <n>', 'entries to write', '1000')
    .option('--size <bytes>', 'payload size', '1024')
    .option('--in-flight <n>', 'appends in flight', '100')
    .action((o: Record<string, string> & { nats: string }) => withClient(o, async (c) => {
      const n = intOpt('--entries', o.entries, 1000, 1)
      const size = intOpt('--size', o.size, 1024, 0)
      const window = intOpt('--in-flight', o['inFlight'], 100, 1)
      const w = await c.createLedger({
        ensembleSize: intOpt('--ensemble', o.ensemble, 3, 1),
        writeQuorum: intOpt('--write-quorum', o['writeQuorum'], 2, 1),
        ackQuorum: intOpt('--ack-quorum', o['ackQuorum'], 2, 1),
      })
      const payload = (i: number): Buffer => {
        const b = Buffer.alloc(size)
        for (let k = 0; k < size; k++) b[k] = (i * 31 + k * 7) & 0xff
        return b
      }
      const started = performance.now()
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < n) {
          const i = next++
          const id = await w.append(payload(i))
          if (id !== i) throw new QuireError('CORRUPT_ENTRY', `append ${i} got entry id ${id}`)
        }
      }
      await Promise.all(Array.from({ length: Math.min(window, n) }, worker))
      const seconds = (performance.now() - started) / 1000
      await w.close()
      const r = await c.openLedger(w.ledgerId)
      let bad = 0
      for (let first = 0; first < n; first += 1000) {
        for (const e of await r.read(first, Math.min(n - 1, first + 999))) if (!e.payload.equals(payload(e.entryId))) bad++
      }
      if (r.lastAddConfirmed !== n - 1 || bad > 0) {
        throw new QuireError('CORRUPT_ENTRY', `ledger ${w.ledgerId}: ${bad} of ${n} entries differ (last confirmed ${r.lastAddConfirmed})`)
      }
      console.log(`ledger ${w.ledgerId}: ${fmt(n)} entries written and verified, ${fmt(n / seconds)} entries/s`)
    }))
}

// --- commands carried out by cli/shellCookie.ts, shellBookie.ts, shellAutorecovery.ts -----------

function addCookieCommands(shell: Command, natsOption: () => Option): void {
  shell.command('updatecookie').description('rewrite a bookie\'s cookie in the metadata store from its data folder\'s (after moving a disk on purpose)')
    .addOption(natsOption())
    .requiredOption('--bookie <id>', 'bookie id')
    .requiredOption('--data <dir>', 'the data folder whose cookie becomes the bookie\'s')
    .option('--force', 'even if the metadata store says the bookie is alive')
    .action(async (o: { nats: string; bookie: string; data: string; force?: boolean }) => (await import('./shellCookie.ts')).runUpdateCookie(o))

  shell.command('bookieformat').description('wipe a bookie\'s data folder and its cookie in the metadata store, so that it starts afresh')
    .addOption(natsOption())
    .requiredOption('--data <dir>', 'the data folder to wipe')
    .option('--bookie <id>', 'bookie id, when the folder no longer says (wiped disk)')
    .option('--force', 'even if the bookie is alive, or the folder does not look like a bookie\'s')
    .action(async (o: { nats: string; data: string; bookie?: string; force?: boolean }) => (await import('./shellCookie.ts')).runBookieFormat(o))

  shell.command('bookieinfo <bookieId>').description('a bookie\'s registration, state, liveness and cookie')
    .addOption(natsOption())
    .option('--ledgers', 'also count the ledgers with it in an ensemble (reads every ledger\'s metadata)')
    .action(async (id: string, o: { nats: string; ledgers?: boolean }) => (await import('./shellCookie.ts')).runBookieInfo(id, o))
}

function addBookieShellCommands(shell: Command, natsOption: () => Option): void {
  shell.command('bookieintegritycheck <bookieId>')
    .description('ask a running bookie to compare its limbo ledgers with the metadata now; exit 1 if the check failed')
    .addOption(natsOption())
    .option('--timeout-ms <ms>', 'how long to wait for the check', '120000')
    .action(async (bookieId: string, o: { nats: string; timeoutMs: string }) => (await import('./shellBookie.ts')).runBookieIntegrityCheck(bookieId, o))

  shell.command('bookiesanity <bookieId>')
    .description('write, read back and delete a ledger on exactly this bookie (E=Qw=Qa=1); exit 1 on any error')
    .addOption(natsOption())
    .option('--entries <n>', 'entries to write', '10')
    .option('--timeout-ms <ms>', 'add and read timeout', '5000')
    .action(async (bookieId: string, o: { nats: string; entries: string; timeoutMs: string }) => (await import('./shellBookie.ts')).runBookieSanity(bookieId, o))

  shell.command('readjournal')
    .description('print the journal records of a stopped bookie\'s data folder: position, type, ledger, entry, length')
    .requiredOption('--data <dir>', 'the bookie\'s data folder')
    .action(async (o: { data: string }) => (await import('./shellBookie.ts')).runReadJournal(o))
}

function addAutorecoveryCommands(shell: Command, natsOption: () => Option): void {
  shell.command('listunderreplicated').description('ledgers marked under-replicated, their missing bookies and claims').addOption(natsOption())
    .action(async (o: { nats: string }) => (await import('./shellAutorecovery.ts')).runListUnderReplicated(o))

  shell.command('whoisauditor').description('the node holding the auditor lease').addOption(natsOption())
    .action(async (o: { nats: string }) => (await import('./shellAutorecovery.ts')).runWhoIsAuditor(o))

  shell.command('triggeraudit').description('ask the auditor for an audit of every ledger now, and print its summary').addOption(natsOption())
    .option('--timeout-ms <ms>', 'how long to wait for the audit', '120000')
    .action(async (o: { nats: string; timeoutMs: string }) => (await import('./shellAutorecovery.ts')).runTriggerAudit(o))

  shell.command('autorecovery').description('enable or disable auto-recovery cluster-wide, or show whether it is enabled').addOption(natsOption())
    .option('--enable', 'let the auditor mark and the workers re-replicate')
    .option('--disable', 'stop marking and re-replicating until enabled again')
    .action(async (o: { nats: string; enable?: boolean; disable?: boolean }) => (await import('./shellAutorecovery.ts')).runAutorecovery(o))

  shell.command('decommissionbookie <bookieId>').description('re-replicate every ledger of a stopped bookie, then remove its registration').addOption(natsOption())
    .option('--password <password...>', 'ledger password(s) to try (default: the empty password; visible in ps: prefer --password-file or QUIRE_PASSWORD)')
    .option('--password-file <file>', 'file of ledger passwords to try, one per line')
    .option('--grace-ms <ms>', 'how long open ledgers are left to their writers before being fenced', '0')
    .option('--timeout-s <s>', 'give up after this long', '3600')
    .action(async (bookieId: string, o: NatsCommandOptions & PasswordOptions & { graceMs: string; timeoutS: string }) => {
      const { rereplicateBookie, rereplicateOptions } = await import('./shellAutorecovery.ts')
      await rereplicateBookie(natsTargetOf(o), bookieId, rereplicateOptions(o, true))
    })
}
