// `quire --help` and `quire <command> --help` list every command and option, and stay cheap: the
// help runs in a child process whose module resolutions are recorded (a module.register hook
// registered with --import, before quire.mjs registers tsx), and none of them may be a role,
// storage, transport or client module, nor RocksDB, NATS, fastify, pino, prom-client, xstate or
// another package only a running command needs. This structural check, not a timing, is what
// keeps help near Node's own start-up time (issue 13 asks for at most 0.3 s of CPU, compiled).
// Suite `cli-help-compiled` compiles the CLI with tsc into a temporary folder without bench/ (as
// the quire-server package is) and checks the same there, plus `quire bench` saying in one line
// that it runs from a source checkout, exit 1, no stack trace.

import { execFile } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { suite } from 'uvu'
import * as assert from 'uvu/assert'
import { QUIRE_BIN, REPO_ROOT } from '../../cli/cluster.ts'
import { SETTINGS, SETTING_NAMES } from '../../cli/settings.ts'

const HOOKS = `import { appendFileSync } from 'node:fs'
let out
export function initialize(data) { out = data.out }
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context)
  appendFileSync(out, r.url + '\\n')
  return r
}
`
const REGISTER = `import { register } from 'node:module'
register(new URL('./hooks.mjs', import.meta.url), { data: { out: process.env.QUIRE_TEST_RESOLVED } })
`

/** Packages only a running command needs; `--help` must resolve none of them. */
const HEAVY_PACKAGES = [
  'rocksdb-native', '@nats-io/', 'fastify', 'pino', 'prom-client', 'xstate', 'msgpackr', 'rxjs', 'hdr-histogram-js', '@node-rs/',
]
/** Folders of the repository (or of a compiled copy) that `--help` must not load. */
const HEAVY_FOLDERS = ['actors', 'storage', 'transport', 'client', 'bench']

const SHELL_COMMANDS = [
  'updatecookie', 'bookieformat', 'bookieinfo', 'listbookies', 'bookieintegritycheck', 'bookiesanity', 'readjournal',
  'listunderreplicated', 'whoisauditor', 'triggeraudit', 'autorecovery', 'decommissionbookie',
  'listledgers', 'ledgermetadata', 'readledger', 'tail', 'deleteledger', 'recover', 'simpletest',
]

const tmp = mkdtempSync(path.join(os.tmpdir(), 'quire-clihelp-'))
writeFileSync(path.join(tmp, 'hooks.mjs'), HOOKS)
writeFileSync(path.join(tmp, 'register.mjs'), REGISTER)
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }))
let runs = 0

interface Run { code: number | null; stdout: string; stderr: string; resolved: string[] }

/** `node [--import recorder] <bin> ...args`, with every module URL resolved on the way. */
function quire(args: string[], bin = QUIRE_BIN): Promise<Run> {
  const out = path.join(tmp, `resolved-${++runs}.txt`)
  writeFileSync(out, '')
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('QUIRE_')))
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', pathToFileURL(path.join(tmp, 'register.mjs')).href, bin, ...args],
      { cwd: REPO_ROOT, env: { ...env, QUIRE_TEST_RESOLVED: out }, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0
        const resolved = [...new Set(readFileSync(out, 'utf8').split('\n').filter((l) => l.length > 0))]
        resolve({ code, stdout: String(stdout), stderr: String(stderr), resolved })
      })
  })
}

const show = (r: Run): string => `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`

/** The modules of `r` that help must not load; `root` is the tree the CLI ran from. */
function heavyModules(r: Run, root: string): string[] {
  const rootUrl = pathToFileURL(root).href + '/'
  return r.resolved.filter((url) => {
    const pkg = /\/node_modules\/(.*)$/.exec(url)?.[1]
    if (pkg !== undefined) return HEAVY_PACKAGES.some((p) => pkg.startsWith(p.endsWith('/') ? p : `${p}/`))
    return url.startsWith(rootUrl) && HEAVY_FOLDERS.includes(url.slice(rootUrl.length).split('/')[0]!)
  })
}

/** Help ran, through the recorder, and loaded nothing of what only a running command needs. */
function assertLight(r: Run, root: string, mainFile: string): void {
  assert.is(r.code, 0, show(r))
  // The recorder works: it saw the CLI itself and commander.
  assert.ok(r.resolved.includes(pathToFileURL(path.join(root, 'cli', mainFile)).href), `cli/${mainFile} not among\n${r.resolved.join('\n')}`)
  assert.ok(r.resolved.some((u) => u.includes('/node_modules/commander/')), 'commander not resolved')
  assert.equal(heavyModules(r, root), [], 'help loaded modules only a running command needs')
}

/** The long flag of each option line of a help text (`  -V, --version  ...` gives --version). */
function flagsOf(help: string): string[] {
  return [...help.matchAll(/^\s+(?:-\w, )?(--[\w-]+)/gm)].map((m) => m[1]!)
}

/** The command names listed under `Commands:`. */
function commandsOf(help: string): string[] {
  const section = help.split(/^Commands:$/m)[1] ?? ''
  return [...section.matchAll(/^ {2}([a-z]+)/gm)].map((m) => m[1]!)
}

const help = suite('cli-help')

