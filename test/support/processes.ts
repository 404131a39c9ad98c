// Test support for checking processes by pid: whether one still runs (a zombie, dead but not yet
// reaped by whoever inherited it, does not count), and waiting for a condition with a bound
// instead of sleeping a fixed time.

import { readFileSync } from 'node:fs'

/** True while `pid` is a live process (not a zombie). Linux reads /proc; elsewhere signal 0. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw err
  }
  try {
    // /proc/<pid>/stat: "pid (comm) state ...", comm may hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return process.platform !== 'linux'
  }
}

/** Polls `cond` every `everyMs` until it holds; fails with `what()` after `timeoutMs`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: () => string, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await cond()) return
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what()}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}
