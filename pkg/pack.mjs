#!/usr/bin/env node
// Builds Quire and makes its two npm packages from that one build (pkg/README.md says why two).
//
//   node pkg/pack.mjs                 compile into dist/, stage dist/pkg/{quire,quire-server}, npm pack into dist/
//   node pkg/pack.mjs --build-only    compile into dist/ only (`npm run build`)
//   node pkg/pack.mjs --out <dir>     the same with <dir> in place of dist/ (tests pack into a temp dir
//                                     so that they never race over the checkout's dist/)
//
// The client package `quire` is the static import closure of client/index.ts and client/internal.ts,
// found by walking the compiled files' imports (the .js and the .d.ts of each module, so type-only
// imports count). Its dependencies are exactly the external packages that closure imports; a
// closure that reaches a server-only package fails the pack, since a client app would then install
// (or fail to load) what only bookies need. `quire-server` is every other compiled module, with each
// import that lands in the client closure rewritten to `quire/internal/<path>.js`, so both packages
// share one instance of each client module (QuireError's instanceof holds across them).
//
// Invariants checked here, each failing the pack with a message: every relative import resolves
// to a compiled module that ships; every bare import is a node built-in or a dependency in the root
// package.json; relative specifiers in .d.ts files end in .js (TypeScript 7 keeps `.ts` there).
// Only node: built-ins are used, so this runs before anything is installed beyond TypeScript.
import { execFileSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
/** Source folders compiled and shipped; tests, the simulator and the benchmark stay in the checkout. */
const SHIPPED_DIRS = ['actors', 'machines', 'storage', 'transport', 'client', 'cli']
/**
 * Roots of the client closure; client/internal.ts is optional (skipped when absent).
 * client/serverOnly.ts is what the server subpaths below load: a SERVER_ONLY QuireError.
 */
const CLIENT_ROOTS = ['client/index.js', 'client/internal.js', 'client/serverOnly.js']
/** Packages a client must never load: a closure importing one fails the pack. */
const SERVER_ONLY = ['rocksdb-native', 'fastify', '@fastify/', 'pino', 'commander', 'playwright-core', 'tsx', 'esbuild', 'prom-client', 'hdr-histogram-js']
/** Dynamic imports of modules that are not shipped (the benchmark is a checkout-only command). */
const UNSHIPPED_DYNAMIC = ['bench/']
/** Subpaths of `quire` that name server parts: each loads a module that says to install quire-server. */
const SERVER_SUBPATHS = ['./server', './bookie', './node', './cli', './cli/*', './actors/*', './admin', './inspector', './autorecovery']
const COMMON_FILES = ['LICENSE', 'CHANGELOG.md']
/**
 * The client's optional peer dependencies: loaded only by the APIs that need them (rxjs by tail$
 * and append$, client/rx.ts), from the application's own copy, so an app that never calls them
 * installs none, and one that does shares its instance with the client.
 */
const OPTIONAL_PEERS = ['rxjs']

class PackError extends Error {}

function main() {
  const argv = process.argv.slice(2)
  const outIdx = argv.indexOf('--out')
  const out = path.resolve(outIdx >= 0 ? argv[outIdx + 1] ?? '' : path.join(ROOT, 'dist'))
  build(out)
  if (argv.includes('--build-only')) return
  const rootPkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'))
  const graph = readGraph(out)
  const client = clientClosure(graph)
  const server = [...graph.keys()].filter((m) => !client.has(m)).sort()
  const stage = path.join(out, 'pkg')
  rmSync(stage, { recursive: true, force: true })
  const clientDir = stageClient(out, path.join(stage, 'quire'), graph, client, rootPkg)
  const serverDir = stageServer(out, path.join(stage, 'quire-server'), graph, client, server, rootPkg)
  for (const dir of [clientDir, serverDir]) {
    const [info] = JSON.parse(execFileSync('npm', ['pack', dir, '--pack-destination', out, '--json', '--loglevel=error'], { cwd: out, encoding: 'utf8' }))
    console.log(`${info.name}@${info.version}: ${path.join(out, info.filename)}  ${kb(info.size)} packed, ${kb(info.unpackedSize)} unpacked, ${info.entryCount} files`)
  }
}

const kb = (n) => `${(n / 1000).toFixed(1)} kB`  // as npm counts

/** Compiles the shipped folders with tsconfig.build.json into `out` (emptied first: no stale modules). */
function build(out) {
  mkdirSync(out, { recursive: true })
  for (const d of [...SHIPPED_DIRS, 'bench', 'pkg']) rmSync(path.join(out, d), { recursive: true, force: true })
  for (const f of readdirSync(out).filter((n) => n.endsWith('.tgz'))) rmSync(path.join(out, f))
  const tsc = path.join(ROOT, 'node_modules', '.bin', process.platform === 'win32' ? 'tsc.cmd' : 'tsc')
  try {
    execFileSync(tsc, ['-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', out], { cwd: ROOT, stdio: 'inherit' })
  } catch {
    throw new PackError('the build failed: tsc -p tsconfig.build.json reported the errors above')
  }
}

function* walkFiles(dir) {
  if (!existsSync(dir)) return
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) yield* walkFiles(p)
    else yield p
  }
}

