// Layering: storage/, transport/ and client/ never import actors/ (metrics and inspection are
// passed in by the processes that want them: actors/, cli/), so the client library loads no
// Prometheus registry and the layers do not import each other in a circle.

import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'

const ROOT = path.resolve(import.meta.dirname, '..', '..')
const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g

test('storage/, transport/ and client/ import nothing from actors/', async () => {
  const offenders: string[] = []
  for (const dir of ['storage', 'transport', 'client']) {
    for (const name of await readdir(path.join(ROOT, dir))) {
      if (!name.endsWith('.ts')) continue
      const file = path.join(ROOT, dir, name)
      const text = await readFile(file, 'utf8')
      for (const m of text.matchAll(IMPORT)) {
        const spec = m[1] ?? m[2]!
        if (!spec.startsWith('.')) continue
        const target = path.relative(ROOT, path.resolve(path.dirname(file), spec))
        if (target.split(path.sep)[0] === 'actors') offenders.push(`${dir}/${name} imports ${spec}`)
      }
    }
  }
  assert.equal(offenders, [])
})

test.run()
