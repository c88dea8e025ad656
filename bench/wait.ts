/**
 * What `redis_wait_replicas = 1` costs: a put and the take of its message,
 * in-process against the mailbox store (no HTTP), without and with WAIT, in
 * alternating rounds so that a busy machine weighs on both alike; on Redis
 * behind Sentinels (1 master, 1 replica, 3 Sentinels) and on a Redis Cluster
 * (3 masters + 3 replicas), both started here on loopback. On the Cluster
 * the sender's mailbox key and the receiver's mailbox are in the same
 * mailbox bucket (the put is one script, as behind Sentinels) or in two (an
 * HGET and two scripts, each with its WAIT; plugins/redis/keys.ts). Also what
 * each put-and-take costs Redis: round trips (counted in this process: the
 * commands ioredis sends, a pipeline once, WAIT's included), WAITs and the
 * commands run (from the masters' INFO commandstats, summed, those inside
 * scripts too), the settles of the takes (an HDEL a redelivery window later)
 * among them. With WAIT, the writes answered in one tick share a WAIT:
 * behind Sentinels all of them, on a Cluster those to one key
 * (plugins/redis/connection.ts `replicated`). About a minute (62 s on 2
 * shared cores); not part of `bun run bench`.
 *
 *   bun bench/wait.ts    (needs redis-server, redis-sentinel and redis-cli; writes bench/results/wait.json)
 */
import Redis from 'ioredis'
import { loadPlugin } from '../plugins/index'
import { RedisKeys } from '../plugins/redis/keys'
import { createBackend, type Backend, type Client, type EntityId } from '../src/backend/index'
import { createLogger } from '../src/ops/logger'
import { clusterBinaries, clusterMasters, clusterPorts, startRedisCluster } from '../test/support/cluster'
import { deleteKeys } from '../test/support/redis'
import { masterUrl, sentinelBinaries, startSentinelGroup } from '../test/support/sentinel'
import { removeTempDirs } from '../test/support/temp'
import { load, round, table, writeResult, type LoadResult } from './lib'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 0.5)
const CONCURRENCY = [1, 64]
const WARM_UP_MS = 1100

const missing = [sentinelBinaries(), clusterBinaries()].find((found) => typeof found === 'string')
if (missing !== undefined) {
  console.log(`not measured: ${missing}`)
  process.exit(0)
}

// Redis's own counts cannot tell the commands a client sent from those its scripts ran, so the round trips are
// counted where they are sent: every command an ioredis connection writes (a Cluster's go through its nodes'),
// a pipeline once (at its first command), and not the housekeeping of connections (as below).
const HOUSEKEEPING = ['info', 'ping', 'replconf', 'cluster', 'client', 'command', 'hello', 'sentinel', 'select', 'subscribe', 'psubscribe']
let roundTrips = 0
const sendCommand = Redis.prototype.sendCommand
Redis.prototype.sendCommand = function (this: Redis, command, stream) {
  if (!command.pipelineIndex && !HOUSEKEEPING.includes(command.name.toLowerCase())) roundTrips++
  return sendCommand.call(this, command, stream)
}

const client: Client = { id: 'bench', groups: [] }
const started = Date.now()
const [group, cluster] = await Promise.all([startSentinelGroup(), startRedisCluster()])
const masters = {
  sentinel: [new Redis({ host: '127.0.0.1', port: await group.masterPort() })],
  cluster: (await clusterMasters(clusterPorts(cluster.nodes))).map((port) => new Redis({ host: '127.0.0.1', port })),
}

/** Commands of each kind the servers ran so far, summed (those of replication and of these counts left out). */
async function commandCalls(servers: Redis[]): Promise<{ wait: number; others: number }> {
  const calls = { wait: 0, others: 0 }
  for (const server of servers) {
    for (const line of ((await server.info('commandstats')) as string).split('\n')) {
      const match = /^cmdstat_(\w+):calls=(\d+)/.exec(line)
      if (!match || HOUSEKEEPING.includes(match[1]!)) continue
      if (match[1] === 'wait') calls.wait += Number(match[2])
      else calls.others += Number(match[2])
    }
  }
  return calls
}

/** A mailbox's bucket in a Cluster (the prefix does not change it). */
const buckets = new RedisKeys('bench', { cluster: true })

interface Mode {
  name: string
  /** Without WAIT and with WAIT 1. */
  backends: Backend[]
  servers: Redis[]
  /** Where the sender's mailbox key is beside the receiver's: any bucket (Sentinel: there is one), the same, another. */
  source: 'any' | 'same' | 'other'
}

/** A user without a mailbox (as the callers of the exchange) whose mailbox key is where `mode` wants it beside `dest`'s. */
function sourceFor(mode: Mode, dest: EntityId): EntityId {
  for (;;) {
    const source: EntityId = { uid: crypto.randomUUID(), name: null, role: 'user' }
    if (mode.source === 'any' || (buckets.bucketOf(source) === buckets.bucketOf(dest)) === (mode.source === 'same')) return source
  }
}

interface Costs {
  roundTrips: number
  wait: number
  commands: number
}

