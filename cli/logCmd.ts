// `quire log ...`: named logs from the command line. Each command connects to NATS (the same
// --nats and login flags as `quire shell`), does one thing, prints a readable answer and exits
// non-zero on any error. Only commander's types, node built-ins and light cli modules load here:
// the client is imported by the action (see cli/shell.ts), so `quire log --help` loads none of it.
// `append` takes the log's writer (fencing any other) for as long as it runs; `tail` prints
// records as they arrive, until the log is sealed.

import type { Command, Option } from 'commander'
import { QuireError } from '../machines/errors.ts'
import type { NatsCommandOptions } from './natsSettings.ts'
import { printable, withClient } from './shell.ts'

function intOpt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new QuireError('INVALID_CONFIG', `${name} must be a non-negative integer, got ${v}`)
  return n
}

function shown(payload: Uint8Array, hex: boolean | undefined): string {
  const b = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  return !hex && printable(b) ? JSON.stringify(b.toString('utf8')) : b.toString('hex')
}

type CreateFlags = NatsCommandOptions & Record<'ensemble' | 'writeQuorum' | 'ackQuorum' | 'segmentBytesMax' | 'segmentAgeMs' | 'segmentRecordsMax' | 'retentionMs' | 'retentionBytes', string | undefined>

export function addLogCommands(log: Command, natsOption: () => Option): void {
  log.command('create <name>').description('create a log (names: letters, digits, _ and -, in parts joined by /)').addOption(natsOption())
    .option('--ensemble <n>', 'bookies per segment (default 3)')
    .option('--write-quorum <n>', 'copies of each entry (default 2)')
    .option('--ack-quorum <n>', 'acks an entry waits for (default 2)')
    .option('--segment-bytes-max <bytes>', 'roll a segment at this size (default 256 MiB; 0: never)')
    .option('--segment-age-ms <ms>', 'roll a segment this old (0, the default: never)')
    .option('--segment-records-max <n>', 'roll a segment at this many records (0, the default: never)')
    .option('--retention-ms <ms>', 'truncate segments closed longer ago than this (0, the default: keep)')
    .option('--retention-bytes <bytes>', 'truncate the oldest segments while the log holds more (0, the default: no bound)')
    .action((name: string, o: CreateFlags) => withClient(o, async (c) => {
      const opts = Object.fromEntries(Object.entries({
        ensembleSize: intOpt('--ensemble', o.ensemble), writeQuorum: intOpt('--write-quorum', o.writeQuorum), ackQuorum: intOpt('--ack-quorum', o.ackQuorum),
        segmentBytesMax: intOpt('--segment-bytes-max', o.segmentBytesMax), segmentAgeMs: intOpt('--segment-age-ms', o.segmentAgeMs),
        segmentRecordsMax: intOpt('--segment-records-max', o.segmentRecordsMax), retentionMs: intOpt('--retention-ms', o.retentionMs),
        retentionBytes: intOpt('--retention-bytes', o.retentionBytes),
      }).filter(([, v]) => v !== undefined))
      await c.logs.createLog(name, opts)
      console.log(`log ${name} created`)
    }))

  log.command('list [prefix]').description('list logs (whose names start with prefix)').addOption(natsOption())
    .action((prefix: string | undefined, o: NatsCommandOptions) => withClient(o, async (c) => {
      let n = 0
      for await (const name of c.logs.listLogs(prefix ?? '')) { console.log(name); n++ }
      if (n === 0) console.log(prefix ? `no logs named ${prefix}...` : 'no logs')
    }))

  log.command('info <name>').description('print a log\'s metadata: options, writer epoch, segments, subscribers').addOption(natsOption())
    .action((name: string, o: NatsCommandOptions) => withClient(o, async (c) => {
      const { LogStore } = await import('../storage/logStore.ts')
      console.log(JSON.stringify(await new LogStore(c.metadata.logsKv).describe(name), null, 2))
    }))

  log.command('append <name> [records...]').description('take the log\'s writer and append each record (no records: one per line of stdin); prints each position').addOption(natsOption())
    .option('--seal', 'then mark the end of the stream')
    .action((name: string, records: string[], o: NatsCommandOptions & { seal?: boolean }) => withClient(o, async (c) => {
      const { formatPosition } = await import('../machines/logPosition.ts')
      const w = await (await c.logs.openLog(name)).writer()
      const lines = records.length > 0 ? records : await stdinLines()
      const positions = await Promise.all(lines.map((r) => w.append(r)))
      for (const p of positions) console.log(formatPosition(p))
      if (o.seal) await w.markEndOfStream()
      else await w.close()
    }))

  log.command('tail <name>').description('print records as they arrive (position, txId, payload), until the log is sealed').addOption(natsOption())
    .option('--from <start>', 'a position (seg:entry:slot), earliest or latest', 'earliest')
    .option('--txid <txId>', 'start at the first record with this txId or a later one')
    .option('--subscriber <name>', 'resume after this subscriber\'s cursor, and commit each record printed')
    .option('--max <n>', 'stop after this many records')
    .option('--hex', 'always print payloads as hex')
    .action((name: string, o: NatsCommandOptions & { from: string; txid?: string; subscriber?: string; max?: string; hex?: boolean }) => withClient(o, async (c) => {
      const { formatPosition } = await import('../machines/logPosition.ts')
      const txId = intOpt('--txid', o.txid)
      const max = intOpt('--max', o.max) ?? Number.POSITIVE_INFINITY
      const reader = (await c.logs.openLog(name)).reader({ from: txId !== undefined ? { txId } : o.from, ...(o.subscriber ? { subscriber: o.subscriber } : {}) })
      let n = 0
      if (n >= max) return
      for await (const r of reader.records()) {
        console.log(`${formatPosition(r.position)}\t${r.txId}\t${shown(r.payload, o.hex)}`)
        if (o.subscriber) await reader.commit(r.position)
        if (++n >= max) return
      }
      console.log(`log ${name} sealed`)
    }, { inspect: true }))

  log.command('truncate <name> <position>').description('remove the whole segments that end before position (seg:entry:slot)').addOption(natsOption())
    .action((name: string, position: string, o: NatsCommandOptions) => withClient(o, async (c) => {
      const removed = await (await c.logs.openLog(name)).truncate(position)
      console.log(removed.length ? `log ${name}: segments ${removed.join(', ')} truncated` : `log ${name}: nothing before ${position} to truncate`)
    }))

  log.command('delete <name>').description('delete a log: its writer is fenced, its segments\' ledgers and cursors deleted').addOption(natsOption())
    .action((name: string, o: NatsCommandOptions) => withClient(o, async (c) => {
      await c.logs.deleteLog(name)
      console.log(`log ${name} deleted`)
    }))

  log.command('subscribers <name>').description('list the log\'s subscribers and their cursors').addOption(natsOption())
    .option('--delete <subscriber>', 'delete this subscriber\'s cursor')
    .action((name: string, o: NatsCommandOptions & { delete?: string }) => withClient(o, async (c) => {
      const { formatPosition } = await import('../machines/logPosition.ts')
      const { LogStore } = await import('../storage/logStore.ts')
      const handle = await c.logs.openLog(name)
      if (o.delete) {
        await handle.deleteSubscriber(o.delete)
        console.log(`subscriber ${o.delete} of log ${name} deleted`)
        return
      }
      const { subscribers } = await new LogStore(c.metadata.logsKv).describe(name)
      for (const s of subscribers) console.log(`${s.subscriber}\t${formatPosition(s.position)}\tcommitted ${new Date(s.updatedAt).toISOString()}`)
      if (subscribers.length === 0) console.log(`log ${name} has no subscribers`)
    }))
}

async function stdinLines(): Promise<string[]> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8').split('\n').filter((l) => l.length > 0)
}
