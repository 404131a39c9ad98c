// Entries of known content for the entry log and compaction tests (and their child processes):
// real encoded entries (crc32c digest), of varying sizes, so a misplaced or mixed-up payload
// shows.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { encodeEntry, masterKeyOf } from '../../transport/entry.ts'

const key = masterKeyOf('entry-log-test')

export function testEntry(ledgerId: number, entryId: number): Buffer {
  const payload = Buffer.alloc(100 + ((ledgerId * 7919 + entryId * 104729) % 3000), `${ledgerId}/${entryId};`)
  return encodeEntry('crc32c', key, ledgerId, entryId, entryId - 1, 0, payload)
}

const CHILD_TIMEOUT_MS = 180_000

/** Runs test/support/entryLogChild.ts with `cmd`; resolves with its output and how it ended. */
export function runChild(cmd: object, until?: (out: string) => boolean): Promise<{ out: string; code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', new URL('./entryLogChild.ts', import.meta.url).pathname, JSON.stringify(cmd)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      if (until?.(out)) child.kill('SIGKILL')
    })
    child.stderr!.on('data', (d: Buffer) => { err += d.toString() })
    // A child that neither finishes nor gets killed fails the test instead of stalling the run.
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`child ${JSON.stringify(cmd)} still running after ${CHILD_TIMEOUT_MS} ms; stdout ${out.slice(-500)}; stderr ${err.slice(-2000)}`))
    }, CHILD_TIMEOUT_MS)
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (code !== null && code !== 0) reject(new Error(`child exited ${code}: ${err}`))
      else resolve({ out, code, signal })
    })
  })
}

/** Runs `fn` in a new temporary folder, removed afterwards whatever happens. */
export async function withDir(prefix: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix))
  try {
    await fn(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
