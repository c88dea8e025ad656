/**
 * What `redis_wait_replicas = 1` costs: a put and the take of its message,
 * in-process against the mailbox store (no HTTP), on Redis behind Sentinels
 * (1 master, 1 replica, 3 Sentinels started here on loopback), without and
 * with WAIT, in alternating rounds so that a busy machine weighs on both
 * alike. Also the Redis commands each put-and-take costs (from the
 * master's INFO commandstats): with WAIT, the writes answered in one tick
 * share one WAIT, so under concurrency it costs less than a round trip
 * each. About half a minute; not part of `bun run bench`.
 *
 *   bun bench/wait.ts    (needs redis-server and redis-sentinel; writes bench/results/wait.json)
 */
import Redis from 'ioredis'
import { loadPlugin } from '../plugins/index'
import { createBackend, type Backend, type Client, type EntityId } from '../src/backend/index'
import { createLogger } from '../src/ops/logger'
import { deleteKeys } from '../test/support/redis'
import { masterUrl, sentinelBinaries, startSentinelGroup } from '../test/support/sentinel'
import { removeTempDirs } from '../test/support/temp'
import { load, round, table, writeResult, type LoadResult } from './lib'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 1.5)
const CONCURRENCY = [1, 64]

const binaries = sentinelBinaries()
if (typeof binaries === 'string') {
  console.log(`not measured: ${binaries}`)
  process.exit(0)
}

const client: Client = { id: 'bench', groups: [] }
const group = await startSentinelGroup()
const master = new Redis({ host: '127.0.0.1', port: await group.masterPort() })

/** Commands of each kind the master ran so far. */
async function commandCalls(): Promise<Record<string, number>> {
  const calls: Record<string, number> = {}
  for (const line of ((await master.info('commandstats')) as string).split('\n')) {
    const match = /^cmdstat_(\w+):calls=(\d+)/.exec(line)
    if (match) calls[match[1]!] = Number(match[2])
  }
  return calls
}

/** Puts then takes one message in each of `concurrency` mailboxes, over and over; one sample per put-and-take. */
async function putAndTake(backend: Backend, concurrency: number): Promise<{ result: LoadResult; commandsPerOperation: Record<string, number> }> {
  const boxes: EntityId[] = []
  for (let i = 0; i < concurrency; i++) {
    const id: EntityId = { uid: crypto.randomUUID(), name: null, role: 'agent' }
    await backend.mailboxes.create(client, id, null)
    boxes.push(id)
  }
  const source: EntityId = { uid: crypto.randomUUID(), name: null, role: 'user' }
  const operation = async (worker: number) => {
    const dest = boxes[worker]!
    const raw = JSON.stringify({ header: { src: source, dest, tag: crypto.randomUUID(), label: null, kind: 'response' }, body: {} })
    await backend.mailboxes.put(client, { raw, src: source, dest, tag: crypto.randomUUID(), label: null, kind: 'response' })
    if ((await backend.mailboxes.take(client, dest, { deadline: Date.now() + 5000 })) === null) throw new Error('no message')
  }
  await load(concurrency, 200, operation)
  const before = await commandCalls()
  const result = await load(concurrency, SECONDS * 1000, operation)
  const after = await commandCalls()
  const commandsPerOperation: Record<string, number> = {}
  for (const name of ['evalsha', 'wait']) commandsPerOperation[name] = round(((after[name] ?? 0) - (before[name] ?? 0)) / Math.max(result.requests, 1), 2)
  return { result, commandsPerOperation }
}

const logger = createLogger('silent')
const prefixes = [0, 1].map((wait) => `bench:wait-${wait}-${crypto.randomUUID()}`)
const backends = await Promise.all(
  [0, 1].map(async (wait) =>
    createBackend(await loadPlugin('redis'), { ...group.options, redis_prefix: prefixes[wait], redis_wait_replicas: wait }, { logger }),
  ),
)
const samples = new Map<string, { p50: number[]; p99: number[]; perSecond: number[]; commands: Record<string, number> }>()
try {
  for (let r = 0; r < ROUNDS; r++) {
    for (const concurrency of CONCURRENCY) {
      for (const wait of r % 2 === 0 ? [0, 1] : [1, 0]) {
        const { result, commandsPerOperation } = await putAndTake(backends[wait]!, concurrency)
        if (result.errors > 0) throw new Error(`${result.errors} operations failed (WAIT ${wait}, ${concurrency} at once)`)
        const key = `${wait}:${concurrency}`
        const entry = samples.get(key) ?? { p50: [], p99: [], perSecond: [], commands: commandsPerOperation }
        entry.p50.push(result.latency.p50)
        entry.p99.push(result.latency.p99)
        entry.perSecond.push(result.perSecond)
        samples.set(key, entry)
        console.log(`round ${r + 1} WAIT ${wait} × ${concurrency}: p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, ${result.perSecond}/s, ${JSON.stringify(commandsPerOperation)}`)
      }
    }
  }
} finally {
  for (const backend of backends) await backend.close()
  for (const prefix of prefixes) await deleteKeys(await masterUrl(group.sentinels), prefix)
  master.disconnect()
  group.stop()
  removeTempDirs()
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
const rows: (string | number)[][] = []
for (const concurrency of CONCURRENCY) {
  const [off, on] = [0, 1].map((wait) => samples.get(`${wait}:${concurrency}`)!)
  for (const [label, entry] of [['off', off], ['WAIT 1', on]] as const) {
    rows.push([label, concurrency, median(entry!.p50), median(entry!.p99), median(entry!.perSecond), entry!.commands.evalsha!, entry!.commands.wait!])
  }
  rows.push(['WAIT 1 ÷ off', concurrency, `${round(median(on!.p50) / median(off!.p50), 2)}×`, `${round(median(on!.p99) / median(off!.p99), 2)}×`, `${round(median(on!.perSecond) / median(off!.perSecond), 2)}×`, '', ''])
}
const markdown = table(['WAIT', 'at once', 'put + take p50 ms', 'p99 ms', 'put + take /s', 'EVALSHA per put + take', 'WAIT per put + take'], rows)
console.log(`\nredis_wait_replicas on Redis behind Sentinels (median of ${ROUNDS} alternating rounds of ${SECONDS} s)\n\n${markdown}\n`)
writeResult('wait', { rounds: ROUNDS, seconds: SECONDS, samples: Object.fromEntries(samples), markdown })
process.exit(0)
