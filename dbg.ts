import { simulate } from './sim/simulate.ts'
for (const seed of [1900, 1576, 1565]) {
  const r = await simulate({ seed })
  console.log(r.summary.slice(0, 300), r.violations.slice(0, 2))
}
