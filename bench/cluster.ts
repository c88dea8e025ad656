/**
 * The exchange and dispatch on a Redis Cluster (3 masters + 3 replicas
 * started here on loopback) with 1, 2 and 3 Switchboard instances, beside
 * one Switchboard on a single Redis (a redis-server started here too, so
 * that its command counts are this run's alone). Exchange: a user sends a
 * request through one instance, the agent receives it on its listen stream
 * on the next instance and answers, the user receives the answer (64
 * pairs, 1 KiB). Dispatch: `POST /jobs` through one instance, to one of 4
 * workers of 4 agent names connected round robin to the instances, until
 * the assignment reaches the worker (16 callers). With the Redis commands each operation
 * costs, from the servers' `INFO commandstats` (every master's summed):
 * the scripts called, and every command run (those inside scripts too,
 * which Redis counts alike): what a Cluster spreads over its masters, and
 * the busiest master's share of them (what bounds the throughput a Cluster
 * of that many masters can reach: 100% on one Redis). On 2 cores the instances and the
 * 6 Redis processes share the same cores, so the rows show the Cluster's
 * overhead, not scaling. About a minute; the last part of `bun run bench`.
 *
 *   bun bench/cluster.ts    (needs redis-server and redis-cli; writes bench/results/cluster.json)
 */
import Redis from 'ioredis'
import { TestWorker } from '../test/modules/workers/worker'
import { clusterBinaries, clusterMasters, clusterPorts, startRedisCluster } from '../test/support/cluster'
import { spawnRedisServer } from '../test/support/redis'
import { removeTempDirs } from '../test/support/temp'
import { listenBody, mailboxBody, newAgent, newUser, sendBody } from './academy'
import { listen, load, request, round, startSwitchboard, table, writeResult, type ChildServer, type LoadResult } from './lib'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2)
const PAIRS = 64
const CALLERS = 16
const WORKERS = 4

const binaries = clusterBinaries()
if (typeof binaries === 'string') {
  console.log(`not measured: ${binaries}`)
  process.exit(0)
}

/** Commands the servers on `ports` ran so far: scripts called (EVALSHA, EVAL) summed, and every command (those inside scripts too) per server. */
async function commandCalls(ports: number[]): Promise<Calls> {
  const calls: Calls = { scripts: 0, byServer: new Map() }
  for (const port of ports) {
    const client = new Redis({ host: '127.0.0.1', port })
    let all = 0
    for (const line of ((await client.info('commandstats')) as string).split('\n')) {
      const match = /^cmdstat_(\w+):calls=(\d+)/.exec(line)
      // Switchboard's, not those of this count or of replication.
      if (!match || ['info', 'ping', 'replconf', 'cluster', 'client', 'command', 'hello'].includes(match[1]!)) continue
      all += Number(match[2])
      if (match[1] === 'evalsha' || match[1] === 'eval') calls.scripts += Number(match[2])
    }
    calls.byServer.set(port, all)
    client.disconnect()
  }
  return calls
}

interface Calls {
  scripts: number
  byServer: Map<number, number>
}

/** What `operations` cost between two counts: scripts and all commands per operation, and the busiest server's share of the commands (what bounds a Cluster's throughput: 100% on one Redis). */
function perOperation(from: Calls, to: Calls, operations: number): Cost {
  const ran = [...to.byServer].map(([port, all]) => all - (from.byServer.get(port) ?? 0))
  const all = ran.reduce((sum, count) => sum + count, 0)
  return {
    scripts: round((to.scripts - from.scripts) / Math.max(operations, 1), 1),
    all: round(all / Math.max(operations, 1), 1),
    busiest: Math.round((100 * Math.max(...ran)) / Math.max(all, 1)),
  }
}

interface Cost {
  scripts: number
  all: number
  /** Per cent of the commands the busiest server ran. */
  busiest: number
}

/** Request and answer between `PAIRS` user/agent pairs, each side on another instance. */
async function exchange(urls: string[]): Promise<LoadResult> {
  const pairs = await Promise.all(
    Array.from({ length: PAIRS }, async (_, index) => {
      const [userUrl, agentUrl] = [urls[index % urls.length]!, urls[(index + 1) % urls.length]!]
      const [user, agent] = [newUser(), newAgent()]
      await request(`${userUrl}/mailbox`, 'POST', mailboxBody(user))
      await request(`${userUrl}/mailbox`, 'POST', mailboxBody(agent))
      const [userInbox, agentInbox] = await Promise.all([listen(`${userUrl}/mailbox/listen`, listenBody(user)), listen(`${agentUrl}/mailbox/listen`, listenBody(agent))])
      return { userUrl, agentUrl, userInbox, agentInbox, ask: sendBody(user, agent, 'request', 1024), answer: sendBody(agent, user, 'response', 1024) }
    }),
  )
  const roundTrip = async (worker: number) => {
    const pair = pairs[worker]!
    if ((await request(`${pair.userUrl}/message`, 'PUT', pair.ask)).status !== 200) throw new Error('send failed')
    await pair.agentInbox.next()
    if ((await request(`${pair.agentUrl}/message`, 'PUT', pair.answer)).status !== 200) throw new Error('answer failed')
    await pair.userInbox.next()
  }
  await load(PAIRS, 300, roundTrip)
  const result = await load(PAIRS, SECONDS * 1000, roundTrip)
  for (const pair of pairs) {
    pair.userInbox.close()
    pair.agentInbox.close()
  }
  return result
}

/**
 * Jobs dispatched through the instances in turn to `WORKERS` workers of as many agent names (a fleet's kinds of
 * agent, so that the names' buckets spread as a fleet's would), connected round robin; each sample lasts until the
 * assignment reaches the worker.
 */
