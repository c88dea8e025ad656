/**
 * Builds the single binary: `bun build --compile` with the code compiled
 * ahead to bytecode, laid out in the order the binary runs it at startup.
 * That order is recorded by the binary itself: a first build is started
 * once (memory backend, a free port, one /healthz), writes the functions it
 * ran as it ran them, and the binary is built again with that order, so the
 * pages a start touches sit together and fewer of the binary's pages become
 * resident. The order is recorded afresh at every build, so it always
 * matches the code.
 *
 *   bun scripts/build.ts [--outfile dist/switchboard] [--target linux-arm64]
 *                        [--order-file FILE] [--no-order] [--no-bytecode]
 *
 * `--target` builds for another platform (see TARGETS); its runtime comes
 * from the npm registry. A binary of another platform cannot be started here
 * to record its order, so it is laid out by `--order-file`, an order one of
 * this host's builds recorded (the functions a start runs are the same on
 * every platform), or in the bundler's order without it. `--no-order` and
 * `--no-bytecode` build the variants the footprint benchmark compares the
 * shipped build with. The commit and target are written into the binary for
 * `switchboard --version`.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

import { DOCS_ASSETS } from '../src/http/docs'

export const ROOT = resolve(import.meta.dir, '..')
const ENTRY = resolve(ROOT, 'src/main.ts')

/** Release targets and the Bun runtime each is built on. `-baseline`: x64 CPUs without AVX2. */
export const TARGETS: Record<string, string> = {
  'linux-x64': 'bun-linux-x64',
  'linux-arm64': 'bun-linux-arm64',
  'linux-x64-musl': 'bun-linux-x64-musl',
  'linux-arm64-musl': 'bun-linux-arm64-musl',
  'darwin-x64': 'bun-darwin-x64',
  'darwin-arm64': 'bun-darwin-arm64',
  'windows-x64': 'bun-windows-x64',
  'linux-x64-baseline': 'bun-linux-x64-baseline',
  'linux-x64-musl-baseline': 'bun-linux-x64-musl-baseline',
  'darwin-x64-baseline': 'bun-darwin-x64-baseline',
  'windows-x64-baseline': 'bun-windows-x64-baseline',
}

/** The target of the Bun running this script: the one whose binaries can be started here. */
export function hostTarget(): string {
  const musl = process.platform === 'linux' && !existsSync('/lib64/ld-linux-x86-64.so.2') && !existsSync('/lib/ld-linux-aarch64.so.1')
  const platform = process.platform === 'win32' ? 'windows' : process.platform
  return `${platform}-${process.arch}${musl ? '-musl' : ''}`
}

/** The commit the tree is at (12 hex digits, "-dirty" with uncommitted changes), or "unknown" outside git. */
export function commitOf(root = ROOT): string {
  const head = Bun.spawnSync(['git', 'rev-parse', '--short=12', 'HEAD'], { cwd: root, stderr: 'ignore' })
  if (head.exitCode !== 0) return 'unknown'
  const status = Bun.spawnSync(['git', 'status', '--porcelain', '--untracked-files=no'], { cwd: root, stderr: 'ignore' })
  return `${head.stdout.toString().trim()}${status.stdout.toString().trim() === '' ? '' : '-dirty'}`
}

export interface BuildOptions {
  outfile: string
  target: string
  bytecode: boolean
  /** Record the order with a first build (host target only). */
  order: boolean
  /** An order file to lay the bytecode out by, instead of recording one. */
  orderFile?: string
  /** Where to keep the order a host build recorded (for the other targets of a release). */
  saveOrder?: string
  commit: string
}

const USAGE = 'usage: bun scripts/build.ts [--outfile PATH] [--target TARGET] [--order-file FILE] [--no-order] [--no-bytecode]'

