// The documentation: docs/reference.md carries the error table exactly as it is generated from
// machines/errors.ts (one row per code, in the registry's order), and every relative link in the
// README, the changelog and docs/*.md names a file of the repository and, with a #fragment, one of
// its headings. The settings table is checked by test/integration/settings.test.ts, the client guide's
// producer/consumer example is run by test/integration/tail.test.ts.

import { readFile, readdir, stat } from 'node:fs/promises'
import path from 'node:path'
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT } from '../../cli/cluster.ts'
import { ERROR_CODES } from '../../machines/errors.ts'

/** The error table as docs/reference.md must hold it. */
function renderErrorTable(): string {
  const rows = Object.entries(ERROR_CODES).map(([code, meaning]) => `| \`${code}\` | ${meaning} |`)
  return ['| code | meaning |', '|---|---|', ...rows].join('\n')
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')
}

async function docFiles(): Promise<string[]> {
  const docs = (await readdir(path.join(REPO_ROOT, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)
  return ['README.md', 'CHANGELOG.md', ...docs]
}

function headings(markdown: string): Set<string> {
  const out = new Set<string>()
  let fenced = false
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced
    const m = !fenced && /^#{1,6} (.*)$/.exec(line)
    if (m) out.add(anchor(m[1] ?? ''))
  }
  return out
}

test('docs/reference.md carries the error table generated from machines/errors.ts', async () => {
  const doc = await readFile(path.join(REPO_ROOT, 'docs/reference.md'), 'utf8')
  const table = renderErrorTable()
  assert.ok(doc.includes(table), `docs/reference.md must hold this table exactly:\n${table}`)
  for (const code of Object.keys(ERROR_CODES)) assert.is(doc.split(`| \`${code}\` |`).length, 2, `one row for ${code}`)
})

test('every relative link of the README, the changelog and docs/ names a file and a heading that exist', async () => {
  const broken: string[] = []
  let links = 0
  for (const file of await docFiles()) {
    const text = await readFile(path.join(REPO_ROOT, file), 'utf8')
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1] ?? ''
      if (/^[a-z]+:/.test(target)) continue
      links++
      const [rel = '', fragment] = target.split('#')
      const resolved = rel === '' ? path.join(REPO_ROOT, file) : path.join(REPO_ROOT, path.dirname(file), rel)
      const exists = await stat(resolved).then(() => true, () => false)
      if (!exists) { broken.push(`${file}: ${target} (no such file)`); continue }
      if (fragment !== undefined && !headings(await readFile(resolved, 'utf8')).has(fragment)) broken.push(`${file}: ${target} (no such heading)`)
    }
  }
  assert.ok(links > 10, `links found: ${links}`)
  assert.equal(broken, [])
})

test('no document points outside the repository at the protocol contract', async () => {
  for (const file of await docFiles()) {
    const text = await readFile(path.join(REPO_ROOT, file), 'utf8')
    assert.not.ok(text.includes('../shared/'), `${file} points at ../shared/`)
    assert.not.ok(text.includes('PROTOCOL.md'), `${file} names PROTOCOL.md`)
  }
})

test.run()
