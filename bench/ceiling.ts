/**
 * Framework ceiling: a bare Bun.serve and a bare node:http server (the layer
 * Switchboard serves through) answering a fixed body, Switchboard's serving
 * layer in front of an app answering a fixed body (the floor every route pays),
 * against Switchboard's /healthz and PUT /message — how much of the ceiling
 * our logic keeps.
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

const rows: { target: string; result: LoadResult }[] = []
for (const [name, script] of [
  ['bare Bun.serve, fixed body', 'bench/baselines/bun-serve.ts'],
  ['bare node:http under Bun, fixed body', 'bench/baselines/node-http.ts'],
  ["Switchboard's serving layer, app answering a fixed body", 'bench/baselines/serving-floor.ts'],
] as const) {
  const server = await startChild([BUN, script])
  rows.push({ target: name, result: await measure(`${server.url}/`, 'GET') })
  await server.stop()
}

const switchboard = await startSwitchboard()
rows.push({ target: 'Switchboard GET /healthz', result: await measure(`${switchboard.url}/healthz`, 'GET') })
const [user, agent] = [newUser(), newAgent()]
await request(`${switchboard.url}/mailbox`, 'POST', mailboxBody(user))
await request(`${switchboard.url}/mailbox`, 'POST', mailboxBody(agent))
rows.push({ target: 'Switchboard PUT /message (1 KB, memory)', result: await measure(`${switchboard.url}/message`, 'PUT', sendBody(user, agent, 'request', 1024)) })
await switchboard.stop()

const bunCeiling = rows[0]!.result.perSecond
const nodeCeiling = rows[1]!.result.perSecond
const markdown = table(
  ['target', 'req/s', '× Bun.serve', '× node:http', 'p50 ms', 'p99 ms', 'errors'],
  rows.map(({ target, result }) => [target, result.perSecond, (result.perSecond / bunCeiling).toFixed(2), (result.perSecond / nodeCeiling).toFixed(2), result.latency.p50, result.latency.p99, result.errors]),
)
const generator = hasWrk ? 'wrk, 1 thread' : 'Bun node:http client (install wrk for server-bound figures)'
console.log(`\nFramework ceiling (${CONNECTIONS} keep-alive connections, ${SECONDS} s each, ${generator})\n\n${markdown}\n`)
writeResult('ceiling', { connections: CONNECTIONS, seconds: SECONDS, generator, rows, markdown })
