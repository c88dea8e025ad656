/**
 * Footprint per target: `bun bench/targets.ts` builds the whole release
 * (`npm run release`, every target) into a scratch folder and measures each
 * binary's size beside the size of the Bun runtime it is built on (what
 * bounds it: the rest is Switchboard's code, its bytecode and the Swagger UI
 * assets), and, for the targets this host can run, idle RSS after start and
 * exec → first /healthz: linux-x64 natively, linux-arm64 under
 * qemu-user-static (emulated: the RSS is qemu's and the times are the
 * emulator's, so those figures only show it starts). Writes the "Footprint
 * per target" section of bench/RESULTS.md and bench/results/targets.json.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { DEFAULT_TARGETS, WITHOUT_BYTECODE, binaryName } from '../scripts/release'
import { TARGETS, hostTarget } from '../scripts/build'
import { release, VERSION } from '../test/support/release'
import { freePort } from '../test/support/wait'
import { OUT, machine, round, rssParts, startChild, summarize, table, writeResult } from './lib'

const STARTS = 5
const MiB = (bytes: number) => round(bytes / 2 ** 20, 1)
const dir = mkdtempSync(join(tmpdir(), 'switchboard-targets-'))
const started = performance.now()
const { seconds } = await release(['--outdir', dir])

/** The Bun runtime a target is built on: this Bun for the host, else the one `bun build` fetched into its cache. */
function runtimeSize(target: string): number | undefined {
  if (target === hostTarget()) return statSync(process.execPath).size
  const cache = process.env.BUN_INSTALL_CACHE_DIR ?? join(homedir(), '.bun/install/cache')
  const file = join(cache, `${TARGETS[target]!.replace('arm64', 'aarch64')}-v${Bun.version}`)
  return existsSync(file) ? statSync(file).size : undefined
}

/** How a binary of `target` is started here, if it can be. */
function launcher(target: string): string[] | undefined {
  if (target === hostTarget()) return []
  if (target === 'linux-arm64' && Bun.which('qemu-aarch64-static')) return [Bun.which('qemu-aarch64-static')!]
  return undefined
}

async function timeToReady(command: string[]): Promise<number> {
  const port = await freePort()
  const begun = performance.now()
  const child = Bun.spawn([...command, '--port', String(port), '--log-level', 'error'], { stdout: 'ignore', stderr: 'ignore' })
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${command.join(' ')} exited with ${child.exitCode} before it was ready`)
      const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then((response) => response.status === 200, () => false)
      if (ok) return performance.now() - begun
      if (performance.now() - begun > 30_000) throw new Error(`${command.join(' ')} was not ready in 30 s`)
      await Bun.sleep(1)
    }
  } finally {
    child.kill('SIGKILL')
    await child.exited
  }
}

async function idleRss(command: string[]) {
  const server = await startChild([...command, '--port', '0', '--log-level', 'error'], {}, 60_000)
  await fetch(`${server.url}/healthz`)
  await Bun.sleep(1000)
  const rss = rssParts(server.pid)
  await server.stop()
  return rss
}

const rows: (string | number)[][] = []
const measured: Record<string, unknown> = {}
for (const target of DEFAULT_TARGETS) {
  const size = statSync(join(dir, binaryName(VERSION, target))).size
  const runtime = runtimeSize(target)
  const prefix = launcher(target)
  let rss = '—'
  let ready = '—'
  const bytecode = !WITHOUT_BYTECODE.has(target)
  const entry: Record<string, unknown> = { binaryMiB: MiB(size), runtimeMiB: runtime === undefined ? null : MiB(runtime), bytecode }
  if (prefix !== undefined) {
    const command = [...prefix, join(dir, binaryName(VERSION, target))]
    const samples: number[] = []
    for (let i = 0; i < STARTS; i++) samples.push(await timeToReady(command))
    const parts = await idleRss(command)
    const emulated = prefix.length > 0 ? ' (qemu, emulated)' : ''
    rss = `${parts.total} MiB${emulated}`
    ready = `${round(summarize(samples).p50, 1)} ms${emulated}`
    entry.idleRssMiB = parts.total
    entry.readyMsP50 = round(summarize(samples).p50, 1)
    entry.emulated = prefix.length > 0
  }
  measured[target] = entry
  rows.push([target, `${MiB(size)} MiB`, runtime === undefined ? '—' : `${MiB(runtime)} MiB`, runtime === undefined ? '—' : `${MiB(size - runtime)} MiB`, bytecode ? 'yes' : 'no', rss, ready])
}
rmSync(dir, { recursive: true, force: true })

const markdown = table(['target', 'binary size', 'Bun runtime alone', 'Switchboard (code, bytecode, assets)', 'bytecode', 'idle RSS after start', `exec → first /healthz (p50 of ${STARTS})`], rows)
const took = Math.round((performance.now() - started) / 1000)
const host = machine()
const section = [
  '## Footprint per target',
  '',
  `\`bench/targets.ts\`, ${took} s (the release build of ${DEFAULT_TARGETS.length} targets: ${round(seconds, 1)} s), on ${new Date().toISOString().slice(0, 10)}: ${host.cores} cores (${host.cpu}), Bun ${host.bun}.`,
  `Every target with bytecode is laid out in the startup order a linux-x64 build recorded; ${[...WITHOUT_BYTECODE].join(', ')} carries none, which keeps it below 112 MiB (scripts/release.ts). The Swagger UI's assets are embedded gzipped. linux-arm64 runs under qemu-user-static: its RSS is the emulator's and its times the emulator's, they show only that it starts.`,
  '',
  markdown,
].join('\n')
console.log(`\n${section}\n`)
writeResult('targets', { releaseSeconds: round(seconds, 1), targets: measured, markdown })

// Replace the section in RESULTS.md (or add it after "## Footprint"), leaving the rest as `bun run bench` wrote it.
const resultsFile = resolve(OUT, 'RESULTS.md')
const text = readFileSync(resultsFile, 'utf8')
const sections = text.split(/\n(?=## )/)
const at = sections.findIndex((part) => part.startsWith('## Footprint per target'))
if (at >= 0) sections[at] = `${section}\n`
else sections.splice(Math.max(1, sections.findIndex((part) => part.startsWith('## Footprint')) + 1), 0, `${section}\n`)
writeFileSync(resultsFile, sections.join('\n'))
console.log(`wrote the section into ${resultsFile}`)
