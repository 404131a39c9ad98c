#!/usr/bin/env -S node --initial-old-space-size=128
// The `quire` command. In the quire-server package it runs the compiled CLI (cli/main.js); in a
// checkout, the TypeScript sources through tsx's loader. Before loading either, this file does what
// must not depend on them: it refuses a Node.js older than package.json's `engines` with one line
// (not a stack trace from a missing API or native module), answers `--version` without loading
// the CLI, and ends the process quietly when the reader of stdout or stderr goes away
// (`quire ... | head`), for every command.
// The shebang gives every command's heap 128 MB of old generation before its first full
// collection, for the roles' sake (cli/cluster.ts ROLE_NODE_FLAGS, docs/operations.md).
// Only `node:` built-ins are imported statically: static imports run before any of this code.
import { existsSync, readFileSync } from 'node:fs'

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))

// engines.node is ">=N"; a Node.js below N is refused before anything else can fail on it.
const minMajor = Number(/^>=\s*(\d+)/.exec(pkg.engines?.node ?? '')?.[1] ?? 0)
if (Number(process.versions.node.split('.')[0]) < minMajor) {
  process.stderr.write(`quire needs Node.js ${pkg.engines.node}; this is Node.js ${process.versions.node}\n`)
  process.exit(1)
}

const args = process.argv.slice(2)
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  process.stdout.write(`${pkg.version}\n`)
  process.exit(0)
}

// The reader closed the pipe: nothing more can be printed, so stop as `head` expects (SIGPIPE,
// which Node ignores, would have ended a C program here). A running role that drains on SIGTERM
// (node, bookie, sandbox, inspector) and whose log reader is gone drains the same way instead of
// stopping mid-work.
let pipeClosed = false
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code !== 'EPIPE') throw err
    if (pipeClosed) return
    pipeClosed = true
    if (process.listenerCount('SIGTERM') > 0) process.kill(process.pid, 'SIGTERM')
    else process.exit(0)
  })
}

// An installed quire-server ships the compiled main.js next to this file; a checkout has only the
// TypeScript source, run through tsx (a devDependency: it is installed in a checkout, never for a
// package user).
if (existsSync(new URL('./main.js', import.meta.url))) {
  await import('./main.js')
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import('./main.ts')
}
