// A node's NATS login and TLS from its settings (cli/settings.ts: natsUser, natsPassword or
// natsPasswordFile, natsToken or natsTokenFile, natsNkeySeedFile, natsCredsFile, natsTls*), as the
// NatsAuth every connection of the node presents (transport/natsAuth.ts); and the same for every
// other command that connects (`quire shell ...`, `quire inspector`): the table's flags and
// variables of those settings, and the server URLs with the login as one NatsTarget.
// Invariants: a secret comes from the environment, the config file or a file, never from argv
// (the settings table gives secrets no flag); a password or token given both as a value and as a
// file, or a file that cannot be read, is INVALID_CONFIG naming the settings, never the secret.

import { QuireError } from '../machines/errors.ts'
import type { NatsAuth } from '../transport/natsAuth.ts'
import { SETTINGS, readSettingFile, type NodeSettings } from './settings.ts'

export type NatsSettings = Pick<NodeSettings,
  'natsUser' | 'natsPassword' | 'natsPasswordFile' | 'natsToken' | 'natsTokenFile' | 'natsNkeySeedFile' | 'natsCredsFile' |
  'natsTlsCaFile' | 'natsTlsCertFile' | 'natsTlsKeyFile' | 'natsInboxPrefix'>

/** The NatsAuth the settings describe; undefined when they name no login and no TLS. */
export function natsAuthFromSettings(s: Partial<NatsSettings>): NatsAuth | undefined {
  const pass = settingSecret(s.natsPassword, s.natsPasswordFile, 'natsPassword', 'natsPasswordFile')
  const token = settingSecret(s.natsToken, s.natsTokenFile, 'natsToken', 'natsTokenFile')
  const auth: NatsAuth = {
    ...(s.natsUser === undefined ? {} : { user: s.natsUser }),
    ...(pass === undefined ? {} : { pass }),
    ...(token === undefined ? {} : { token }),
    ...(s.natsNkeySeedFile === undefined ? {} : { nkeySeedFile: s.natsNkeySeedFile }),
    ...(s.natsCredsFile === undefined ? {} : { credsFile: s.natsCredsFile }),
    ...(s.natsInboxPrefix === undefined ? {} : { inboxPrefix: s.natsInboxPrefix }),
  }
  if (s.natsTlsCaFile !== undefined || s.natsTlsCertFile !== undefined || s.natsTlsKeyFile !== undefined) {
    auth.tls = {
      ...(s.natsTlsCaFile === undefined ? {} : { caFile: s.natsTlsCaFile }),
      ...(s.natsTlsCertFile === undefined ? {} : { certFile: s.natsTlsCertFile }),
      ...(s.natsTlsKeyFile === undefined ? {} : { keyFile: s.natsTlsKeyFile }),
    }
  }
  return Object.keys(auth).length === 0 ? undefined : auth
}

/** A secret setting given as a value or as a file (its first line), not both; undefined when neither. */
export function settingSecret(value: string | undefined, file: string | undefined, valueName: string, fileName: string): string | undefined {
  if (value !== undefined && file !== undefined) {
    throw new QuireError('INVALID_CONFIG', `give ${valueName} or ${fileName}, not both`, { settings: [valueName, fileName] })
  }
  if (file === undefined) return value
  const line = readSettingFile(file, fileName).split(/\r?\n/)[0] ?? ''
  if (line === '') throw new QuireError('INVALID_CONFIG', `${fileName} ${file} is empty`, { setting: fileName, file })
  return line
}

/** The settings a command that connects takes as flags (each also from its QUIRE_... variable). */
export const NATS_AUTH_FLAG_SETTINGS = [
  'natsUser', 'natsPasswordFile', 'natsTokenFile', 'natsNkeySeedFile', 'natsCredsFile', 'natsTlsCaFile', 'natsTlsCertFile', 'natsTlsKeyFile',
  'natsInboxPrefix',
] as const

/** A command's parsed options: `--nats` and the flags of NATS_AUTH_FLAG_SETTINGS (commander names them as the settings). */
export type NatsCommandOptions = { nats: string } & Partial<Record<(typeof NATS_AUTH_FLAG_SETTINGS)[number], string>>

/** Where a command connects: the servers, and how it logs in. */
export interface NatsTarget {
  servers: string | string[]
  auth: NatsAuth | undefined
}

/**
 * A command's NATS target from its options and the environment: the secrets that have no flag
 * (natsPassword, natsToken) come from their variables only.
 */
export function natsTargetOf(o: NatsCommandOptions, env: Record<string, string | undefined> = process.env): NatsTarget {
  const fromEnv = (name: 'natsPassword' | 'natsToken'): string | undefined => env[SETTINGS[name].env] || undefined
  const flags: Partial<NatsSettings> = o
  const auth = natsAuthFromSettings({ ...flags, natsPassword: fromEnv('natsPassword'), natsToken: fromEnv('natsToken') })
  return { servers: o.nats, auth }
}
