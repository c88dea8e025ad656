/**
 * Instructions per request: bare node:http (then also reading one request
 * header, which makes Bun build them all), Switchboard's serving layer in
 * front of a plain route (answering a fixed body; then first reading the
 * body as PUT /message does; then also parsing the message inside it), and
 * Switchboard's PUT /message (memory), each run
 * under valgrind's callgrind and sent the same 1 KB PUTs over keep-alive
 * connections. After a warm-up the counters are zeroed, a fixed number of
 * requests is sent, and the instructions the server executed are read, on
 * its main thread (where requests are answered) and on all its threads
 * (JIT compiler and garbage collector included).
 *
 * req/s and CPU time move with whatever else the machine is doing;
 * instruction counts hardly do (the same build gives counts a few per cent
 * apart from run to run, as far as the JIT has got after the warm-up), so
 * this is the figure to compare two versions of the request path by. It
 * does not see cache misses, page faults or the kernel, which the CPU
 * figures of bench/ceiling.ts include. It takes about fourteen minutes and is
 * not part of `bun run bench`.
 *
 *   bun bench/instructions.ts    (needs valgrind; writes bench/results/instructions.json)
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { mailboxBody, newAgent, newUser, sendBody } from './academy'
import { BUN, round, startChild, table, writeResult } from './lib'

const WARMUP = Number(process.env.INSTRUCTIONS_WARMUP ?? 3000)
const REQUESTS = Number(process.env.INSTRUCTIONS_REQUESTS ?? 5000)
const CONNECTIONS = 16

if (Bun.which('valgrind') === null || Bun.which('callgrind_control') === null) {
  console.log('bench/instructions.ts needs valgrind (Debian package valgrind): not found, nothing measured')
  process.exit(0)
}

const [user, agent] = [newUser(), newAgent()]
const body = sendBody(user, agent, 'request', 1024)

/** Sends `count` PUTs of `payload` to `url` from CONNECTIONS loops (fetch keeps their connections alive); resolves with how many were not answered 200. */
async function put(url: string, payload: string, count: number): Promise<number> {
  let left = count
  let failed = 0
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (left-- > 0) {
        const response = await fetch(url, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: payload })
        await response.arrayBuffer()
        if (response.status !== 200) failed++
      }
    }),
  )
  return failed
}

interface Measured {
  target: string
  mainThread: number
  allThreads: number
  failed: number
}

/** Instructions per request of one server, started under callgrind from `command`, sent PUTs at `path`. */
async function measure(target: string, command: string[], path: string, setup?: (base: string) => Promise<void>): Promise<Measured> {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-callgrind-'))
  const server = await startChild(
    ['valgrind', '--tool=callgrind', '--separate-threads=yes', `--log-file=${dir}/valgrind.log`, `--callgrind-out-file=${dir}/out`, ...command],
    {},
    120_000,
  )
  try {
    await setup?.(server.url)
    const url = `${server.url}${path}`
    await put(url, body, WARMUP)
    Bun.spawnSync(['callgrind_control', '--zero', String(server.pid)])
    const failed = await put(url, body, REQUESTS)
    Bun.spawnSync(['callgrind_control', '--dump', String(server.pid)])
    // The dump after zeroing is the first: one file per thread, the main thread's ending in -01.
    const counts = readdirSync(dir)
      .filter((name) => /\.1-\d+$/.test(name))
      .map((name) => ({ main: name.endsWith('-01'), count: Number(/^summary: (\d+)/m.exec(readFileSync(join(dir, name), 'utf8'))?.[1] ?? 0) }))
    if (counts.length === 0) throw new Error(`${target}: callgrind wrote no dump (see ${dir}/valgrind.log)`)
    const perRequest = (instructions: number) => Math.round(instructions / REQUESTS)
    return {
      target,
      mainThread: perRequest(counts.filter((entry) => entry.main).reduce((sum, entry) => sum + entry.count, 0)),
      allThreads: perRequest(counts.reduce((sum, entry) => sum + entry.count, 0)),
      failed,
    }
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

const createMailboxes = async (base: string) => {
  for (const id of [user, agent]) {
    const response = await fetch(`${base}/mailbox`, { method: 'POST', body: mailboxBody(id) })
    if (response.status !== 200) throw new Error(`POST /mailbox: ${response.status}`)
  }
}

const rows: Measured[] = []
for (const [target, command, path, setup] of [
  ['bare node:http under Bun, fixed body', [BUN, 'bench/baselines/node-http.ts'], '/'],
  ['the same, also reading one request header', [BUN, 'bench/baselines/node-http.ts', '--reads-header'], '/'],
  ["Switchboard's pipeline, route answering a fixed body", [BUN, 'bench/baselines/pipeline-floor.ts'], '/'],
  ['the same, first reading the body as PUT /message does', [BUN, 'bench/baselines/pipeline-floor.ts', '--reads', 'body'], '/'],
  ['the same, also parsing the message and checking its header', [BUN, 'bench/baselines/pipeline-floor.ts', '--reads', 'message'], '/'],
  ['Switchboard PUT /message (memory)', [BUN, 'src/main.ts', '--port', '0', '--log-level', 'error'], '/message', createMailboxes],
] as const) {
  console.error(`measuring ${target}`)
  rows.push(await measure(target, [...command], path, setup))
}
const [bare] = rows
const markdown = table(
  ['target (PUT 1 KB)', 'instructions/request, main thread', 'added over the row above', 'bare node:http ÷ this', 'instructions/request, all threads', 'bare node:http ÷ this', 'not 200'],
  rows.map((row, index) => [
    row.target,
    row.mainThread,
    index === 0 ? '—' : row.mainThread - rows[index - 1]!.mainThread,
    round(bare!.mainThread / row.mainThread, 2),
    row.allThreads,
    round(bare!.allThreads / row.allThreads, 2),
    row.failed,
  ]),
)
console.log(`\nInstructions per request under callgrind (${WARMUP} requests of warm-up, then ${REQUESTS} counted, ${CONNECTIONS} keep-alive connections)\n\n${markdown}\n`)
writeResult('instructions', { warmup: WARMUP, requests: REQUESTS, connections: CONNECTIONS, rows, markdown })