/** Puts then takes one message in each of `concurrency` mailboxes, over and over; one sample per put-and-take. */
async function putAndTake(mode: Mode, wait: number, concurrency: number): Promise<{ result: LoadResult; perOperation: Costs }> {
  const backend = mode.backends[wait]!
  const pairs: { source: EntityId; dest: EntityId }[] = []
  for (let i = 0; i < concurrency; i++) {
    const dest: EntityId = { uid: crypto.randomUUID(), name: null, role: 'agent' }
    await backend.mailboxes.create(client, dest, null)
    pairs.push({ source: sourceFor(mode, dest), dest })
  }
  const operation = async (worker: number) => {
    const { source, dest } = pairs[worker]!
    const raw = JSON.stringify({ header: { src: source, dest, tag: crypto.randomUUID(), label: null, kind: 'response' }, body: {} })
    await backend.mailboxes.put(client, { raw, src: source, dest, tag: crypto.randomUUID(), label: null, kind: 'response' })
    if ((await backend.mailboxes.take(client, dest, { deadline: Date.now() + 5000 })) === null) throw new Error('no message')
  }
  // Longer than the redelivery window (1 s): a take is settled (an HDEL per mailbox bucket, and its WAIT) a window
  // after it, so the settles counted below are this load's own, not those of the run before.
  await load(concurrency, WARM_UP_MS, operation)
  const [before, tripsBefore] = [await commandCalls(mode.servers), roundTrips]
  const result = await load(concurrency, SECONDS * 1000, operation)
  const [after, tripsAfter] = [await commandCalls(mode.servers), roundTrips]
  const per = (count: number) => round(count / Math.max(result.requests, 1), 2)
  return { result, perOperation: { roundTrips: per(tripsAfter - tripsBefore), wait: per(after.wait - before.wait), commands: per(after.others - before.others) } }
}

const logger = createLogger('silent')
const prefix = (name: string, wait: number) => `bench:wait-${name}-${wait}-${crypto.randomUUID()}`
const sentinelPrefixes = [0, 1].map((wait) => prefix('sentinel', wait))
const sentinelBackends = await Promise.all(
  [0, 1].map(async (wait) => createBackend(await loadPlugin('redis'), { ...group.options, redis_prefix: sentinelPrefixes[wait], redis_wait_replicas: wait }, { logger })),
)
const clusterBackends = await Promise.all(
  [0, 1].map(async (wait) => createBackend(await loadPlugin('redis'), { redis_cluster: cluster.nodes, redis_prefix: prefix('cluster', wait), redis_wait_replicas: wait }, { logger })),
)
const modes: Mode[] = [
  { name: 'Sentinel', backends: sentinelBackends, servers: masters.sentinel, source: 'any' },
  { name: 'Cluster, same bucket', backends: clusterBackends, servers: masters.cluster, source: 'same' },
  { name: 'Cluster, two buckets', backends: clusterBackends, servers: masters.cluster, source: 'other' },
]
const samples = new Map<string, { p50: number[]; p99: number[]; perSecond: number[]; perOperation: Costs[] }>()
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of modes) {
      for (const concurrency of CONCURRENCY) {
        for (const wait of r % 2 === 0 ? [0, 1] : [1, 0]) {
          const { result, perOperation } = await putAndTake(mode, wait, concurrency)
          if (result.errors > 0) throw new Error(`${result.errors} operations failed (${mode.name}, WAIT ${wait}, ${concurrency} at once)`)
          const key = `${mode.name}:${wait}:${concurrency}`
          const entry = samples.get(key) ?? { p50: [], p99: [], perSecond: [], perOperation: [] }
          entry.p50.push(result.latency.p50)
          entry.p99.push(result.latency.p99)
          entry.perSecond.push(result.perSecond)
          entry.perOperation.push(perOperation)
          samples.set(key, entry)
          console.log(`round ${r + 1} ${mode.name}, WAIT ${wait} × ${concurrency}: p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, ${result.perSecond}/s, ${JSON.stringify(perOperation)}`)
        }
      }
    }
  }
} finally {
  for (const backend of [...sentinelBackends, ...clusterBackends]) await backend.close()
  for (const prefix of sentinelPrefixes) await deleteKeys(await masterUrl(group.sentinels), prefix)
  for (const server of [...masters.sentinel, ...masters.cluster]) server.disconnect()
  group.stop()
  cluster.stop()
  removeTempDirs()
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
const rows: (string | number)[][] = []
for (const mode of modes) {
  for (const concurrency of CONCURRENCY) {
    const [off, on] = [0, 1].map((wait) => samples.get(`${mode.name}:${wait}:${concurrency}`)!)
    for (const [label, entry] of [['off', off], ['WAIT 1', on]] as const) {
      const costs = (name: keyof Costs) => median(entry!.perOperation.map((costs) => costs[name]))
      rows.push([mode.name, label, concurrency, median(entry!.perSecond), median(entry!.p50), median(entry!.p99), costs('roundTrips'), costs('wait'), costs('commands')])
    }
    // Each round's with and without, run one after the other, are compared: a burst of other work on the machine
    // spoils one round's pair rather than the medians of one side.
    const ratio = (values: (entry: typeof off) => number[]) => `${round(median(values(on).map((value, r) => value / values(off)[r]!)), 2)}×`
    rows.push([mode.name, 'WAIT 1 ÷ off', concurrency, ratio((entry) => entry!.perSecond), ratio((entry) => entry!.p50), ratio((entry) => entry!.p99), '', '', ''])
  }
}
const markdown = table(['Redis', 'WAIT', 'at once', 'put + take /s', 'p50 ms', 'p99 ms', 'round trips per put + take', 'WAIT per put + take', 'commands run per put + take (inside scripts too; WAIT apart)'], rows)
const seconds = Math.round((Date.now() - started) / 1000)
console.log(`\nredis_wait_replicas behind Sentinels and on a 3-master Cluster (median of ${ROUNDS} alternating rounds of ${SECONDS} s; ÷: median of each round's ratio), ${seconds} s in all\n\n${markdown}\n`)
writeResult('wait', { rounds: ROUNDS, seconds: SECONDS, totalSeconds: seconds, samples: Object.fromEntries(samples), markdown })
process.exit(0)
