// CPU accounting for the benchmark: the CPU time every process involved in a measurement spent
// during its timed window, so that a peer's cost is one number (CPU-µs per entry) that holds
// steady on a shared machine where wall-clock rates do not.
//
// - This process (the writer, its clients, the measurement loop): process.cpuUsage(), user +
//   system, all threads (libuv's pool included).
// - Every other process (nats-server, bookies): /proc/<pid>/stat fields 14 and 15 (utime, stime),
//   in clock ticks of `getconf CLK_TCK`, read at the window's start and end. They count all the
//   process's threads; a child's CPU is not in them until it is reaped (no process here forks).
//
// Invariants: a window's figures are deltas of monotonic counters, never negative; a process that
// is gone before the window ends makes stop() throw naming it (its CPU would otherwise be lost
// without a word). Linux only (/proc).

import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

export interface Proc {
  /** How the process is shown: "nats-server", "bookie-1", ... */
  name: string
  pid: number
}

/** CPU spent in one window, in microseconds. */
export interface CpuSpent {
  /** This process (process.cpuUsage()). */
  clientUs: number
  /** Each other process by name. */
  processUs: Record<string, number>
  /** clientUs plus every processUs. */
  totalUs: number
}

let ticksPerSecond: number | null = null

/** The kernel's clock ticks per second (USER_HZ) from `getconf CLK_TCK`, read once. */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === null) {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    if (!Number.isInteger(n) || n <= 0) throw new Error(`getconf CLK_TCK gave ${JSON.stringify(n)}, not a positive integer`)
    ticksPerSecond = n
  }
  return ticksPerSecond
}

/**
 * utime and stime (clock ticks) from the text of /proc/<pid>/stat. The second field, the command
 * name, is in parentheses and may itself hold spaces and parentheses, so fields are counted from
 * the last ')'.
 */
export function parseProcStat(text: string): { utimeTicks: number; stimeTicks: number } {
  const close = text.lastIndexOf(')')
  if (close < 0) throw new Error(`not a /proc/<pid>/stat line: ${JSON.stringify(text.slice(0, 80))}`)
  // After ") " comes field 3 (state): field n is at index n - 3.
  const fields = text.slice(close + 2).trim().split(/\s+/)
  const utimeTicks = Number(fields[14 - 3])
  const stimeTicks = Number(fields[15 - 3])
  if (!Number.isSafeInteger(utimeTicks) || !Number.isSafeInteger(stimeTicks)) {
    throw new Error(`no utime/stime in /proc/<pid>/stat line: ${JSON.stringify(text.slice(0, 200))}`)
  }
  return { utimeTicks, stimeTicks }
}

/** CPU time (user + system, µs) process `pid` has used so far. */
export function processCpuUs(pid: number): number {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch (err) {
    throw new Error(`cannot read the CPU time of process ${pid} (${err instanceof Error ? err.message : String(err)}); has it exited?`)
  }
  const { utimeTicks, stimeTicks } = parseProcStat(text)
  return ((utimeTicks + stimeTicks) * 1e6) / clockTicksPerSecond()
}

function selfCpuUs(): number {
  const u = process.cpuUsage()
  return u.user + u.system
}

/** A window over this process and `procs`: opened by the constructor, read by stop(). */
export class CpuWindow {
  private readonly selfAtStart: number
  private readonly atStart: number[]

  constructor(private readonly procs: readonly Proc[]) {
    const names = new Set(procs.map((p) => p.name))
    if (names.size !== procs.length) throw new Error(`process names must be distinct: ${procs.map((p) => p.name).join(', ')}`)
    this.atStart = procs.map((p) => processCpuUs(p.pid))
    this.selfAtStart = selfCpuUs()
  }

  stop(): CpuSpent {
    const clientUs = selfCpuUs() - this.selfAtStart
    const processUs: Record<string, number> = {}
    this.procs.forEach((p, i) => { processUs[p.name] = processCpuUs(p.pid) - this.atStart[i]! })
    return sumSpent(clientUs, processUs)
  }
}

export function sumSpent(clientUs: number, processUs: Record<string, number>): CpuSpent {
  return { clientUs, processUs, totalUs: Object.values(processUs).reduce((a, b) => a + b, clientUs) }
}