/**
 * Specifiers a compiled file imports: `from '...'`, `import '...'`, `import('...')` (dynamic in .js,
 * type queries in .d.ts). Comment lines are skipped: compiled output keeps the sources' comments,
 * which mention paths in prose.
 */
function importsOf(text) {
  const code = text.split('\n').filter((l) => !/^\s*(\/\/|\/\*|\*)/.test(l)).join('\n')
  const found = []
  for (const re of [/(?:^|[\s}*])from\s*(['"])([^'"\s]+)\1/gm, /^\s*import\s*(['"])([^'"\s]+)\1/gm]) {
    for (const m of code.matchAll(re)) found.push({ spec: m[2], dynamic: false })
  }
  for (const m of code.matchAll(/\bimport\s*\(\s*(['"])([^'"\s]+)\1\s*\)/g)) found.push({ spec: m[2], dynamic: true })
  return found
}

const isBuiltin = (spec) => spec.startsWith('node:') || builtinModules.includes(spec)
const packageOf = (spec) => spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/')

/**
 * Every compiled module of the shipped folders (path relative to the build, e.g. `client/index.js`)
 * with the modules it imports (relative, resolved), the packages it imports, and the .d.ts text with
 * `.ts` specifiers made `.js`.
 */
function readGraph(out) {
  const graph = new Map()
  for (const dir of SHIPPED_DIRS) {
    for (const file of walkFiles(path.join(out, dir))) {
      if (!file.endsWith('.js')) continue
      const mod = path.relative(out, file).split(path.sep).join('/')
      const js = readFileSync(file, 'utf8')
      const dtsFile = file.replace(/\.js$/, '.d.ts')
      const dts = existsSync(dtsFile) ? readFileSync(dtsFile, 'utf8').replace(/((?:^|[\s}*])from\s*|\bimport\s*\(\s*|^\s*import\s*)(['"])(\.\.?\/[^'"\s]+)\.ts\2/gm, '$1$2$3.js$2') : null
      const modules = new Set()
      const packages = new Set()
      for (const { spec, dynamic } of [...importsOf(js), ...(dts === null ? [] : importsOf(dts))]) {
        if (isBuiltin(spec)) continue
        if (!spec.startsWith('.')) {
          packages.add(packageOf(spec))
          continue
        }
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(mod), spec))
        if (dynamic && UNSHIPPED_DYNAMIC.some((p) => target.startsWith(p))) continue
        if (!target.endsWith('.js') || !existsSync(path.join(out, target)) || !SHIPPED_DIRS.includes(target.split('/')[0])) {
          throw new PackError(`${mod} imports '${spec}', which is not a shipped compiled module (${target})`)
        }
        modules.add(target)
      }
      graph.set(mod, { js, dts, modules, packages })
    }
  }
  return graph
}

/** The modules reachable from the client roots, failing on any server-only package on the way. */
function clientClosure(graph) {
  const seen = new Set()
  const path_ = new Map()
  const queue = CLIENT_ROOTS.filter((r) => graph.has(r))
  if (!queue.includes('client/index.js')) throw new PackError('client/index.js was not built')
  for (const r of queue) { seen.add(r); path_.set(r, [r]) }
  while (queue.length > 0) {
    const mod = queue.shift()
    const node = graph.get(mod)
    for (const pkg of node.packages) {
      if (SERVER_ONLY.some((s) => (s.endsWith('/') ? pkg.startsWith(s) : pkg === s))) {
        throw new PackError(`the client package would import the server-only package '${pkg}': ${path_.get(mod).join(' -> ')}. Move that import out of the client's import closure (client/index.ts, client/internal.ts).`)
      }
    }
    for (const dep of node.modules) {
      if (seen.has(dep)) continue
      seen.add(dep)
      path_.set(dep, [...path_.get(mod), dep])
      queue.push(dep)
    }
  }
  return seen
}

/** Versions from the root package.json for the packages these modules import; unknown ones fail. */
function dependenciesOf(mods, graph, rootPkg, what) {
  const deps = {}
  for (const mod of mods) {
    for (const pkg of graph.get(mod).packages) {
      if (pkg === 'quire') continue
      const version = rootPkg.dependencies?.[pkg]
      if (version === undefined) {
        const where = rootPkg.devDependencies?.[pkg] !== undefined ? 'a devDependency in package.json' : 'not in package.json'
        throw new PackError(`${what}: ${mod} imports '${pkg}', which is ${where}; shipped code may import only dependencies`)
      }
      deps[pkg] = version
    }
  }
  return Object.fromEntries(Object.entries(deps).sort(([a], [b]) => a.localeCompare(b)))
}

function writeModule(dir, mod, js, dts) {
  const file = path.join(dir, mod)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(file, js)
  if (dts !== null) writeFileSync(file.replace(/\.js$/, '.d.ts'), dts)
}

function copyCommon(dir, readme) {
  for (const f of COMMON_FILES) cpSync(path.join(ROOT, f), path.join(dir, f))
  cpSync(path.join(ROOT, 'pkg', readme), path.join(dir, 'README.md'))
}

/** `files` for the staged manifest: what the staging folder holds at its top level. */
const topLevel = (dir) => readdirSync(dir).filter((n) => n !== 'package.json').map((n) => (statSync(path.join(dir, n)).isDirectory() ? `${n}/` : n)).sort()

function manifestBase(rootPkg) {
  const { version, description, license, engines, repository, homepage, keywords } = rootPkg
  return { version, description, license, type: 'module', engines, ...(repository ? { repository } : {}), ...(homepage ? { homepage } : {}), ...(keywords ? { keywords } : {}) }
}

/** The client's imports split into dependencies and optional peer dependencies. */
function clientDependencies(all) {
  const dependencies = Object.fromEntries(Object.entries(all).filter(([p]) => !OPTIONAL_PEERS.includes(p)))
  const peers = Object.entries(all).filter(([p]) => OPTIONAL_PEERS.includes(p))
  if (peers.length === 0) return { dependencies }
  return {
    dependencies,
    peerDependencies: Object.fromEntries(peers),
    peerDependenciesMeta: Object.fromEntries(peers.map(([p]) => [p, { optional: true }])),
  }
}

function stageClient(out, dir, graph, client, rootPkg) {
  for (const mod of client) writeModule(dir, mod, graph.get(mod).js, graph.get(mod).dts)
  copyCommon(dir, 'quire.README.md')
  const entry = (m) => ({ types: `./${m}.d.ts`, default: `./${m}.js` })
  const exports = {
    '.': entry('client/index'),
    ...(client.has('client/internal.js') ? { './internal': entry('client/internal') } : {}),
    './internal/*': './*',
    './package.json': './package.json',
    ...(client.has('client/serverOnly.js') ? Object.fromEntries(SERVER_SUBPATHS.map((s) => [s, './client/serverOnly.js'])) : {}),
  }
  const manifest = {
    name: 'quire',
    ...manifestBase(rootPkg),
    main: './client/index.js',
    types: './client/index.d.ts',
    exports,
    files: topLevel(dir),
    ...clientDependencies(dependenciesOf(client, graph, rootPkg, 'quire')),
  }
  writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  return dir
}

function stageServer(out, dir, graph, client, server, rootPkg) {
  for (const mod of server) {
    const { js, dts } = graph.get(mod)
    // Imports landing in the client closure go through the quire package's deep paths.
    const rewrite = (text) => text.replace(/((?:^|[\s}*])from\s*|\bimport\s*\(\s*|^\s*import\s*)(['"])(\.\.?\/[^'"\s]+)\2/gm, (all, pre, q, spec) => {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(mod), spec))
      return client.has(target) ? `${pre}${q}quire/internal/${target}${q}` : all
    })
    writeModule(dir, mod, rewrite(js), dts === null ? null : rewrite(dts))
  }
  cpSync(path.join(ROOT, 'cli', 'quire.mjs'), path.join(dir, 'cli', 'quire.mjs'))
  cpSync(path.join(ROOT, 'nats.conf'), path.join(dir, 'nats.conf'))
  cpSync(path.join(ROOT, 'nats-secure.conf'), path.join(dir, 'nats-secure.conf'))
  cpSync(path.join(ROOT, 'inspector'), path.join(dir, 'inspector'), { recursive: true })
  copyCommon(dir, 'quire-server.README.md')
  const manifest = {
    name: 'quire-server',
    ...manifestBase(rootPkg),
    bin: { quire: 'cli/quire.mjs' },
    files: topLevel(dir),
    dependencies: { quire: rootPkg.version, ...dependenciesOf(server, graph, rootPkg, 'quire-server') },
  }
  writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  return dir
}

try {
  main()
} catch (err) {
  if (!(err instanceof PackError)) throw err
  process.stderr.write(`pack: ${err.message}\n`)
  process.exit(1)
}
