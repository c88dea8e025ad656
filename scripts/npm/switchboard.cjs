#!/usr/bin/env node
'use strict'
// The `switchboard` command of the npm package: runs the prebuilt binary of this platform, which npm
// installed as one of the package's optional dependencies (the one whose os, cpu and libc match).
const { spawn } = require('node:child_process')
const { accessSync, chmodSync, constants } = require('node:fs')

/** Release target → platform package; written by scripts/release.ts. */
const PACKAGES = __PACKAGES__

function isMusl() {
  // Node reports the glibc it runs on; a Linux without one is musl (Alpine and the like).
  const header = process.report && typeof process.report.getReport === 'function' ? process.report.getReport().header : undefined
  return !(header && header.glibcVersionRuntime)
}

function target() {
  const os = process.platform === 'win32' ? 'windows' : process.platform
  return `${os}-${process.arch}${process.platform === 'linux' && isMusl() ? '-musl' : ''}`
}

function fail(message) {
  process.stderr.write(`switchboard: ${message}\n`)
  process.exit(1)
}

function binaryPath() {
  if (process.env.SWITCHBOARD_BINARY_PATH) return process.env.SWITCHBOARD_BINARY_PATH
  const wanted = target()
  const name = PACKAGES[wanted]
  if (name === undefined) fail(`no prebuilt binary for ${wanted} (prebuilt: ${Object.keys(PACKAGES).join(', ')}); SWITCHBOARD_BINARY_PATH names a binary to run instead`)
  const file = `${name}/bin/switchboard${process.platform === 'win32' ? '.exe' : ''}`
  try {
    return require.resolve(file)
  } catch {
    return fail(`${name} is not installed: npm skipped this optional dependency (--omit=optional, --no-optional, or a lockfile made on another platform); install again with optional dependencies`)
  }
}

const binary = binaryPath()
if (process.platform !== 'win32') {
  try {
    accessSync(binary, constants.X_OK)
  } catch {
    chmodSync(binary, 0o755) // a package manager that dropped the mode bit
  }
}
const child = spawn(binary, process.argv.slice(2), { stdio: 'inherit' })
child.on('error', (error) => fail(`cannot run ${binary}: ${error.message}`))
// A supervisor's SIGTERM or SIGHUP goes to this process: pass it on. Ctrl-C in a terminal already reaches
// the binary too (the whole foreground group gets SIGINT), and a second SIGINT would mean "exit now" to it.
for (const signal of ['SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal))
process.on('SIGINT', () => {})
child.on('exit', (code, signal) => {
  if (signal) {
    process.removeAllListeners(signal)
    process.kill(process.pid, signal)
  } else process.exit(code === null ? 1 : code)
})
