// Time and chance, injected: the product uses the real clock and Math.random; the deterministic
// simulator (sim/) passes a virtual clock driven by its event queue and a seeded generator, so a
// run replays exactly from its seed.

export type TimerHandle = { readonly id: number } | NodeJS.Timeout

export interface Clock {
  now(): number
  setTimeout(fn: () => void, ms: number): TimerHandle
  clearTimeout(handle: TimerHandle): void
  /** Run `fn` once the current turn's I/O callbacks and microtasks are done (setImmediate). */
  defer(fn: () => void): void
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return t
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  defer: (fn) => { setImmediate(fn) },
}

/** The real clock with timers that keep the process alive (a wait a caller is blocked on, with nothing else pending). */
export const keepAliveClock: Clock = {
  ...realClock,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
}

export type Random = () => number

/** Call `fn` every `ms` on `clock` (setInterval's shape on any clock) until the returned stop is called. */
export function every(clock: Clock, ms: number, fn: () => void): () => void {
  let stopped = false
  let handle: TimerHandle
  const tick = (): void => {
    if (stopped) return
    handle = clock.setTimeout(tick, ms)
    fn()
  }
  handle = clock.setTimeout(tick, ms)
  return () => {
    stopped = true
    clock.clearTimeout(handle)
  }
}