help('quire --help lists every command and --version, and loads nothing a command needs to run', async () => {
  const r = await quire(['--help'])
  assertLight(r, REPO_ROOT, 'main.ts')
  assert.equal(commandsOf(r.stdout).sort(), ['bench', 'bookie', 'help', 'inspector', 'log', 'node', 'sandbox', 'shell'], r.stdout)
  for (const f of ['--version', '--help']) assert.ok(flagsOf(r.stdout).includes(f), `${f} missing\n${r.stdout}`)
})

help('quire shell --help lists every shell command and loads nothing a command needs to run', async () => {
  const r = await quire(['shell', '--help'])
  assertLight(r, REPO_ROOT, 'main.ts')
  assert.equal(commandsOf(r.stdout).sort(), [...SHELL_COMMANDS, 'help'].sort(), r.stdout)
})

help('quire log --help lists every log command and loads nothing a command needs to run', async () => {
  const r = await quire(['log', '--help'])
  assertLight(r, REPO_ROOT, 'main.ts')
  assert.equal(commandsOf(r.stdout).sort(), ['append', 'create', 'delete', 'help', 'info', 'list', 'subscribers', 'tail', 'truncate'], r.stdout)
  const tail = await quire(['log', 'tail', '--help'])
  assertLight(tail, REPO_ROOT, 'main.ts')
  for (const f of ['--from', '--txid', '--subscriber', '--nats', '--nats-user']) assert.ok(flagsOf(tail.stdout).includes(f), `${f} missing\n${tail.stdout}`)
})

help('quire node --help lists a flag for every setting, --config and --print-settings, and loads nothing a node needs to run', async () => {
  const r = await quire(['node', '--help'])
  assertLight(r, REPO_ROOT, 'main.ts')
  const flags = flagsOf(r.stdout)
  // A secret has no flag (argv shows in ps): env or config only.
  const expected = [...SETTING_NAMES.flatMap((n) => { const f = SETTINGS[n].flag; return f === undefined ? [] : [/--[\w-]+/.exec(f)![0]] }), '--config', '--print-settings']
  for (const f of expected) assert.ok(flags.includes(f), `${f} missing\n${r.stdout}`)
})

help('the help of the other commands loads nothing a command needs to run either', async () => {
  for (const args of [['bookie', '--help'], ['sandbox', '--help'], ['inspector', '--help'], ['bench', '--help'],
    ['shell', 'readjournal', '--help'], ['shell', 'triggeraudit', '--help'], ['help', 'shell']]) {
    const r = await quire(args)
    assertLight(r, REPO_ROOT, 'main.ts')
    assert.ok(r.stdout.startsWith('Usage: quire '), `${args.join(' ')}\n${show(r)}`)
  }
  const r = await quire(['shell', 'triggeraudit', '--help'])
  assert.ok(flagsOf(r.stdout).includes('--timeout-ms') && flagsOf(r.stdout).includes('--nats'), r.stdout)
})

help.run()

// --- compiled, as in the quire-server package ------------------------------------------------

const compiled = suite('cli-help-compiled')
const built = path.join(tmp, 'built')

compiled.before(async () => {
  // The CLI's import closure, compiled as the build does (type checks are the build's job and
  // `npm test`'s, not this suite's), into a tree shaped like the package: no bench/.
  const config = path.join(tmp, 'tsconfig.json')
  writeFileSync(config, JSON.stringify({
    extends: path.join(REPO_ROOT, 'tsconfig.json'),
    compilerOptions: { noEmit: false, noCheck: true, types: [], rewriteRelativeImportExtensions: true, rootDir: REPO_ROOT, outDir: built },
    include: [], files: [path.join(REPO_ROOT, 'cli', 'main.ts')],
  }))
  await new Promise<void>((resolve) => {
    execFile(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', config], { cwd: REPO_ROOT, timeout: 300_000 },
      () => resolve())
  })
  assert.ok(existsSync(path.join(built, 'cli', 'main.js')), 'tsc did not emit cli/main.js')
  rmSync(path.join(built, 'bench'), { recursive: true, force: true })
  for (const f of ['package.json', 'cli/quire.mjs']) copyFileSync(path.join(REPO_ROOT, f), path.join(built, f))
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(built, 'node_modules'), 'dir')
})

compiled('compiled: quire --help, shell --help and node --help load nothing a command needs to run', async () => {
  const bin = path.join(built, 'cli', 'quire.mjs')
  for (const args of [['--help'], ['shell', '--help'], ['node', '--help']]) {
    const r = await quire(args, bin)
    assertLight(r, built, 'main.js')
    assert.not.ok(r.resolved.some((u) => u.includes('/node_modules/tsx/')), `tsx loaded for the compiled CLI\n${r.resolved.join('\n')}`)
  }
})

compiled('compiled without bench/: quire bench says in one line where it runs, exit 1', async () => {
  const r = await quire(['bench', '--quick'], path.join(built, 'cli', 'quire.mjs'))
  assert.is(r.code, 1, show(r))
  assert.is(r.stderr, 'quire bench runs from a source checkout: npm run bench\n', show(r))
  assert.is(r.stdout, '', show(r))
})

compiled.run()
