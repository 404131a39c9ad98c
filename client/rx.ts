// RxJS is the client's optional peer dependency. Only `tail$` and `append$` need it, and they load
// it when first called, from the application's own installation: their Observables are then the
// same class as the application's (operators, `instanceof` and `from()` interoperate), and an app
// that never calls them installs no rxjs at all. rxjs 7 maps both `import` and `require` to one
// CommonJS build under Node, so loading it with `require` here gives the instance the app imports.
import { createRequire } from 'node:module'
import type * as Rx from 'rxjs'
import { QuireError } from '../machines/errors.ts'

let loaded: typeof Rx | null = null

/** rxjs, loaded once from where the client is installed. */
export function rxjs(): typeof Rx {
  loaded ??= loadRxjs(createRequire(import.meta.url))
  return loaded
}

/** An async iterator's values as an Observable: one iterator per subscription; unsubscribing returns it. */
export function observableOf<T>(make: () => AsyncIterator<T>): Rx.Observable<T> {
  return new (rxjs().Observable)<T>((subscriber) => {
    const it = make()
    let stopped = false
    void (async () => {
      try {
        for (;;) {
          const r = await it.next()
          if (stopped) return
          if (r.done) return subscriber.complete()
          subscriber.next(r.value)
        }
      } catch (err) {
        if (!stopped) subscriber.error(err)
      }
    })()
    return () => {
      stopped = true
      void it.return?.()
    }
  })
}

/** `load('rxjs')`, with PEER_DEPENDENCY_MISSING when the application has not installed it. */
export function loadRxjs(load: (id: string) => unknown): typeof Rx {
  try {
    return load('rxjs') as typeof Rx
  } catch (err) {
    if ((err as { code?: unknown }).code !== 'MODULE_NOT_FOUND') throw err
    throw new QuireError('PEER_DEPENDENCY_MISSING', 'tail$ and append$ return RxJS Observables: install rxjs 7 in the application (npm install rxjs)')
  }
}
