/**
 * `bun run bench`: runs every benchmark one after another (each bounded in
 * time), then writes bench/RESULTS.md from what they printed; each script
 * also writes its JSON to bench/results/. Every figure sits next to a
 * baseline measured in the same run. The whole run is meant to take under
 * six minutes on a 2-core machine: each script's own time is printed and
 * written beside its section, and the run says so when the whole took longer.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { BUN, OUT, ROOT, hasWrk, machine } from './lib'

/** The bound the whole run is meant to stay under, in seconds. */
const RUN_BOUND_SECONDS = 360

const SCRIPTS: [string, string, number][] = [
  ['Footprint', 'bench/footprint.ts', 60],
  ['Framework ceiling', 'bench/ceiling.ts', 150],
  ['Exchange round trip', 'bench/exchange.ts', 120],
  ['Dispatch', 'bench/dispatch.ts', 60],
  ['Event fan-out', 'bench/events.ts', 60],
  ['A2A proxy', 'bench/a2a.ts', 90],
  ['Scale', 'bench/scale.ts', 120],
  ['Soak', 'bench/soak.ts', 90],
  ['Redis Cluster', 'bench/cluster.ts', 120],
]

const only = process.argv.slice(2)
const sections: string[] = []
const started = Date.now()
for (const [title, script, limitSeconds] of SCRIPTS) {
  if (only.length > 0 && !only.some((name) => script.includes(name))) continue
  console.log(`\n=== ${title} (${script}) ===`)
  const scriptStarted = Date.now()
  const child = Bun.spawn([BUN, script], { cwd: ROOT, stdout: 'pipe', stderr: 'inherit', env: process.env })
  const timer = setTimeout(() => child.kill('SIGKILL'), limitSeconds * 1000)
  let output = ''
  for await (const chunk of child.stdout as ReadableStream<Uint8Array>) {
    const text = new TextDecoder().decode(chunk)
    output += text
    process.stdout.write(text)
  }
  const code = await child.exited
  clearTimeout(timer)
  const took = Math.round((Date.now() - scriptStarted) / 1000)
  console.log(`(${script}: ${took} s)`)
  const tables = output.split('\n').filter((line) => line.startsWith('|') || line === '').join('\n').replace(/\n{3,}/g, '\n\n').trim()
  sections.push(`## ${title}\n\n\`${script}\`, ${took} s${code === 0 ? '' : ` — did not finish (exit ${code})`}\n\n${tables}`)
}

const seconds = Math.round((Date.now() - started) / 1000)
const overBound = seconds > RUN_BOUND_SECONDS ? ` (over the ${RUN_BOUND_SECONDS} s it is meant to take)` : ''
console.log(`\nwhole run: ${seconds} s${overBound}`)
const host = machine()
const header = [
  '# Switchboard benchmark results',
  '',
  `Produced by \`bun run bench\` on ${new Date().toISOString().slice(0, 10)}: ${host.cores} cores (${host.cpu}), ${host.memoryGiB} GiB, ${host.platform}, Bun ${host.bun}.`,
  `Throughput load generator: ${hasWrk ? 'wrk (1 thread)' : 'Bun client'}; latency clients are Bun processes on the same machine. Whole run: ${seconds} s${overBound}.`,
  'Every figure is measured in the same run as its baseline; compare ratios, not absolute numbers, across machines.',
]
if (only.length === 0) {
  const written = resolve(OUT, 'RESULTS.md')
  // Sections other scripts write (bench/targets.ts: "Footprint per target") are kept, after the footprint.
  const titles = new Set(SCRIPTS.map(([title]) => title))
  const kept = existsSync(written) ? readFileSync(written, 'utf8').split(/\n(?=## )/).filter((part) => part.startsWith('## ') && !titles.has(part.slice(3, part.indexOf('\n')))) : []
  sections.splice(1, 0, ...kept.map((part) => part.trim()))
  writeFileSync(written, `${header.join('\n')}\n\n${sections.join('\n\n')}\n`)
  console.log(`\nwrote ${written}`)
}
