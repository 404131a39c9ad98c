// `quire`: one command for every role. Operating errors (QuireError) print their code and
// message and exit 1; anything else is a bug and prints its stack.
// Every command, option and description is declared when this starts, so that `--help` can list
// them; what a command does is imported by its action. The modules imported statically here
// (and by bookieCmd, nodeCmd, inspectorCmd, shell) are only commander, node built-ins,
// machines/errors.ts and cli/settings.ts, so `quire --help` and `quire <command> --help` load no
// roles, storage, NATS client, RocksDB, fastify or pino (test/e2e/cliHelp.test.ts checks this).

import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command, Option } from 'commander'
import { QuireError } from '../machines/errors.ts'
import { addBookieCommand } from './bookieCmd.ts'
import { addInspectorCommand } from './inspectorCmd.ts'
import { NATS_AUTH_FLAG_SETTINGS } from './natsSettings.ts'
import { addNodeCommand } from './nodeCmd.ts'
import { flagHelp, SETTINGS } from './settings.ts'
import type { SandboxOptions } from './sandbox.ts'
import { addShellCommands } from './shell.ts'
import { addLogCommands } from './logCmd.ts'

const program = new Command()
program.name('quire').description('Quire: a replicated ledger store on NATS').showHelpAfterError()
// quire.mjs answers a lone `--version` before loading this; here it is listed in --help.
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
program.version(version, '-V, --version', 'print the version and exit')

const natsOption = (): Option => new Option('--nats <urls>', 'NATS server URL(s), comma-separated').env('QUIRE_NATS').default('nats://127.0.0.1:4222')

addNodeCommand(program)
addBookieCommand(program)

program
  .command('sandbox')
  .description('start a local cluster: nats-server + bookies, optionally with a demo workload')
  .option('--bookies <n>', 'number of bookie processes', '3')
  .option('--nats-port <port>', 'port for nats-server (default: a free one)')
  .option('--data <dir>', 'data folder (default: a new temporary one)')
  .option('--demo', 'keep appending to a ledger and print a line a second')
  .option('--entry-size <bytes>', 'payload size of demo entries', '1024')
  .option('--in-flight <n>', 'demo appends in flight', '64')
  .option('--seconds <n>', 'stop after this many seconds (default: until Ctrl-C)')
  .option('--inspector-port <port>', 'port of the inspector page (default 8420, or a free one)')
  .option('--no-inspector', 'do not serve the inspector page')
  .option('--secure', 'run on nats-secure.conf: TLS with a CA of its own and one NATS user per role (certificates and passwords under <data>/secrets)')
  .action(async (opts: SandboxOptions) => (await import('./sandbox.ts')).runSandbox(opts))

addInspectorCommand(program, natsOption)

addShellCommands(program.command('shell').description('admin commands (in the spirit of BookKeeper\'s shell)'), natsOption)
addLogCommands(program.command('log').description('named logs: create, list, info, append, tail, truncate, delete, subscribers'), natsOption)

program
  .command('bench')
  .description('run the benchmark (same as npm run bench)')
  .option('--json', 'print the figures as one JSON object on the last line')
  .option('--seconds <n>', 'seconds per measurement', '3')
  .option('--tail-entries <n>', 'entries for the tailing reader memory check', '200000')
  .option('--quick', 'the 1 KiB cells only, and no tailing reader memory check')
  .option('--only <parts>', 'only these comma-separated parts: cell keys (1024B_x1, logs1000_1024B, records_100B_x4096, ...), tail, memory, logread, soak')
  .option('--soak', 'also run the soak: bookie RSS over many entries, disk use after deleting half the ledgers (tens of minutes at the default size)')
  .option('--soak-entries <n>', 'entries the soak writes', '10000000')
  .option('--warmup-seconds <n>', 'seconds each peer serves at 128 and at 1 in flight before the first measurement', '5')
  .action(async (opts: { json?: boolean; seconds: string; tailEntries: string; quick?: boolean; only?: string; soak?: boolean; soakEntries: string; warmupSeconds: string }) => {
    const { runBench } = await importBench()
    await runBench({
      json: opts.json === true, seconds: Number(opts.seconds), tailEntries: Number(opts.tailEntries), quick: opts.quick === true,
      soak: opts.soak === true, soakEntries: Number(opts.soakEntries), warmupSeconds: Number(opts.warmupSeconds), ...(opts.only === undefined ? {} : { only: opts.only.split(',') }),
    })
  })

/** bench/ is in a checkout, not in the quire-server package: there, one line instead of a stack trace. */
async function importBench(): Promise<typeof import('../bench/run.ts')> {
  // Compiled, this file is cli/main.js and the benchmark bench/run.js; in a checkout both are .ts.
  const ext = path.extname(fileURLToPath(import.meta.url))
  if (!existsSync(new URL(`../bench/run${ext}`, import.meta.url))) {
    process.stderr.write('quire bench runs from a source checkout: npm run bench\n')
    process.exit(1)
  }
  return import('../bench/run.ts')
}

addNatsAuthFlags(program)

/**
 * Every command that connects (it has --nats) and does not already take the node's settings also
 * takes the NATS login and TLS flags of the settings table, each with its variable; the secrets
 * that have no flag come from QUIRE_NATS_PASSWORD and QUIRE_NATS_TOKEN (cli/natsSettings.ts).
 */
function addNatsAuthFlags(cmd: Command): void {
  const has = (flag: string): boolean => cmd.options.some((o) => o.long === flag)
  if (has('--nats') && !has('--nats-user')) {
    for (const name of NATS_AUTH_FLAG_SETTINGS) cmd.addOption(new Option(SETTINGS[name].flag!, flagHelp(name)).env(SETTINGS[name].env))
  }
  for (const sub of cmd.commands) addNatsAuthFlags(sub)
}

try {
  await program.parseAsync(process.argv)
} catch (err) {
  if (err instanceof QuireError) {
    process.stderr.write(`error ${err.code}: ${err.message}\n`)
    process.exit(1)
  }
  throw err
}
