/**
 * Framework ceiling: a bare Bun.serve and a bare node:http server (the layer
 * Switchboard serves through) answering a fixed body, Switchboard's serving
 * layer in front of an app answering a fixed body (the floor every route pays),
 * against Switchboard's /healthz and PUT /message — how much of the ceiling
 * our logic keeps. Each request kind (a GET without a body, Academy's PUT of a
 * 1 KB message) is sent to the bare servers too, so every ratio compares a
 * route with the ceiling for the same request.
 * Load comes from wrk (one thread) when installed, else from a Bun client.
 */
import { newAgent, newUser, mailboxBody, sendBody } from './academy'
import { BUN, hasWrk, load, request, startChild, startSwitchboard, table, wrk, writeResult, type LoadResult } from './lib'

const CONNECTIONS = 50
const SECONDS = Number(process.env.BENCH_SECONDS ?? 3)

async function measure(url: string, method: string, body?: string): Promise<LoadResult> {
  if (hasWrk) {
    await wrk(url, { method, body, connections: CONNECTIONS, seconds: 1 })
    return wrk(url, { method, body, connections: CONNECTIONS, seconds: SECONDS })
  }
  return load(CONNECTIONS, SECONDS * 1000, async () => {
    const response = await request(url, method, body)
    if (response.status !== 200) throw new Error(`status ${response.status}`)
  })
}

/** Two requests: a GET without a body (against /healthz) and Academy's PUT of a 1 KB message (against PUT /message). */
type Kind = 'GET' | 'PUT 1 KB'
const [user, agent] = [newUser(), newAgent()]
const putBody = sendBody(user, agent, 'request', 1024)
const send = (url: string, kind: Kind) => (kind === 'GET' ? measure(url, 'GET') : measure(url, 'PUT', putBody))

const rows: { target: string; kind: Kind; result: LoadResult }[] = []
for (const [name, script] of [
  ['bare Bun.serve, fixed body', 'bench/baselines/bun-serve.ts'],
  ['bare node:http under Bun, fixed body', 'bench/baselines/node-http.ts'],
  ["Switchboard's serving layer, app answering a fixed body", 'bench/baselines/serving-floor.ts'],
] as const) {
  const server = await startChild([BUN, script])
  for (const kind of ['GET', 'PUT 1 KB'] as const) rows.push({ target: name, kind, result: await send(`${server.url}/`, kind) })
  await server.stop()
}

const switchboard = await startSwitchboard()
rows.push({ target: 'Switchboard GET /healthz', kind: 'GET', result: await send(`${switchboard.url}/healthz`, 'GET') })
await request(`${switchboard.url}/mailbox`, 'POST', mailboxBody(user))
await request(`${switchboard.url}/mailbox`, 'POST', mailboxBody(agent))
rows.push({ target: 'Switchboard PUT /message (memory)', kind: 'PUT 1 KB', result: await send(`${switchboard.url}/message`, 'PUT 1 KB') })
await switchboard.stop()

// Each row against the bare servers answering the same request: the ratio is what the route keeps of its ceiling.
const ceiling = (name: string, kind: Kind) => rows.find((row) => row.target === name && row.kind === kind)!.result.perSecond
const markdown = table(
  ['target', 'request', 'req/s', '× Bun.serve', '× node:http', 'p50 ms', 'p99 ms', 'errors'],
  rows.map(({ target, kind, result }) => [
    target,
    kind,
    result.perSecond,
    (result.perSecond / ceiling('bare Bun.serve, fixed body', kind)).toFixed(2),
    (result.perSecond / ceiling('bare node:http under Bun, fixed body', kind)).toFixed(2),
    result.latency.p50,
    result.latency.p99,
    result.errors,
  ]),
)
const generator = hasWrk ? 'wrk, 1 thread' : 'Bun node:http client (install wrk for server-bound figures)'
console.log(`\nFramework ceiling (${CONNECTIONS} keep-alive connections, ${SECONDS} s each, ${generator}; ratios against the bare servers answering the same request)\n\n${markdown}\n`)
writeResult('ceiling', { connections: CONNECTIONS, seconds: SECONDS, generator, rows, markdown })
