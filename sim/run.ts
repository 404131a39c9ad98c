// `npm run sim -- --seeds N [--from S] [--seed S] [--variant NAME] [--logs | --autorecovery]`:
// deterministic simulation runs of ledgers (sim/simulate.ts), with --logs of a named log
// (sim/simulateLogs.ts), with --autorecovery of a lost bookie and the autorecovery roles
// (sim/simulateAutorecovery.ts). Prints each failing seed with its violations and how to replay
// it; exits 1 if any seed failed. A variant swaps a protocol rule for a known-broken one
// (sim/variants.ts), to see the checkers catch it (they must).

import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { simulate, type SimOptions, type SimResult } from './simulate.ts'
import { simulateAutorecovery } from './simulateAutorecovery.ts'
import { simulateLog } from './simulateLogs.ts'
import { VARIANTS, type VariantName } from './variants.ts'

export type Scenario = 'ledgers' | 'logs' | 'autorecovery'

/** One seed of a scenario, with a variant's rules swapped in. */
export function runOne(scenario: Scenario, seed: number, variant: VariantName | undefined, mode?: SimOptions['mode']): Promise<SimResult> {
  const v = variant ? VARIANTS[variant] : {}
  if (scenario === 'logs') return simulateLog({ seed, ...v })
  if (scenario === 'autorecovery') return simulateAutorecovery({ seed, ...v })
  return simulate({ seed, ...v, mode })
}

function replayCommand(scenario: Scenario, seed: number, variant: VariantName | undefined, mode: SimOptions['mode']): string {
  const how = scenario === 'logs' ? ' --logs' : scenario === 'autorecovery' ? ' --autorecovery' : mode ? ` --mode ${mode}` : ''
  return `npm run sim -- --seed ${seed}${how}${variant ? ` --variant ${variant}` : ''}`
}

/** `firstFailure`: stop at the first failing seed (a variant's check needs only one). */
export async function runSeeds(opts: {
  from: number; count: number; variant?: VariantName; mode?: SimOptions['mode']; quiet?: boolean; firstFailure?: boolean
  logs?: boolean; autorecovery?: boolean
}): Promise<{ failed: number[]; ms: number }> {
  const started = performance.now()
  const failed: number[] = []
  const scenario: Scenario = opts.logs ? 'logs' : opts.autorecovery ? 'autorecovery' : 'ledgers'
  for (let seed = opts.from; seed < opts.from + opts.count; seed++) {
    const r = await runOne(scenario, seed, opts.variant, opts.mode)
    if (r.violations.length > 0) {
      failed.push(seed)
      if (!opts.quiet) {
        console.log(`FAIL ${r.summary}`)
        for (const v of [...new Set(r.violations)].slice(0, 8)) console.log(`  - ${v}`)
        console.log(`  replay: ${replayCommand(scenario, seed, opts.variant, opts.mode)}`)
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
      autorecovery: { type: 'boolean', default: false },
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
  const scenario: Scenario = values.logs ? 'logs' : values.autorecovery ? 'autorecovery' : 'ledgers'
  const one = values.seed !== undefined
  const from = Number(one ? values.seed : values.from)
  const count = one ? 1 : Number(values.seeds)
  if (one) {
    const r = await runOne(scenario, from, variant, mode)
    console.log(r.summary)
    console.log(`${r.events} events; ${r.violations.length === 0 ? 'no violations' : r.violations.join('\n')}`)
    process.exit(r.violations.length === 0 ? 0 : 1)
  }
  const { failed, ms } = await runSeeds({ from, count, variant, mode, logs: values.logs, autorecovery: values.autorecovery })
  const what = scenario === 'ledgers' ? mode : scenario
  console.log(`${count} ${scenario === 'ledgers' ? '' : `${scenario} `}seeds from ${from} (${what}${variant ? `, variant ${variant}` : ''}): ${count - failed.length} passed, ${failed.length} failed in ${(ms / 1000).toFixed(1)} s`)
  process.exit(failed.length === 0 ? 0 : 1)
}