function parseArgs(args: string[]): BuildOptions {
  const options: BuildOptions = { outfile: 'dist/switchboard', target: hostTarget(), bytecode: true, order: true, commit: commitOf() }
  const value = (i: number, name: string) => {
    if (args[i + 1] === undefined) throw new Error(`${name} needs a value; ${USAGE}`)
    return args[i + 1]!
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const [name, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    const take = () => inline ?? value(i++, name)
    if (name === '--outfile') options.outfile = take()
    else if (name === '--target') options.target = take()
    else if (name === '--order-file') options.orderFile = take()
    else if (arg === '--no-order') options.order = false
    else if (arg === '--no-bytecode') options.bytecode = false
    else throw new Error(`unknown argument ${JSON.stringify(arg)}; ${USAGE}`)
  }
  if (!(options.target in TARGETS)) throw new Error(`unknown target ${JSON.stringify(options.target)}; targets: ${Object.keys(TARGETS).join(', ')}`)
  return options
}

/** Runs `bun build --compile` into `outfile`; with `order`, lays the bytecode out by that order file. */
function compile(options: BuildOptions, outfile: string, order?: string): void {
  const assets = mkdtempSync(join(tmpdir(), 'switchboard-assets-'))
  const command = [
    process.execPath, 'build', ENTRY, ...gzipAssets(assets), '--asset-naming=[name].[ext]', '--compile', `--target=${TARGETS[options.target]}`, '--minify',
    `--define=SWITCHBOARD_COMMIT=${JSON.stringify(options.commit)}`, `--define=SWITCHBOARD_TARGET=${JSON.stringify(options.target)}`,
    ...(options.bytecode ? ['--bytecode'] : []), ...(order ? [`--bytecode-order=${order}`] : []), '--outfile', outfile,
  ]
  const built = Bun.spawnSync(command, { cwd: ROOT, stdout: 'inherit', stderr: 'inherit' })
  rmSync(assets, { recursive: true, force: true })
  if (built.exitCode !== 0) throw new Error(`bun build failed (exit ${built.exitCode}): ${command.join(' ')}`)
}

/** Writes the Swagger UI's assets gzipped into `dir` (embedded as files, served as they are: see src/http/docs.ts); returns their paths. */
function gzipAssets(dir: string): string[] {
  return Object.keys(DOCS_ASSETS).map((name) => {
    const file = join(dir, `${name}.gz`)
    writeFileSync(file, Bun.gzipSync(readFileSync(Bun.resolveSync(`swagger-ui-dist/${name}`, ROOT)), { level: 9 }))
    return file
  })
}

/**
 * Starts the binary once with BUN_BYTECODE_ORDER_OUT set, waits for its
 * listening line, asks /healthz once and stops it; resolves once the order
 * file is written. The environment is cleared of any SWITCHBOARD_* setting,
 * so the run is the default start.
 */
async function recordStartupOrder(binary: string, orderFile: string): Promise<void> {
  const env: Record<string, string> = { BUN_BYTECODE_ORDER_OUT: orderFile }
  for (const name of ['PATH', 'HOME', 'TMPDIR']) if (process.env[name] !== undefined) env[name] = process.env[name]!
  const child = Bun.spawn([binary, '--host', '127.0.0.1', '--port', '0', '--log-level', 'error'], { env, stdout: 'pipe', stderr: 'pipe' })
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  try {
    const reader = (child.stdout as ReadableStream<Uint8Array>).getReader()
    const decoder = new TextDecoder()
    let text = ''
    let url: string | undefined
    while (url === undefined) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`the binary exited before it listened: ${text}${await new Response(child.stderr).text()}`)
      text += decoder.decode(value, { stream: true })
      url = /listening on (\S+)/.exec(text)?.[1]
    }
    const health = await fetch(`${url}/healthz`)
    await health.arrayBuffer()
    if (health.status !== 200) throw new Error(`/healthz answered ${health.status}`)
    child.kill('SIGTERM')
    const code = await child.exited
    if (code !== 0) throw new Error(`the binary exited with ${code} on SIGTERM`)
  } finally {
    clearTimeout(killer)
    child.kill('SIGKILL')
  }
  if (!(await Bun.file(orderFile).exists())) throw new Error('the binary wrote no startup order')
}

/** Builds one binary; returns how its bytecode is laid out, for the build's own line and the release notes. */
export async function build(options: BuildOptions): Promise<'startup order (recorded)' | 'startup order (host record)' | 'bundler order' | 'no bytecode'> {
  const outfile = resolve(ROOT, options.outfile)
  if (!options.bytecode) {
    compile(options, outfile)
    return 'no bytecode'
  }
  if (options.orderFile !== undefined) {
    compile(options, outfile, resolve(ROOT, options.orderFile))
    process.stdout.write(`laid the bytecode out in startup order (${options.orderFile}): ${outfile}\n`)
    return 'startup order (host record)'
  }
  compile(options, outfile)
  if (!options.order) return 'bundler order'
  if (options.target !== hostTarget()) {
    process.stdout.write(`${options.target} cannot run here to record its startup order: bytecode left in the bundler's order (--order-file lays it out by a host build's order): ${outfile}\n`)
    return 'bundler order'
  }
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-build-'))
  try {
    const orderFile = join(dir, 'startup.order')
    await recordStartupOrder(outfile, orderFile).catch((error: Error) => {
      throw new Error(`could not record the startup order: ${error.message} (bun scripts/build.ts --no-order builds without it)`)
    })
    compile(options, outfile, orderFile)
    if (options.saveOrder !== undefined) copyFileSync(orderFile, options.saveOrder)
    process.stdout.write(`laid the bytecode out in startup order: ${outfile}\n`)
    return 'startup order (recorded)'
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (import.meta.main) {
  await build(parseArgs(process.argv.slice(2))).catch((error: Error) => {
    process.stderr.write(`build: ${error.message}\n`)
    process.exit(1)
  })
}
