// What the client library reports about itself, as an interface the process that builds a client
// fills in (actors/metrics.ts's clientMetrics in a node, the CLI and the benchmark). The client
// never imports the metrics registry: an application that passes nothing gets the no-op below and
// pays a method call per event, nothing more.

export interface ClientMetrics {
  /** An append resolved; `calledAtMs` and `nowMs` from performance.now(). */
  addResolved(calledAtMs: number, nowMs: number): void
  /** A tailing reader delivered an entry. */
  tailDelivered(): void
  /** A request to a bookie (read, LAC read, long poll) got no answer in time. */
  bookieTimeout(): void
  /** A read request went to another replica because the first had not answered within `speculativeReadTimeoutMs`. */
  speculativeRead?(): void
  /** A read, LAC read or long poll could go on only once a bookie's request timed out (it waited a whole timeout). */
  waitedOnTimeout?(): void
}

export const NO_CLIENT_METRICS: ClientMetrics = {
  addResolved() {},
  tailDelivered() {},
  bookieTimeout() {},
}
