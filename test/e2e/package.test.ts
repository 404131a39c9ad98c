// Quire used as a package, with real npm and real node: the tarballs pkg/pack.mjs makes are
// installed into temporary projects as a user would (test/support/pack.ts).
// Client app (the `quire` tarball alone): a plain .mjs imports it with no loader; CommonJS
// `require('quire')` works (Node.js 20.19+ loads ES modules from require: the client has no
// top-level await); a TypeScript app made with `tsc --init` and module nodenext type-checks and
// builds against the shipped .d.ts (a wrong type fails, so the declarations are really read); no
// .ts source ships; none of the server-only packages is installed; node_modules stays under 20 MB;
// an unsupported Node.js gets UNSUPPORTED_NODE at import and a server subpath (quire/bookie)
// SERVER_ONLY. Server app (`quire` + `quire-server`): `quire --version` and `quire --help` run the
// compiled CLI; their CPU time is printed, not asserted (it depends on the machine).
// npm runs with --prefer-offline: on a warm cache nothing is downloaded.

import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { REPO_ROOT } from '../../cli/cluster.ts'
import { MIN_NODE_MAJOR } from '../../client/nodeVersion.ts'
import { installApp, packedTarballs, type PackedTarballs } from '../support/pack.ts'

const SERVER_ONLY_PACKAGES = ['rocksdb-native', 'playwright-core', 'fastify', 'pino', 'commander', 'tsx', 'esbuild', 'prom-client']
const TSC = path.join(REPO_ROOT, 'node_modules', '.bin', 'tsc')
const VERSION = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string; engines: { node: string } }).version

interface Run { code: number; stdout: string; stderr: string }

