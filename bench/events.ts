/**
 * Event fan-out: one event (a mailbox created) reaching every open
 * `GET /events` stream, timed from the call that causes it to its arrival at
 * each subscriber; p50/p99 over every subscriber and round. The baseline, in
 * the same run, is the same event reaching a single subscriber. On the memory
 * backend and on Redis (skipped, with the reason, when none answers at
 * REDIS_URL), where every event passes the Redis stream and pub/sub before it
 * is fanned out. Switchboard runs as a separate process; the subscribers run
 * here, each on its own connection.
 *
 *   bun bench/events.ts       (writes bench/results/events.json)
 */
import { benchStore, listen, redisAvailable, REDIS_URL, request, startSwitchboard, summarize, table, writeResult, type BenchBackend, type Listener, type Summary } from './lib'

const SUBSCRIBERS = Number(process.env.BENCH_SUBSCRIBERS ?? 1000)
const ROUNDS = Number(process.env.EVENTS_BENCH_ROUNDS ?? 30)

interface Row {
  backend: BenchBackend
  subscribers: number
  latency: Summary
}

/** Opens `count` streams, then emits ROUNDS events one at a time, each awaited at every subscriber. */
async function measure(url: string, backend: BenchBackend, count: number): Promise<Row> {
  const streams: Listener[] = []
  for (let opened = 0; opened < count; opened += 100) {
    streams.push(...(await Promise.all(Array.from({ length: Math.min(100, count - opened) }, () => listen(`${url}/events?types=mailbox.created`, '')))))
  }
  const latencies: number[] = []
  // Round -1 warms up the connections and the code paths, and is not counted.
  for (let round = -1; round < ROUNDS; round++) {
    const uid = crypto.randomUUID()
    const arrivals = streams.map((stream) => stream.next().then(() => performance.now()))
    const started = performance.now()
    const answer = await request(`${url}/mailbox`, 'POST', JSON.stringify({ mailbox: JSON.stringify({ uid, name: null, role: 'agent' }) }))
    if (answer.status !== 200) throw new Error(`POST /mailbox answered ${answer.status}: ${answer.text}`)
    const arrived = await Promise.all(arrivals)
    if (round >= 0) for (const at of arrived) latencies.push(at - started)
  }
  for (const stream of streams) stream.close()
  return { backend, subscribers: count, latency: summarize(latencies) }
}

const rows: Row[] = []
const skipped: string[] = []
for (const backend of ['memory', 'redis'] as BenchBackend[]) {
  if (backend === 'redis' && !(await redisAvailable())) {
    skipped.push(`redis: no Redis answers at ${REDIS_URL}`)
    continue
  }
  const store = benchStore(backend)
  // Every subscriber is the same anonymous client: the per-client bound on open streams is lifted for the run.
  const server = await startSwitchboard([...store.flags, '--max-waiting-per-client', '0'])
  try {
    for (const count of [1, SUBSCRIBERS]) rows.push(await measure(server.url, backend, count))
  } finally {
    await server.stop()
    await store.remove()
  }
}

console.log(
  table(
    ['backend', 'subscribers', 'events', 'p50 ms', 'p99 ms', 'mean ms'],
    rows.map((row) => [row.backend, row.subscribers === 1 ? '1 (baseline)' : row.subscribers, ROUNDS, row.latency.p50, row.latency.p99, row.latency.mean]),
  ),
)
for (const reason of skipped) console.log(`\nskipped ${reason}`)
writeResult('events', { subscribers: SUBSCRIBERS, rounds: ROUNDS, rows, skipped })
