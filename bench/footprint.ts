/**
 * Footprint: size of the compiled binary, resident memory once idle after
 * start, and time from exec to the first successful /healthz.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildCommand } from '../test/support/process'
import { freePort } from '../test/support/wait'
import { ROOT, round, rssParts, startChild, summarize, table, writeResult } from './lib'

const dir = mkdtempSync(join(tmpdir(), 'switchboard-footprint-'))
const binary = join(dir, 'switchboard')
const build = Bun.spawnSync(await buildCommand(binary), { cwd: ROOT })
if (build.exitCode !== 0) throw new Error(`build failed: ${build.stderr}`)
const sizeMiB = round(statSync(binary).size / 2 ** 20, 1)

/** Exec → first 200 from /healthz, polling every millisecond. */
async function timeToReady(): Promise<number> {
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

/** Runs `measure` `times` times, one after another. */
async function sequentially(times: number, measure: () => Promise<number>): Promise<number[]> {
  const samples: number[] = []
  for (let i = 0; i < times; i++) samples.push(await measure())
  return samples
}

const readiness = summarize(await sequentially(5, timeToReady))
const server = await startChild([binary, '--port', '0', '--log-level', 'error'])
await fetch(`${server.url}/healthz`)
await Bun.sleep(1000)
const idleRss = rssParts(server.pid)
await server.stop()
rmSync(dir, { recursive: true, force: true })

const markdown = table(
  ['measure', 'value', 'target'],
  [
    ['binary size', `${sizeMiB} MiB`, '—'],
    ['idle RSS after start', `${idleRss.total} MiB (anonymous ${idleRss.anonymous}, file-backed ${idleRss.file})`, '≤ 60 MB'],
    ['exec → first /healthz (p50 of 5)', `${round(readiness.p50, 1)} ms`, '≤ 200 ms'],
  ],
)
console.log(`\nFootprint (compiled binary, memory backend)\n\n${markdown}\n`)
writeResult('footprint', { binaryMiB: sizeMiB, idleRssMiB: idleRss.total, idleRssAnonymousMiB: idleRss.anonymous, idleRssFileMiB: idleRss.file, readyMs: readiness, markdown })