/** Runs a command in `cwd` to completion; no NODE_OPTIONS, so no loader reaches the child. */
function run(file: string, args: string[], cwd: string): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: '', NO_COLOR: '1' }
  delete env.FORCE_COLOR
  return new Promise((resolve) => {
    execFile(file, args, { cwd, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1
      resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

const node = (args: string[], cwd: string): Promise<Run> => run(process.execPath, args, cwd)

function ok(r: Run, what: string): Run {
  assert.is(r.code, 0, `${what} exited ${r.code}:\n${r.stdout}${r.stderr}`)
  return r
}

/** Every path under `dir` (files and folders), relative to it. */
function walk(dir: string, rel = ''): string[] {
  const out: string[] = []
  for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const p = path.join(rel, e.name)
    out.push(p)
    if (e.isDirectory()) out.push(...walk(dir, p))
  }
  return out
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`

const pkg = suite('package')
const dirs: string[] = []
let tarballs: PackedTarballs
let clientApp = ''

pkg.before(async () => {
  tarballs = await packedTarballs()
  clientApp = mkdtempSync(path.join(os.tmpdir(), 'quire-client-app-'))
  dirs.push(clientApp)
  await installApp(clientApp, [tarballs.client])
})

pkg.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

pkg('a client app installs only the client: no server-only package, no .ts source, under 20 MB', async () => {
  const nm = path.join(clientApp, 'node_modules')
  const paths = walk(nm)
  const installed = new Set(paths.map((p) => p.split(path.sep)).filter((s) => s.length >= 1).map((s) => s.at(-1)!))
  for (const name of SERVER_ONLY_PACKAGES) {
    assert.not.ok(paths.some((p) => p === name || p.endsWith(`${path.sep}node_modules${path.sep}${name}`)), `${name} is installed for a client app`)
  }
  assert.ok(installed.has('quire'))
  // rxjs is an optional peer dependency (client/rx.ts): installed only when the app asks for it.
  assert.not.ok(installed.has('rxjs'), 'rxjs is installed for a client app that did not ask for it')
  const quireFiles = walk(path.join(nm, 'quire'))
  const sources = quireFiles.filter((f) => /\.(m|c)?ts$/.test(f) && !/\.d\.(m|c)?ts$/.test(f))
  assert.equal(sources, [], 'TypeScript sources in the client package')
  for (const forbidden of ['test', 'sim', 'bench', 'actors', 'cli', 'inspector']) assert.not.ok(existsSync(path.join(nm, 'quire', forbidden)), `quire/${forbidden} shipped`)
  for (const f of ['README.md', 'LICENSE', 'CHANGELOG.md', 'client/index.js', 'client/index.d.ts']) assert.ok(existsSync(path.join(nm, 'quire', f)), `quire/${f} missing`)
  // TypeScript 7 keeps '.ts' in the relative imports of the declarations it emits; older compilers
  // resolve only '.js' there, so the pack rewrites them.
  for (const f of quireFiles.filter((f) => f.endsWith('.d.ts'))) {
    assert.not.match(readFileSync(path.join(nm, 'quire', f), 'utf8'), /(from|import)\s*\(?\s*['"]\.\.?\/[^'"]*\.ts['"]/, `${f} imports a .ts path`)
  }
  // Bytes of the files (what the packages hold) and, as du -sh shows it, the disk blocks they take.
  const bytes = paths.map((p) => statSync(path.join(nm, p))).filter((s) => s.isFile()).reduce((a, s) => a + s.size, 0)
  const du = await run('du', ['-sk', nm], clientApp)
  const diskKb = du.code === 0 ? Number(du.stdout.split(/\s/)[0]) : NaN
  const packages = readdirSync(nm).flatMap((n) => (n.startsWith('@') ? readdirSync(path.join(nm, n)).map((m) => `${n}/${m}`) : n.startsWith('.') ? [] : [n]))
  console.log(`  client app node_modules: ${mb(bytes)} in files, ${mb(diskKb * 1024)} on disk (du -sk), ${packages.length} packages: ${packages.join(' ')}`)
  assert.ok(bytes < 20 * 1024 * 1024, `client app node_modules holds ${mb(bytes)}`)
  assert.ok(diskKb < 20 * 1024, `client app node_modules takes ${mb(diskKb * 1024)} on disk`)
})

pkg('a plain .mjs imports quire with no loader; require("quire") works too', async () => {
  writeFileSync(path.join(clientApp, 'esm.mjs'), [
    "import { connect, QuireError, isQuireError, ERROR_CODES } from 'quire'",
    "const err = new QuireError('NO_SUCH_LEDGER', 'x')",
    "console.log(typeof connect, isQuireError(err, 'NO_SUCH_LEDGER'), Object.keys(ERROR_CODES).length > 10)",
  ].join('\n'))
  assert.is(ok(await node(['esm.mjs'], clientApp), 'esm.mjs').stdout.trim(), 'function true true')
  writeFileSync(path.join(clientApp, 'cjs.cjs'), [
    "const { connect, QuireError } = require('quire')",
    'console.log(typeof connect, typeof QuireError)',
  ].join('\n'))
  const cjs = ok(await node(['cjs.cjs'], clientApp), 'cjs.cjs')
  assert.is(cjs.stdout.trim(), 'function function')
})

pkg('a TypeScript app (tsc --init, module nodenext) type-checks and builds against the shipped declarations', async () => {
  // The client app itself, made an ES module project (its .mjs and .cjs files say their kind).
  const app = clientApp
  ok(await run('npm', ['pkg', 'set', 'type=module'], app), 'npm pkg set')
  ok(await run(TSC, ['--init'], app), 'tsc --init')
  const tsconfig = path.join(app, 'tsconfig.json')
  writeFileSync(tsconfig, readFileSync(tsconfig, 'utf8').replace(/"module":\s*"[^"]*"/, '"module": "nodenext"'))
  assert.match(readFileSync(tsconfig, 'utf8'), /"module": "nodenext"/)
  writeFileSync(path.join(app, 'index.ts'), [
    "import { connect, QuireError, isQuireError, type ErrorCode, type LedgerMetadata, type QuireClient } from 'quire'",
    "const code: ErrorCode = 'NO_SUCH_LEDGER'",
    'const ensemble = (m: LedgerMetadata): number => m.ensembleSize',
    'const open = (c: QuireClient) => c.close()',
    'console.log(typeof connect, isQuireError(new QuireError(code, "x")), typeof ensemble, typeof open)',
  ].join('\n'))
  ok(await run(TSC, ['-p', '.'], app), 'tsc -p .')
  assert.is(ok(await node(['index.js'], app), 'node index.js').stdout.trim(), 'function true function function')
  assert.is(ok(await node(['esm.mjs'], app), 'esm.mjs in a module project').stdout.trim(), 'function true true')
  // The declarations are really read: a code that is not one fails to type-check.
  writeFileSync(path.join(app, 'wrong.ts'), "import type { ErrorCode } from 'quire'\nexport const c: ErrorCode = 'NOT_A_CODE'\n")
  const wrong = await run(TSC, ['-p', '.'], app)
  assert.is.not(wrong.code, 0)
  assert.match(wrong.stdout, /wrong\.ts.*NOT_A_CODE/)
})

pkg('an unsupported Node.js gets UNSUPPORTED_NODE at import; a server part gets SERVER_ONLY', async () => {
  const engines = (JSON.parse(readFileSync(path.join(clientApp, 'node_modules', 'quire', 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node
  assert.is(engines, `>=${MIN_NODE_MAJOR}`, 'client/nodeVersion.ts and engines.node disagree')
  // Node.js 18 as the client sees it: process.versions.node replaced before the app is loaded.
  writeFileSync(path.join(clientApp, 'node18.mjs'), "Object.defineProperty(process, 'versions', { value: { ...process.versions, node: '18.19.0' } })\n")
  const old = await node(['--import', './node18.mjs', 'esm.mjs'], clientApp)
  assert.is.not(old.code, 0)
  assert.match(old.stderr, /quire needs Node\.js 20 or newer; this is Node\.js 18\.19\.0/)
  assert.match(old.stderr, /UNSUPPORTED_NODE/)
  writeFileSync(path.join(clientApp, 'bookie.mjs'), "try { await import('quire/bookie') } catch (err) { console.log(err.code, err.message) }\n")
  const bookie = ok(await node(['bookie.mjs'], clientApp), 'bookie.mjs').stdout
  assert.match(bookie, /^SERVER_ONLY .*quire-server/)
})

pkg('tail$ and append$ need rxjs: PEER_DEPENDENCY_MISSING without it, the app\'s own rxjs with it', async () => {
  const probe = [
    "import { rxjs } from 'quire/internal/client/rx.js'",
    'try {',
    "  const { Observable } = await import('rxjs')",
    "  console.log(rxjs().Observable === Observable ? 'same Observable' : 'another Observable')",
    "} catch (err) { console.log(err.code ?? err.message) }",
  ].join('\n')
  writeFileSync(path.join(clientApp, 'rx.mjs'), probe)
  assert.is(ok(await node(['rx.mjs'], clientApp), 'rx.mjs without rxjs').stdout.trim(), 'ERR_MODULE_NOT_FOUND')
  writeFileSync(path.join(clientApp, 'rx-missing.mjs'), "import { rxjs } from 'quire/internal/client/rx.js'\ntry { rxjs() } catch (err) { console.log(err.code, err.message) }\n")
  assert.match(ok(await node(['rx-missing.mjs'], clientApp), 'rx-missing.mjs').stdout, /^PEER_DEPENDENCY_MISSING .*npm install rxjs/)
  const peer = (JSON.parse(readFileSync(path.join(clientApp, 'node_modules', 'quire', 'package.json'), 'utf8')) as { peerDependencies: Record<string, string> }).peerDependencies
  ok(await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', `rxjs@${peer.rxjs}`], clientApp), 'npm install rxjs')
  assert.is(ok(await node(['rx.mjs'], clientApp), 'rx.mjs with rxjs').stdout.trim(), 'same Observable')
})

pkg('a server app: quire --version and --help run the compiled CLI', async () => {
  const app = mkdtempSync(path.join(os.tmpdir(), 'quire-server-app-'))
  dirs.push(app)
  await installApp(app, [tarballs.client, tarballs.server])
  const bin = path.join(app, 'node_modules', 'quire-server', 'cli', 'quire.mjs')
  const server = path.join(app, 'node_modules', 'quire-server')
  for (const f of ['cli/main.js', 'nats.conf', 'nats-secure.conf', 'inspector/index.html', 'README.md', 'LICENSE', 'CHANGELOG.md']) assert.ok(existsSync(path.join(server, f)), `quire-server/${f} missing`)
  for (const f of ['test', 'sim', 'bench', 'client', 'cli/main.ts']) assert.not.ok(existsSync(path.join(server, f)), `quire-server/${f} shipped`)
  assert.not.ok(existsSync(path.join(app, 'node_modules', 'tsx')), 'tsx installed for quire-server')
  assert.is(ok(await run('npx', ['quire', '--version'], app), 'npx quire --version').stdout.trim(), VERSION)
  const help = ok(await node([bin, '--help'], app), 'quire --help').stdout
  for (const cmd of ['node', 'bookie', 'sandbox', 'inspector', 'shell']) assert.match(help, new RegExp(`^  ${cmd}\\b`, 'm'), `--help lists ${cmd}`)
  // CPU of the command itself (no npx): the process's own user+sys, written as it exits.
  writeFileSync(path.join(app, 'cpu.mjs'), "import { writeFileSync } from 'node:fs'\nprocess.on('exit', () => { const u = process.cpuUsage(); writeFileSync(process.env.CPU_OUT, `${(u.user + u.system) / 1e6}`) })\n")
  for (const args of [['--version'], ['--help']]) {
    const out = path.join(app, 'cpu.txt')
    process.env.CPU_OUT = out
    ok(await node(['--import', './cpu.mjs', bin, ...args], app), `quire ${args.join(' ')}`)
    delete process.env.CPU_OUT
    console.log(`  quire ${args.join(' ')}: ${Number(readFileSync(out, 'utf8')).toFixed(3)} s CPU (user+sys)`)
  }
})

pkg.run()
