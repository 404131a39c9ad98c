// Test support for tests that use Quire as a user does: the two packages built and packed from
// this checkout (pkg/pack.mjs) and installed with real npm into a temporary project.
// The build and pack happen once per process, into a temp dir of their own (never the checkout's
// dist/, which a developer or another test process may be using), removed when the process exits.

import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { REPO_ROOT } from '../../cli/cluster.ts'

const run = promisify(execFile)

export interface PackedTarballs {
  /** The client package `quire`'s tarball. */
  client: string
  /** The `quire-server` package's tarball (depends on `quire` at the same version). */
  server: string
  /** The temp dir holding the build, the staged packages and both tarballs. */
  dir: string
}

let packed: Promise<PackedTarballs> | undefined

/** Builds and packs both packages once per process; later calls get the same tarballs. */
export function packedTarballs(): Promise<PackedTarballs> {
  packed ??= pack()
  return packed
}

async function pack(): Promise<PackedTarballs> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'quire-pack-'))
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  await command(process.execPath, [path.join(REPO_ROOT, 'pkg', 'pack.mjs'), '--out', dir], REPO_ROOT)
  const { version } = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
  return { client: path.join(dir, `quire-${version}.tgz`), server: path.join(dir, `quire-server-${version}.tgz`), dir }
}

/** `npm init -y`, then `npm install` of `specs` (tarball paths, folders or names) in `dir`. */
export async function installApp(dir: string, specs: string[]): Promise<void> {
  await command('npm', ['init', '-y'], dir)
  await command('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...specs], dir)
}

/** Runs a command to completion; a failure carries its output, not only its exit code. */
async function command(file: string, args: string[], cwd: string): Promise<void> {
  try {
    await run(file, args, { cwd, maxBuffer: 64 * 1024 * 1024 })
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string }
    throw new Error(`${path.basename(file)} ${args.join(' ')} (in ${cwd}) failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`)
  }
}
