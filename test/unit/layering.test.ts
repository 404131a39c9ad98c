// The folders' import directions (docs/internals.md "Layers"): each folder of the product may
// import only from the folders listed for it, so that the layering stays true without anyone
// checking by hand:
// - machines/ is pure: xstate and its own files, no node:* module, no IO folder, and no call of
//   Date.now, Math.random, performance.now or a timer (time comes in through events and `after`);
// - storage/ and transport/ import no role: only machines/;
// - client/ imports no server role: machines/, storage/ (KV stores) and transport/, never actors/;
// - actors/ (the roles) import no command: never cli/, sim/ or bench/.
// Every static import, `export ... from`, `import type` and dynamic `import()` counts.

import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT } from '../../cli/cluster.ts'

const test = suite('layering')

/** Product folders and the product folders each may import from (itself always). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  machines: [],
  storage: ['machines'],
  transport: ['machines'],
  client: ['machines', 'storage', 'transport'],
  actors: ['client', 'machines', 'storage', 'transport'],
  sim: ['actors', 'client', 'machines', 'storage', 'transport'],
  cli: ['actors', 'bench', 'client', 'machines', 'storage', 'transport'],
  bench: ['cli', 'client', 'machines', 'storage', 'transport'],
}
/** Packages machines/ may import: the machine library only. */
const MACHINE_PACKAGES = new Set(['xstate'])
const IMPURE_CALLS = /\b(Date\.now|Math\.random|performance\.now|setTimeout|setInterval|setImmediate)\s*\(/

/** The module specifiers a source imports: static, export-from, type-only and dynamic. */
function importsOf(source: string): string[] {
  const code = stripComments(source)
  const out: string[] = []
  for (const m of code.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g)) out.push(m[1]!)
  for (const m of code.matchAll(/(?:^|[\s;])import\s*['"]([^'"]+)['"]/g)) out.push(m[1]!)
  for (const m of code.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!)
  return out
}

function stripComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
}

/** What breaks the rules in one file of `folder`, as readable lines. */
function violations(folder: string, file: string, source: string): string[] {
  const allowed = new Set([folder, ...(MAY_IMPORT[folder] ?? [])])
  const out: string[] = []
  for (const spec of importsOf(source)) {
    if (spec.startsWith('.')) {
      const target = path.relative(REPO_ROOT, path.resolve(REPO_ROOT, folder, path.dirname(file), spec)).split(path.sep)[0]!
      if (target in MAY_IMPORT && !allowed.has(target)) out.push(`${folder}/${file} imports ${spec} (${target}/)`)
      else if (!(target in MAY_IMPORT) && target !== 'package.json') out.push(`${folder}/${file} imports ${spec}, outside the product folders`)
    } else if (folder === 'machines' && !MACHINE_PACKAGES.has(spec)) {
      out.push(`machines/${file} imports ${spec}: machines import no IO and no package but xstate`)
    }
  }
  if (folder === 'machines') {
    const impure = IMPURE_CALLS.exec(stripComments(source))
    if (impure) out.push(`machines/${file} calls ${impure[1]}: time and chance come in from outside`)
  }
  return out
}

async function sources(folder: string): Promise<string[]> {
  const entries = await readdir(path.join(REPO_ROOT, folder), { recursive: true, withFileTypes: true })
  return entries.filter((e) => e.isFile() && /\.(ts|mts|js|mjs)$/.test(e.name))
    .map((e) => path.relative(path.join(REPO_ROOT, folder), path.join(e.parentPath ?? (e as unknown as { path: string }).path, e.name)))
}

test('every product folder imports only in the intended direction', async () => {
  const found: string[] = []
  let files = 0
  let imports = 0
  for (const folder of Object.keys(MAY_IMPORT)) {
    for (const file of await sources(folder)) {
      const source = await readFile(path.join(REPO_ROOT, folder, file), 'utf8')
      files++
      imports += importsOf(source).length
      found.push(...violations(folder, file, source))
    }
  }
  assert.ok(files > 100 && imports > 600, `the scan read the tree (${files} files, ${imports} imports)`)
  assert.equal(found, [])
})

test('the checker names each kind of violation, and passes what is allowed', () => {
  const bad = [
    "import { x } from '../actors/bookie.ts'",
    "import type { Y } from '../storage/types.ts'",
    "export { z } from '../cli/cluster.ts'",
    "const m = await import('../transport/nats.ts')",
    "import os from 'node:os'",
    "import { connect } from '@nats-io/transport-node'",
    'const t = Date.now()',
    'setTimeout(() => {}, 1)',
  ]
  for (const line of bad) assert.is(violations('machines', 'x.ts', line).length, 1, `caught in machines/: ${line}`)
  assert.equal(violations('client', 'x.ts', "import { startBookie } from '../actors/bookie.ts'"), ['client/x.ts imports ../actors/bookie.ts (actors/)'])
  assert.equal(violations('storage', 'x.ts', "import type { QuireClient } from '../client/api.ts'").length, 1)
  assert.equal(violations('transport', 'x.ts', "import { startAuditor } from '../actors/auditor.ts'").length, 1)
  assert.equal(violations('actors', 'x.ts', "import { runSeeds } from '../sim/run.ts'").length, 1)
  const fine = [
    "import { assign, setup } from 'xstate'",
    "import { quorum } from './quorum.ts'",
    '// Date.now() is never called here; setTimeout neither',
    "/* import { x } from '../actors/bookie.ts' */",
  ]
  for (const line of fine) assert.equal(violations('machines', 'x.ts', line), [], `allowed in machines/: ${line}`)
  assert.equal(violations('client', 'x.ts', "import { LogStore } from '../storage/logStore.ts'\nimport { x } from 'rxjs'"), [])
})

test.run()
