/**
 * `bun run bench` end to end, with every duration and count turned down: each
 * script must run to its end, print its table and write its JSON, and every
 * request it sends must be answered. The figures of so short a run mean
 * nothing; what this guards is that the benchmarks keep working as the code
 * they measure changes. The run writes into a temporary folder (BENCH_OUT),
 * never over the committed results, and its Redis rows go to a Redis started
 * for this test, which it must leave as empty as it found it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import Redis from 'ioredis'
import { clusterBinaries } from '../support/cluster'
import { spawnRedisServer } from '../support/redis'
import { BUN, ROOT, runToEnd } from '../support/process'
import { tempDir } from '../support/temp'

/** Whether the Redis Cluster rows can run here (CI installs what they need; elsewhere the script says what is missing). */
const clusterHere = typeof clusterBinaries() !== 'string'
const SECTIONS = ['Footprint', 'Framework ceiling', 'Exchange round trip', 'Dispatch', 'Event fan-out', 'A2A proxy', 'Scale', 'Soak', ...(clusterHere ? ['Redis Cluster'] : [])]
const SHORT = {
  // wrk, when installed, drives the ceiling's load, and it runs for whole seconds only.
  BENCH_SECONDS: '1',
  BENCH_ROUNDS: '1',
  BENCH_PAIRS: '1',
  DISPATCH_BENCH_SAMPLES: '10',
  DISPATCH_BENCH_RUN_MS: '200',
  BENCH_SUBSCRIBERS: '50',
  EVENTS_BENCH_ROUNDS: '2',
  A2A_BENCH_RUN_MS: '150',
  BENCH_LISTENERS: '200',
  BENCH_WORKERS: '20',
  SOAK_SECONDS: '2',
  SOAK_WARMUP_SECONDS: '1',
}

const NAMES = ['footprint', 'ceiling', 'exchange', 'dispatch', 'events', 'a2a', 'scale', 'soak']
/** The committed results, which a run into BENCH_OUT must not touch. */
const COMMITTED = [join(ROOT, 'bench/RESULTS.md'), ...[...NAMES, 'cluster'].map((name) => join(ROOT, 'bench/results', `${name}.json`))]
const modified = () => COMMITTED.map((path) => statSync(path).mtimeMs)

const out = tempDir('bench-run')
let run: { code: number; stdout: string; stderr: string }
let committedBefore: number[] = []
let redisUrl: string | null = null
let stopRedis = () => {}

/** A JSON result of the run. */
const result = (name: string) => JSON.parse(readFileSync(join(out, 'results', `${name}.json`), 'utf8'))

beforeAll(async () => {
  const binary = Bun.which('redis-server')
  const redis = binary ? await spawnRedisServer(binary) : null
  if (redis === null && process.env.CI === 'true') throw new Error('the bench run needs redis-server for its Redis rows')
  if (redis) {
    redisUrl = redis.url
    stopRedis = () => redis.process.kill()
  }
  committedBefore = modified()
  // Without a Redis of its own the run is pointed where none answers, so it skips its Redis rows rather than use another.
  run = await runToEnd([BUN, join(ROOT, 'bench/run.ts')], { ...SHORT, BENCH_OUT: out, REDIS_URL: redisUrl ?? 'redis://127.0.0.1:1' })
}, 280_000)

afterAll(() => stopRedis())

