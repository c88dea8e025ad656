/**
 * A real Redis for tests: REDIS_URL if set, else a Redis answering on
 * 127.0.0.1:6379, else a `redis-server` started on a free port for this test
 * process. Without any, Redis tests are skipped with the reason printed —
 * except under CI=true, where a missing Redis fails the run.
 */
import net from 'node:net'
import Redis from 'ioredis'
import { freePort } from './wait'

export interface TestRedis {
  /** The URL to use, or null when no Redis can be had. */
  url: string | null
  /** Why there is none (printed once). */
  reason: string | null
}

/** Whether something at host:port answers a Redis PING. */
function answersPing(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port })
    const done = (answer: boolean) => {
      clearTimeout(timer)
      socket.destroy()
      resolve(answer)
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (data) => done(data.toString().startsWith('+PONG')))
    socket.on('error', () => done(false))
  })
}

/** Starts redis-server without persistence on `port` (a free one by default), with more `settings` flags; resolves once it answers PING, or null. */
export async function spawnRedisServer(binary: string, port?: number, settings: string[] = []): Promise<{ url: string; port: number; process: ReturnType<typeof Bun.spawn> } | null> {
  const chosen = port ?? (await freePort())
  const child = Bun.spawn([binary, '--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...settings], { stdout: 'ignore', stderr: 'ignore' })
  process.on('exit', () => child.kill())
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await answersPing('127.0.0.1', chosen)) return { url: `redis://127.0.0.1:${chosen}`, port: chosen, process: child }
    await Bun.sleep(50)
  }
  child.kill()
  return null
}

async function locate(): Promise<TestRedis> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, reason: null }
  if (await answersPing('127.0.0.1', 6379)) return { url: 'redis://127.0.0.1:6379', reason: null }
  const binary = Bun.which('redis-server')
  if (!binary) return { url: null, reason: 'no REDIS_URL, nothing answers on 127.0.0.1:6379, and no redis-server binary on PATH' }
  const started = await spawnRedisServer(binary)
  return started ? { url: started.url, reason: null } : { url: null, reason: `${binary} did not start` }
}

let located: Promise<TestRedis> | null = null

/** The Redis tests use, found once per process. Throws under CI=true when there is none; otherwise prints why Redis tests are skipped. */
export function testRedis(): Promise<TestRedis> {
  located ??= locate().then((found) => {
    if (found.url === null) {
      if (process.env.CI === 'true') throw new Error(`Redis tests cannot run under CI: ${found.reason}`)
      console.warn(`Skipping Redis tests: ${found.reason}`)
    }
    return found
  })
  return located
}

/** A random key prefix for one backend or test. */
export function randomPrefix(): string {
  return `sbtest-${crypto.randomUUID()}`
}

/** Hands `use` each batch of the keys at `url` that match `pattern` (SCAN MATCH: tests and benchmarks only, as it walks the keyspace). */
async function eachBatch(url: string, pattern: string, use: (client: Redis, keys: string[]) => Promise<unknown>): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
  try {
    await client.connect()
    let cursor = '0'
    do {
      const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await use(client, keys)
    } while (cursor !== '0')
  } finally {
    client.disconnect()
  }
}

/** The keys at `url` that match `pattern`. */
export async function keysMatching(url: string, pattern: string): Promise<string[]> {
  const found: string[] = []
  await eachBatch(url, pattern, async (_, keys) => found.push(...keys))
  return found
}

/** Deletes the keys at `url` that match `pattern`; resolves with how many there were. */
export async function deleteMatching(url: string, pattern: string): Promise<number> {
  let deleted = 0
  await eachBatch(url, pattern, async (client, keys) => (deleted += await client.unlink(...keys)))
  return deleted
}

/** Deletes every key under `prefix`. */
export const deleteKeys = (url: string, prefix: string): Promise<number> => deleteMatching(url, `${prefix}:*`)
