/**
 * Exchange round trip over Academy's wire format: a user sends a request
 * (PUT /message), the agent receives it on its SSE listener and answers
 * (PUT /message), the user receives the answer on its own listener. Pairs
 * run concurrently; on each backend; with a raw ioredis RPUSH/BLPOP round
 * trip as the floor any Redis-backed exchange pays.
 */
import Redis from 'ioredis'
import { deleteKeys } from '../test/support/redis'
import { listenBody, mailboxBody, newAgent, newUser, sendBody } from './academy'
import { benchStore, listen, load, redisAvailable, REDIS_URL, request, startSwitchboard, table, writeResult, type BenchBackend, type LoadResult } from './lib'

const SECONDS = Number(process.env.BENCH_SECONDS ?? 2)
const PAIRS = [1, 64]
const SIZES = [1024, 64 * 1024]

async function exchangeRoundTrips(url: string, pairs: number, size: number): Promise<LoadResult> {
  const clients = await Promise.all(
    Array.from({ length: pairs }, async () => {
      const [user, agent] = [newUser(), newAgent()]
      await request(`${url}/mailbox`, 'POST', mailboxBody(user))
      await request(`${url}/mailbox`, 'POST', mailboxBody(agent))
      const [userInbox, agentInbox] = await Promise.all([listen(`${url}/mailbox/listen`, listenBody(user)), listen(`${url}/mailbox/listen`, listenBody(agent))])
      return { user, agent, userInbox, agentInbox, requestBody: sendBody(user, agent, 'request', size), responseBody: sendBody(agent, user, 'response', size) }
    }),
  )
  const roundTrip = async (worker: number) => {
    const pair = clients[worker]!
    const sent = await request(`${url}/message`, 'PUT', pair.requestBody)
    if (sent.status !== 200) throw new Error(`send ${sent.status}`)
    await pair.agentInbox.next()
    const answered = await request(`${url}/message`, 'PUT', pair.responseBody)
    if (answered.status !== 200) throw new Error(`answer ${answered.status}`)
    await pair.userInbox.next()
  }
  await load(pairs, 300, roundTrip)
  const result = await load(pairs, SECONDS * 1000, roundTrip)
  for (const pair of clients) {
    pair.userInbox.close()
    pair.agentInbox.close()
  }
  return result
}

/** The floor for Redis: RPUSH a request, BLPOP it, RPUSH the answer, BLPOP it. */
async function redisRoundTrips(pairs: number, size: number): Promise<LoadResult> {
  const prefix = `bench:${crypto.randomUUID()}`
  const producer = new Redis(REDIS_URL)
  const blockers = Array.from({ length: pairs }, () => [new Redis(REDIS_URL), new Redis(REDIS_URL)] as const)
  const payload = 'x'.repeat(size)
  const roundTrip = async (worker: number) => {
    const [agentSide, userSide] = blockers[worker]!
    await producer.rpush(`${prefix}:agent:${worker}`, payload)
    await agentSide.blpop(`${prefix}:agent:${worker}`, 5)
    await producer.rpush(`${prefix}:user:${worker}`, payload)
    await userSide.blpop(`${prefix}:user:${worker}`, 5)
  }
  await load(pairs, 300, roundTrip)
  const result = await load(pairs, SECONDS * 1000, roundTrip)
  producer.disconnect()
  for (const pair of blockers) for (const client of pair) client.disconnect()
  // A round trip cut off by the end of the run can leave a list behind.
  await deleteKeys(REDIS_URL, prefix)
  return result
}

const rows: (string | number)[][] = []
const figures: Record<string, unknown>[] = []
const hasRedis = await redisAvailable()
const backends: BenchBackend[] = ['memory', 'sqlite', 'redis']
for (const backend of backends) {
  if (backend === 'redis' && !hasRedis) {
    console.log(`redis: no Redis answers at ${REDIS_URL}; skipped`)
    continue
  }
  const store = benchStore(backend)
  let server
  try {
    server = await startSwitchboard(store.flags)
  } catch (error) {
    console.log(`${backend}: could not start (${(error as Error).message.split('\n')[0]}); skipped`)
    await store.remove()
    continue
  }
  for (const pairs of PAIRS) {
    for (const size of SIZES) {
      const result = await exchangeRoundTrips(server.url, pairs, size)
      const floor = backend === 'redis' ? await redisRoundTrips(pairs, size) : null
      figures.push({ backend, pairs, sizeBytes: size, result, redisFloor: floor })
      rows.push([
        backend,
        pairs,
        `${size / 1024} KB`,
        result.latency.p50,
        result.latency.p99,
        result.perSecond * 2,
        floor ? `${floor.latency.p50} / ${floor.latency.p99}` : '—',
        result.errors,
      ])
      console.log(`${backend} pairs=${pairs} size=${size}: p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, ${result.perSecond * 2} msg/s`)
    }
  }
  await server.stop()
  await store.remove()
}

const markdown = table(['backend', 'pairs', 'message', 'round trip p50 ms', 'p99 ms', 'messages/s', 'raw Redis RPUSH/BLPOP p50 / p99 ms', 'errors'], rows)
console.log(`\nExchange round trip (PUT + SSE listen, both directions; ${SECONDS} s per row)\n\n${markdown}\n`)
writeResult('exchange', { seconds: SECONDS, figures, markdown })