describe('bun run bench', () => {
  it('runs every script to its end and writes RESULTS.md with a section for each, timed', () => {
    expect(run.code).toBe(0)
    const markdown = readFileSync(join(out, 'RESULTS.md'), 'utf8')
    expect(markdown).toMatch(/Whole run: \d+ s/)
    expect(markdown.split('\n').filter((line) => line.includes('did not finish'))).toEqual([])
    for (const title of SECTIONS) expect(markdown).toMatch(new RegExp(`## ${title}\\n\\n\`bench/[a-z0-9]+\\.ts\`, \\d+ s\\n\\n\\| `))
  })

  it('writes where BENCH_OUT says, leaving the committed results as they are', () => {
    expect(run.stdout).toContain(`wrote ${join(out, 'RESULTS.md')}`)
    for (const name of NAMES) expect(result(name).name).toBe(name)
    expect(modified()).toEqual(committedBefore)
  })

  it('measures the binary it builds: size, idle memory, time to the first /healthz', () => {
    const footprint = result('footprint')
    expect(footprint.binaryMiB).toBeGreaterThan(1)
    expect(footprint.idleRssMiB).toBeGreaterThan(1)
    expect(footprint.readyMs.p50).toBeGreaterThan(0)
  })

  it('gets an answer to every request of the ceiling, the exchange, dispatch and the A2A proxy', () => {
    const ceiling = result('ceiling')
    expect(ceiling.rows).toHaveLength(8)
    for (const row of ceiling.rows) {
      expect(row.result.requests).toBeGreaterThan(0)
      expect(row.result.errors).toBe(0)
    }
    const exchange = result('exchange')
    const backends = new Set(exchange.figures.map((figure: { backend: string }) => figure.backend))
    expect([...backends].sort()).toEqual(redisUrl !== null ? ['memory', 'redis', 'sqlite'] : ['memory', 'sqlite'])
    for (const figure of exchange.figures) {
      expect(figure.result.requests).toBeGreaterThan(0)
      expect(figure.result.errors).toBe(0)
    }
    const dispatch = result('dispatch')
    expect(dispatch.rows.length).toBe(backends.size * 3)
    for (const row of dispatch.rows) {
      expect(row.latency.count).toBe(10)
      expect(row.failures).toBe(0)
    }
    expect(dispatch.backlog.map((row: { backend: string }) => row.backend).sort()).toEqual([...backends].sort())
    for (const row of dispatch.backlog) {
      expect(row.waiting).toBe(100)
      expect(row.jobsPerSecond).toBeGreaterThan(0)
      expect(row.enqueueToAssignment.count).toBeGreaterThan(0)
      expect(row.failures).toBe(0)
    }
    const a2a = result('a2a')
    // JSON-RPC at two sizes and HTTP+JSON at one, each at 1 and 64 callers, each over its own bare forwarder.
    expect(a2a.send.map((row: { binding: string }) => row.binding)).toEqual(['JSON-RPC', 'JSON-RPC', 'JSON-RPC', 'JSON-RPC', 'HTTP+JSON', 'HTTP+JSON'])
    for (const row of a2a.send) {
      expect(row.proxied_rps).toBeGreaterThan(0)
      expect(row.of_forwarder).toBeGreaterThan(0)
      expect(row.errors).toBe(0)
    }
  })

  it.skipIf(!clusterHere && process.env.CI !== 'true')('runs the exchange and dispatch on a single Redis and on a 3-master Cluster with 1, 2 and 3 instances, the Cluster spreading the exchange over its masters', () => {
    expect(clusterBinaries(), 'the Redis Cluster rows need redis-server and redis-cli').not.toBeTypeOf('string')
    const rows = result('cluster').rows as { redis: string; instances: number; exchange: { errors: number; requests: number }; exchangeCommands: { busiest: number }; dispatch: { errors: number; requests: number } }[]
    expect(rows.map((row) => `${row.redis} × ${row.instances}`)).toEqual(['single × 1', 'Cluster (3 masters) × 1', 'Cluster (3 masters) × 2', 'Cluster (3 masters) × 3'])
    for (const row of rows) {
      expect(row.exchange.requests).toBeGreaterThan(0)
      expect(row.dispatch.requests).toBeGreaterThan(0)
      expect(row.exchange.errors + row.dispatch.errors).toBe(0)
    }
    // One Redis runs every command; on the Cluster no master runs nearly all of the exchange's (its mailboxes spread over 16 buckets; a third each at best).
    expect(rows[0]!.exchangeCommands.busiest).toBe(100)
    for (const row of rows.slice(1)) expect(row.exchangeCommands.busiest).toBeLessThan(80)
  })

  it.skipIf(Bun.which('redis-server') === null)('leaves no key behind in the Redis it used', async () => {
    expect(redisUrl).not.toBeNull()
    const client = new Redis(redisUrl!)
    try {
      expect(await client.dbsize()).toBe(0)
    } finally {
      client.disconnect()
    }
  })

  it('fans one event out to every subscriber it opened, on each backend it could reach', () => {
    const events = result('events')
    expect(events.rows.map((row: { backend: string; subscribers: number }) => `${row.backend}:${row.subscribers}`)).toEqual(
      (redisUrl !== null ? ['memory', 'redis'] : ['memory']).flatMap((backend) => [`${backend}:1`, `${backend}:${SHORT.BENCH_SUBSCRIBERS}`]),
    )
    for (const row of events.rows) expect(row.latency.count).toBe(row.subscribers * Number(SHORT.EVENTS_BENCH_ROUNDS))
  })

  it('opens the listeners and connects the workers it was asked for, and soaks within its bounds', () => {
    const scale = result('scale')
    expect(scale.listeners).toBe(Number(SHORT.BENCH_LISTENERS))
    expect(scale.workers).toBe(Number(SHORT.BENCH_WORKERS))
    const soak = result('soak')
    expect(soak.rounds).toBeGreaterThan(0)
    expect(soak.within).toBe(true)
  })

  it('mixes every attack shape into the soak, each refused (or recovered) as designed, and keeps RSS within its stated bound', () => {
    const soak = result('soak')
    const rows = soak.attacks as { shape: string; runs: number; ok: boolean; failures: string[] }[]
    expect(rows).toHaveLength(10)
    expect(rows.map((row) => ({ shape: row.shape, ok: row.ok, failures: row.failures }))).toEqual(rows.map((row) => ({ shape: row.shape, ok: true, failures: [] })))
    for (const row of rows) expect(row.runs).toBeGreaterThan(0)
    expect(soak.peakGrowthMib).toBeLessThanOrEqual(soak.peakBoundMib)
    expect(soak.rssWithin).toBe(true)
    expect(soak.markdown).toContain('| attack | designed outcome |')
  })
})