async function dispatch(urls: string[]): Promise<LoadResult> {
  const run = crypto.randomUUID()
  const names = Array.from({ length: WORKERS }, (_, index) => `bench-${run}-${index}`)
  const arrivals = new Map<string, () => void>()
  const assigned = new Set<string>()
  const workers: TestWorker[] = []
  for (let i = 0; i < WORKERS; i++) {
    const worker = await TestWorker.connect(urls[i % urls.length]!, { agentName: names[i]!, maxProcesses: 10_000, loadThreshold: 1 })
    worker.ws.on('message', (raw) => {
      const frame = JSON.parse(raw.toString()) as { type: string; job_id?: string }
      if (frame.type !== 'job_assignment' || !frame.job_id) return
      worker.update(frame.job_id, 'completed')
      assigned.add(frame.job_id)
      arrivals.get(frame.job_id)?.()
    })
    workers.push(worker)
  }
  let sent = 0
  const dispatchOne = async (caller: number) => {
    const body = JSON.stringify({ agent_name: names[sent++ % names.length], room_id: 'bench-room' })
    const response = await request(`${urls[caller % urls.length]}/jobs`, 'POST', body)
    if (response.status !== 201) throw new Error(`dispatch answered ${response.status}`)
    const jobId = (JSON.parse(response.text) as { id: string }).id
    if (!assigned.has(jobId)) await new Promise<void>((resolve) => arrivals.set(jobId, resolve))
    arrivals.delete(jobId)
    assigned.delete(jobId)
  }
  await load(CALLERS, 300, dispatchOne)
  const result = await load(CALLERS, SECONDS * 1000, dispatchOne)
  for (const worker of workers) await worker.kill()
  return result
}

interface Row {
  redis: string
  instances: number
  exchange: LoadResult
  exchangeCommands: Cost
  dispatch: LoadResult
  dispatchCommands: Cost
}

/** Both measurements through `urls`, with the commands per operation the servers on `ports()` counted. */
async function measure(redis: string, urls: string[], ports: () => Promise<number[]>): Promise<Row> {
  const before = await commandCalls(await ports())
  const exchanged = await exchange(urls)
  const middle = await commandCalls(await ports())
  const dispatched = await dispatch(urls)
  const after = await commandCalls(await ports())
  // Warm-up rounds and setup count too: divided by the measured operations, a slight overestimate.
  const row = { redis, instances: urls.length, exchange: exchanged, exchangeCommands: perOperation(before, middle, exchanged.requests), dispatch: dispatched, dispatchCommands: perOperation(middle, after, dispatched.requests) }
  console.log(`${redis} × ${urls.length}: exchange ${exchanged.perSecond}/s (p50 ${exchanged.latency.p50} ms, ${JSON.stringify(row.exchangeCommands)}), dispatch ${dispatched.perSecond}/s (p50 ${dispatched.latency.p50} ms, ${JSON.stringify(row.dispatchCommands)}), errors ${exchanged.errors + dispatched.errors}`)
  return row
}

/** Starts `count` Switchboards with `flags` and runs `use` on their URLs. */
async function withInstances<T>(count: number, flags: string[], use: (urls: string[]) => Promise<T>): Promise<T> {
  const servers: ChildServer[] = []
  try {
    for (let i = 0; i < count; i++) servers.push(await startSwitchboard(['--worker-ping-s', '30', ...flags]))
    return await use(servers.map((server) => server.url))
  } finally {
    for (const server of servers) await server.stop()
  }
}

const started = Date.now()
const rows: Row[] = []
const single = await spawnRedisServer(binaries.server)
if (!single) throw new Error('redis-server did not start')
const cluster = await startRedisCluster()
try {
  rows.push(await withInstances(1, ['--backend', 'redis', '--redis-url', single.url, '--redis-prefix', 'bench'], (urls) => measure('single', urls, async () => [single.port])))
  for (const count of [1, 2, 3]) {
    const flags = ['--backend', 'redis', '--redis-cluster', cluster.nodes, '--redis-prefix', `bench-${count}`]
    rows.push(await withInstances(count, flags, (urls) => measure('Cluster (3 masters)', urls, () => clusterMasters(clusterPorts(cluster.nodes)))))
  }
} finally {
  single.process.kill()
  cluster.stop()
  removeTempDirs()
}

const markdown = table(
  ['Redis', 'instances', 'exchange round trips/s', 'p50 ms', 'p99 ms', 'scripts (all commands) per round trip', 'busiest master', 'dispatches/s', 'p50 ms', 'p99 ms', 'scripts (all commands) per dispatch', 'busiest master'],
  rows.map((row) => [
    row.redis,
    row.instances,
    row.exchange.perSecond,
    row.exchange.latency.p50,
    row.exchange.latency.p99,
    `${row.exchangeCommands.scripts} (${row.exchangeCommands.all})`,
    `${row.exchangeCommands.busiest}%`,
    row.dispatch.perSecond,
    row.dispatch.latency.p50,
    row.dispatch.latency.p99,
    `${row.dispatchCommands.scripts} (${row.dispatchCommands.all})`,
    `${row.dispatchCommands.busiest}%`,
  ]),
)
const seconds = Math.round((Date.now() - started) / 1000)
console.log(`\nExchange (${PAIRS} pairs, 1 KiB, request and answer) and dispatch (${CALLERS} callers, ${WORKERS} workers of as many agent names), ${SECONDS} s each, ${seconds} s in all\n\n${markdown}\n`)
writeResult('cluster', { seconds: SECONDS, rows, markdown })
process.exit(0)
