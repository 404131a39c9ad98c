// `quire bookie`: kept for existing scripts; it is `quire node --roles bookie` with the same flags
// (--nats, --data, --id, --heartbeat-ms, --journal-group-wait-ms, --journal-group-bytes,
// --checkpoint-ms and every other node setting, each with its QUIRE_... variable).

import type { Command } from 'commander'
import { addSettingOptions, runNode } from './nodeCmd.ts'

export function addBookieCommand(program: Command): void {
  addSettingOptions(program
    .command('bookie')
    .description('run a bookie in the foreground (same as `quire node --roles bookie`; SIGTERM drains and exits)'), ['roles'])
    .action((opts: Record<string, unknown>) => runNode(opts, { roles: 'bookie' }))
}
