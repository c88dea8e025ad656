/**
 * Footprint: size of the compiled binary, resident memory once idle after
 * start, and time from exec to the first successful /healthz; beside it, the
 * same binary with its bytecode in the bundler's order rather than in startup
 * order, and built without bytecode at all (the baselines for what each step
 * of the build buys and costs). Starts of the three alternate, so all see the
 * same machine.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildCommand } from '../test/support/process'
import { freePort } from '../test/support/wait'
import { ROOT, round, rssParts, startChild, summarize, table, writeResult } from './lib'

const dir = mkdtempSync(join(tmpdir(), 'switchboard-footprint-'))

/** Builds with package.json's build script into `name`, with extra flags of scripts/build.ts. */
async function build(name: string, flags: string[] = []): Promise<string> {
  const binary = join(dir, name)
  const command = [...(await buildCommand(binary)), ...flags]
  const built = Bun.spawnSync(command, { cwd: ROOT })
  if (built.exitCode !== 0) throw new Error(`build failed: ${built.stderr}`)
  return binary
}

const builds = [
  { name: 'switchboard (npm run build)', binary: await build('switchboard') },
  { name: 'bytecode not in startup order (--no-order)', binary: await build('switchboard-unordered', ['--no-order']) },
  { name: 'without bytecode (--no-bytecode)', binary: await build('switchboard-source', ['--no-bytecode']) },
]

/** Exec → first 200 from /healthz, polling every millisecond. */
async function timeToReady(binary: string): Promise<number> {
  const port = await freePort()
  const started = performance.now()
  const child = Bun.spawn([binary, '--port', String(port), '--log-level', 'error'], { stdout: 'ignore', stderr: 'ignore' })
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`binary exited with ${child.exitCode} before it was ready`)
      try {
        const response = await fetch(`http://127.0.0.1:${port}/healthz`)
        if (response.status === 200) return performance.now() - started
      } catch {}
      if (performance.now() - started > 10_000) throw new Error('binary did not become ready in 10 s')
      await Bun.sleep(1)
    }
  } finally {
    child.kill('SIGKILL')
    await child.exited
  }
}

/** Resident memory of a started binary after its first /healthz and a second of idling. */
async function idleRss(binary: string) {
  const server = await startChild([binary, '--port', '0', '--log-level', 'error'])
  await fetch(`${server.url}/healthz`)
  await Bun.sleep(1000)
  const rss = rssParts(server.pid)
  await server.stop()
  return rss
}

const STARTS = 5
const samples = builds.map(() => [] as number[])
for (let round = 0; round < STARTS; round++) for (const [index, { binary }] of builds.entries()) samples[index]!.push(await timeToReady(binary))
const measured = []
for (const [index, { name, binary }] of builds.entries()) {
  measured.push({ name, sizeMiB: round(statSync(binary).size / 2 ** 20, 1), rss: await idleRss(binary), readyMs: summarize(samples[index]!) })
}
rmSync(dir, { recursive: true, force: true })

const markdown = table(
  ['measure', ...measured.map(({ name }) => name), 'target'],
  [
    ['binary size', ...measured.map(({ sizeMiB }) => `${sizeMiB} MiB`), '—'],
    ['idle RSS after start', ...measured.map(({ rss }) => `${rss.total} MiB = ${round((rss.total * 2 ** 20) / 1e6, 1)} MB (anonymous ${rss.anonymous}, file-backed ${rss.file})`), '≤ 60 MB'],
    [`exec → first /healthz (p50 of ${STARTS})`, ...measured.map(({ readyMs }) => `${round(readyMs.p50, 1)} ms`), '≤ 200 ms'],
  ],
)
const [shipped, unordered, source] = [measured[0]!, measured[1]!, measured[2]!]
console.log(`\nFootprint (compiled binary, memory backend)\n\n${markdown}\n`)
writeResult('footprint', {
  binaryMiB: shipped.sizeMiB,
  idleRssMiB: shipped.rss.total,
  idleRssAnonymousMiB: shipped.rss.anonymous,
  idleRssFileMiB: shipped.rss.file,
  readyMs: shipped.readyMs,
  withoutStartupOrder: { binaryMiB: unordered.sizeMiB, idleRssMiB: unordered.rss.total, readyMs: unordered.readyMs },
  withoutBytecode: { binaryMiB: source.sizeMiB, idleRssMiB: source.rss.total, readyMs: source.readyMs },
  markdown,
})
