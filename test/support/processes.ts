// Test support for checking processes by pid: whether one still runs (a zombie, dead but not yet
// reaped by whoever inherited it, does not count) or is wholly stopped (SIGSTOP), and waiting for
// a condition with a bound instead of sleeping a fixed time.

import { readFileSync, readdirSync } from 'node:fs'

/** True while `pid` is a live process (not a zombie). Linux reads /proc; elsewhere signal 0. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false
    throw err
  }
  try {
    return procState(`/proc/${pid}/stat`) !== 'Z'
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

/** Bounds a promise, so that a call that never settles fails the test instead of stalling the run. */
export async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms) })
  try {
    return await Promise.race([p, late])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * True once every thread of `pid` is stopped (SIGSTOP delivered to all of them): a signal is
 * delivered asynchronously, and a thread still running may answer one more request. Linux only
 * (reads /proc); elsewhere true at once.
 */
export function isStopped(pid: number): boolean {
  let tasks: string[]
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return process.platform !== 'linux'
  }
  return tasks.every((tid) => {
    try {
      return 'Tt'.includes(procState(`/proc/${pid}/task/${tid}/stat`))
    } catch {
      return true // the thread has exited
    }
  })
}

/** The state letter of a /proc stat file: "pid (comm) state ...", where comm may hold spaces and parentheses. */
function procState(file: string): string {
  const stat = readFileSync(file, 'utf8')
  return stat.charAt(stat.lastIndexOf(')') + 2)
}
