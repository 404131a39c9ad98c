// `npm run sim -- --seeds N [--from S] [--seed S] [--variant NAME] [--logs]`: deterministic
// simulation runs of ledgers (sim/simulate.ts) or, with --logs, of a named log (sim/simulateLogs.ts). Prints each failing seed with its violations and how to replay it; exits 1
// if any seed failed. A variant swaps a protocol rule (of recovery, or the bookies' limbo) for a
// known-broken one, to see the checkers catch it (they must).

import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { simulate, type SimOptions } from './simulate.ts'
import { simulateLog } from './simulateLogs.ts'
import { VARIANTS, type VariantName } from './variants.ts'

/** `firstFailure`: stop at the first failing seed (a variant's check needs only one). */
export async function runSeeds(opts: {
  from: number; count: number; variant?: VariantName; mode?: SimOptions['mode']; quiet?: boolean; firstFailure?: boolean; logs?: boolean
}): Promise<{ failed: number[]; ms: number }> {
  const started = performance.now()
  const failed: number[] = []
  const variant = opts.variant ? VARIANTS[opts.variant] : {}
  for (let seed = opts.from; seed < opts.from + opts.count; seed++) {
    const r = opts.logs ? await simulateLog({ seed, ...variant }) : await simulate({ seed, ...variant, mode: opts.mode })
    if (r.violations.length > 0) {
      failed.push(seed)
      if (!opts.quiet) {
        console.log(`FAIL ${r.summary}`)
        for (const v of [...new Set(r.violations)].slice(0, 8)) console.log(`  - ${v}`)
        console.log(`  replay: npm run sim -- --seed ${seed}${opts.logs ? ' --logs' : opts.mode ? ` --mode ${opts.mode}` : ''}${opts.variant ? ` --variant ${opts.variant}` : ''}`)
      }
      if (opts.firstFailure) break
    }
  }
  return { failed, ms: performance.now() - started }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string', default: '200' }, from: { type: 'string', default: '1' }, seed: { type: 'string' },
      variant: { type: 'string' }, mode: { type: 'string', default: 'mixed' }, logs: { type: 'boolean', default: false },
    },
  })
  const mode = values.mode as SimOptions['mode']
  if (!['mixed', 'race', 'plain'].includes(mode ?? '')) {
    console.error(`error INVALID_CONFIG: --mode is mixed, race or plain, got ${values.mode}`)
    process.exit(1)
  }
  const variant = values.variant as VariantName | undefined
  if (variant && !(variant in VARIANTS)) {
    console.error(`error INVALID_CONFIG: unknown variant ${variant}; known: ${Object.keys(VARIANTS).join(', ')}`)
    process.exit(1)
  }
  const one = values.seed !== undefined
  const from = Number(one ? values.seed : values.from)
  const count = one ? 1 : Number(values.seeds)
  if (one) {
    const r = values.logs ? await simulateLog({ seed: from, ...(variant ? VARIANTS[variant] : {}) }) : await simulate({ seed: from, mode, ...(variant ? VARIANTS[variant] : {}) })
    console.log(r.summary)
    console.log(`${r.events} events; ${r.violations.length === 0 ? 'no violations' : r.violations.join('\n')}`)
    process.exit(r.violations.length === 0 ? 0 : 1)
  }
  const { failed, ms } = await runSeeds({ from, count, variant, mode, logs: values.logs })
  console.log(`${count} ${values.logs ? 'log ' : ''}seeds from ${from} (${values.logs ? 'logs' : mode}${variant ? `, variant ${variant}` : ''}): ${count - failed.length} passed, ${failed.length} failed in ${(ms / 1000).toFixed(1)} s`)
  process.exit(failed.length === 0 ? 0 : 1)
}
