/**
 * `bun run release`: the release artifacts in dist/release/.
 *
 *   bun scripts/release.ts [--targets linux-x64,linux-arm64,...] [--outdir dist/release]
 *
 * For each target (default: DEFAULT_TARGETS) a binary named
 * switchboard-<version>-<target>[.exe], SHA256SUMS over them, and under npm/
 * the npm packages as `npm pack` tarballs: one per target holding its binary
 * (with os, cpu and libc fields, so npm installs only the matching one) and
 * the launcher package `switchboard`, whose `switchboard` command runs it.
 * The startup order of the bytecode is recorded once by a binary of this
 * host (see scripts/build.ts) and every target is laid out by it; the
 * targets of WITHOUT_BYTECODE carry none.
 * Nothing is published.
 */
import { createHash } from 'node:crypto'
import { chmodSync, copyFileSync, cpSync, createReadStream, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { ROOT, TARGETS, build, commitOf, hostTarget, type BuildOptions } from './build'

/**
 * Targets built without bytecode: the Windows runtime alone is 110 MiB, and the bytecode (5.3 MiB) would take
 * the binary past 112 MiB. Such a binary compiles its code at start instead (about 70 ms to the first request
 * rather than 30 ms, measured on linux-x64: docs/performance.md).
 */
export const WITHOUT_BYTECODE = new Set(['windows-x64'])

export const DEFAULT_TARGETS = ['linux-x64', 'linux-arm64', 'linux-x64-musl', 'linux-arm64-musl', 'darwin-x64', 'darwin-arm64', 'windows-x64']
export const LAUNCHER = 'switchboard'
/** What the launcher package ships beside its bin: the README and every file it links to. */
export const LAUNCHER_FILES = ['LICENSE', 'README.md', 'CHANGELOG.md', 'docs', 'deploy', 'bench/RESULTS.md']
/** The npm package holding the binary of `target`. */
export const platformPackage = (target: string): string => `@switchboard/${target}`
export const binaryName = (version: string, target: string): string => `switchboard-${version}-${target}${target.startsWith('windows') ? '.exe' : ''}`

const USAGE = 'usage: bun scripts/release.ts [--targets T1,T2,...] [--outdir DIR]'

interface Options {
  targets: string[]
  outdir: string
}

function parseArgs(args: string[]): Options {
  const options: Options = { targets: DEFAULT_TARGETS, outdir: resolve(ROOT, 'dist/release') }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const [name, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    const value = inline ?? args[++i]
    if (value === undefined) throw new Error(`${name} needs a value; ${USAGE}`)
    if (name === '--targets') options.targets = value.split(',').map((target) => target.trim()).filter((target) => target !== '')
    else if (name === '--outdir') options.outdir = resolve(value)
    else throw new Error(`unknown argument ${JSON.stringify(arg)}; ${USAGE}`)
  }
  const unknown = options.targets.filter((target) => !(target in TARGETS))
  if (unknown.length > 0) throw new Error(`unknown target ${unknown.map((target) => JSON.stringify(target)).join(', ')}; targets: ${Object.keys(TARGETS).join(', ')}`)
  if (options.targets.length === 0) throw new Error(`--targets names no target; ${USAGE}`)
  return options
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** npm's os/cpu/libc fields of a target. */
function platformFields(target: string): { os: string[]; cpu: string[]; libc?: string[] } {
  const [system, cpu] = target.split('-') as [string, string]
  const os = system === 'windows' ? 'win32' : system
  return { os: [os], cpu: [cpu], ...(os === 'linux' ? { libc: [target.includes('-musl') ? 'musl' : 'glibc'] } : {}) }
}

/** Packs `dir` with npm into `destination`; resolves with the tarball's path. */
async function npmPack(dir: string, destination: string): Promise<string> {
  const packing = Bun.spawn(['npm', 'pack', '--json', '--pack-destination', destination], { cwd: dir, stdout: 'pipe', stderr: 'pipe', env: { ...process.env, npm_config_update_notifier: 'false' } })
  const [stdout, stderr, code] = await Promise.all([new Response(packing.stdout).text(), new Response(packing.stderr).text(), packing.exited])
  if (code !== 0) throw new Error(`npm pack failed in ${dir}: ${stderr}`)
  const [{ filename }] = JSON.parse(stdout) as [{ filename: string }]
  return join(destination, filename)
}

/** Runs `jobs` with at most `limit` at once (npm pack spends its time compressing: one per core). */
async function inTurns<T>(jobs: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length)
  let next = 0
  const worker = async () => {
    while (next < jobs.length) {
      const index = next++
      results[index] = await jobs[index]!()
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker))
  return results
}

/** Writes the per-target packages and the launcher, packs each and resolves with the tarballs. */
async function writeNpmPackages(version: string, built: { target: string; file: string }[], outdir: string): Promise<string[]> {
  const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { description: string; license: string; repository?: unknown }
  const npmDir = join(outdir, 'npm')
  const work = join(npmDir, 'packages')
  mkdirSync(work, { recursive: true })
  const common = { version, license: root.license, ...(root.repository ? { repository: root.repository } : {}) }
  for (const { target, file } of built) {
    const dir = join(work, target)
    const binary = join(dir, 'bin', `switchboard${target.startsWith('windows') ? '.exe' : ''}`)
    mkdirSync(join(dir, 'bin'), { recursive: true })
    try {
      linkSync(file, binary)
    } catch {
      copyFileSync(file, binary)
    }
    chmodSync(binary, 0o755)
    copyFileSync(join(ROOT, 'LICENSE'), join(dir, 'LICENSE'))
    writeFileSync(join(dir, 'README.md'), `# ${platformPackage(target)}\n\nThe Switchboard ${version} binary for ${target}. Install \`${LAUNCHER}\`, which picks this package on ${target}.\n`)
    const manifest = { name: platformPackage(target), ...common, description: `The Switchboard binary for ${target}`, ...platformFields(target), files: ['bin', 'LICENSE'], preferUnplugged: true }
    writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  }
  const dir = join(work, LAUNCHER)
  mkdirSync(join(dir, 'bin'), { recursive: true })
  const packages = Object.fromEntries(built.map(({ target }) => [target, platformPackage(target)]))
  const launcher = readFileSync(join(ROOT, 'scripts/npm/switchboard.cjs'), 'utf8').replace('__PACKAGES__', JSON.stringify(packages, null, 2))
  writeFileSync(join(dir, 'bin', 'switchboard.js'), launcher, { mode: 0o755 })
  // The README links to docs/, bench/RESULTS.md and CHANGELOG.md by relative path: they ship beside it so every link resolves.
  for (const file of LAUNCHER_FILES) cpSync(join(ROOT, file), join(dir, file), { recursive: true })
  const manifest = {
    name: LAUNCHER,
    ...common,
    description: root.description,
    bin: { switchboard: 'bin/switchboard.js' },
    files: ['bin', ...LAUNCHER_FILES],
    engines: { node: '>=18' },
    optionalDependencies: Object.fromEntries(built.map(({ target }) => [platformPackage(target), version])),
  }
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`)
  const dirs = [...built.map(({ target }) => join(work, target)), dir]
  const tarballs = await inTurns(dirs.map((packageDir) => () => npmPack(packageDir, npmDir)), Math.max(1, availableParallelism()))
  rmSync(work, { recursive: true, force: true })
  return tarballs
}

async function main(): Promise<void> {
  const started = performance.now()
  const { targets, outdir } = parseArgs(process.argv.slice(2))
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  const commit = commitOf()
  rmSync(outdir, { recursive: true, force: true })
  mkdirSync(outdir, { recursive: true })
  const scratch = mkdtempSync(join(tmpdir(), 'switchboard-release-'))
  const orderFile = join(scratch, 'startup.order')
  const options = (target: string, outfile: string): BuildOptions => ({ outfile, target, bytecode: !WITHOUT_BYTECODE.has(target), order: true, commit })
  const built: { target: string; file: string; layout: string; seconds: number }[] = []
  try {
    // One binary of this host records the startup order; every other target is laid out by it.
    const host = hostTarget()
    const ordered = [...targets].sort((a, b) => Number(b === host) - Number(a === host))
    if (!targets.includes(host)) await build({ ...options(host, join(scratch, 'host')), saveOrder: orderFile })
    for (const target of ordered) {
      const file = join(outdir, binaryName(version, target))
      const stepStarted = performance.now()
      const layout = target === host ? await build({ ...options(target, file), saveOrder: orderFile }) : await build({ ...options(target, file), orderFile })
      built.push({ target, file, layout, seconds: (performance.now() - stepStarted) / 1000 })
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
  const sums = await Promise.all(built.map(async ({ target }) => `${await sha256(join(outdir, binaryName(version, target)))}  ${binaryName(version, target)}`))
  writeFileSync(join(outdir, 'SHA256SUMS'), `${sums.join('\n')}\n`)
  const packStarted = performance.now()
  const tarballs = await writeNpmPackages(version, built, outdir)
  const packSeconds = (performance.now() - packStarted) / 1000
  const lines = built.map(({ target, file, layout, seconds }) => `  ${binaryName(version, target).padEnd(42)} ${(statSync(file).size / 2 ** 20).toFixed(1).padStart(6)} MiB  ${seconds.toFixed(1).padStart(5)} s  ${layout === 'no bytecode' ? layout : `bytecode in ${layout}`}`)
  process.stdout.write(
    [
      `switchboard ${version} (commit ${commit}) released into ${outdir}:`,
      ...lines,
      '  SHA256SUMS',
      ...tarballs.map((tarball) => `  npm/${tarball.slice(tarball.lastIndexOf('/') + 1)}`),
      `npm packages: ${packSeconds.toFixed(1)} s; whole release: ${((performance.now() - started) / 1000).toFixed(1)} s`,
      '',
    ].join('\n'),
  )
}

if (import.meta.main) {
  await main().catch((error: Error) => {
    process.stderr.write(`release: ${error.message}\n`)
    process.exit(1)
  })
}
