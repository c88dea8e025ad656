/**
 * The per-caller limits: a token bucket per caller (429 with Retry-After and
 * X-RateLimit-* headers, in each surface's error shape) and a cap on the
 * long-polls and listen streams one client holds open. WebSocket upgrades
 * draw on the same buckets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import net from 'node:net'
import { agentId, bodies } from '../support/academy'
import { startServer, writeTokensFile, type TestServer } from '../support/app'
import { openStream, rawRequest, type EventStream } from '../support/http'
import { RateLimiter } from '../../src/http/limits'
import { TestWorker } from '../modules/workers/worker'

describe('the rate limiter', () => {
  it('allows a burst, then one request per refill interval, and says when to retry', () => {
    let now = 0
    const limiter = new RateLimiter({ perSecond: 2, burst: 3 }, () => now)
    expect([1, 2, 3].map(() => limiter.take('a').allowed)).toEqual([true, true, true])
    const refused = limiter.take('a')
    expect(refused).toMatchObject({ allowed: false, limit: 3, remaining: 0, retryAfterSeconds: 1, resetSeconds: 2 })
    expect(limiter.take('b').allowed).toBe(true)
    now = 500
    expect(limiter.take('a')).toMatchObject({ allowed: true, remaining: 0 })
    expect(limiter.take('a').allowed).toBe(false)
  })

  it('forgets callers whose bucket has refilled, so memory follows active callers only', () => {
    let now = 0
    const limiter = new RateLimiter({ perSecond: 10, burst: 5 }, () => now)
    for (let i = 0; i < 100; i++) limiter.take(`caller-${i}`)
    expect(limiter.size).toBe(100)
    now = 120_000
    limiter.take('late')
    expect(limiter.size).toBe(1)
  })
})

const tokens = writeTokensFile([
  { token: 'token-a', client: 'client-a' },
  { token: 'token-b', client: 'client-b' },
])
const A = { authorization: 'Bearer token-a' }
const B = { authorization: 'Bearer token-b' }

describe('rate limits on a real server', () => {
  let running: TestServer

  beforeAll(async () => {
    // A refill of one token per 100 s: nothing comes back while the test runs.
    running = await startServer({ auth: 'token', tokens_file: tokens, rate_limit_per_s: 0.01, rate_limit_burst: 3 })
  })
  afterAll(() => running?.close())

  it('counts each token client on its own, sets the X-RateLimit headers and answers 429 in each surface shape', async () => {
    const first = await rawRequest(`${running.url}/workers`, { headers: A })
    expect(first.status).toBe(200)
    expect(first.headers).toMatchObject({ 'x-ratelimit-limit': '3', 'x-ratelimit-remaining': '2', 'x-ratelimit-reset': '100' })
    await rawRequest(`${running.url}/workers`, { headers: A })
    await rawRequest(`${running.url}/workers`, { headers: A })

    const exchange = await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(agentId()), headers: A })
    expect(exchange.status).toBe(429)
    expect(exchange.headers['content-type']).toStartWith('text/plain')
    expect(exchange.text).toStartWith('Too many requests')
    expect(exchange.headers).toMatchObject({ 'retry-after': '100', 'x-ratelimit-limit': '3', 'x-ratelimit-remaining': '0' })

    const videoSdk = await rawRequest(`${running.url}/v2/agent/dispatch`, { method: 'POST', body: '{}', headers: { authorization: 'token-a' } })
    expect(videoSdk.status).toBe(429)
    expect(JSON.parse(videoSdk.text)).toEqual({ message: expect.stringContaining('Too many requests') })

    const native = await rawRequest(`${running.url}/jobs`, { headers: A })
    expect(native.status).toBe(429)
    expect(JSON.parse(native.text)).toMatchObject({ error: { code: 'TOO_MANY_REQUESTS' } })

    const proxy = await rawRequest(`${running.url}/workspaces/${crypto.randomUUID()}/a2a`, { method: 'POST', body: '{}', headers: A })
    expect(proxy.status).toBe(429)
    expect(JSON.parse(proxy.text)).toMatchObject({ jsonrpc: '2.0', error: { data: { status: 429 } } })

    const other = await rawRequest(`${running.url}/workers`, { headers: B })
    expect(other.status).toBe(200)
    expect(other.headers['x-ratelimit-remaining']).toBe('2')
  })

  it('never limits the health probes', async () => {
    for (let i = 0; i < 10; i++) expect((await rawRequest(`${running.url}/healthz`)).status).toBe(200)
  })

  it('counts callers with unknown tokens by their address, so made-up tokens buy no fresh bucket', async () => {
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) statuses.push((await rawRequest(`${running.url}/workers`, { headers: { authorization: `Bearer made-up-${i}` } })).status)
    expect(statuses).toEqual([403, 403, 403, 429, 429])
  })
})

/** Sends a WebSocket upgrade of /agent on a raw socket; resolves with what the server answered before closing. */
function upgradeAgent(url: string, authorization?: string): Promise<string> {
  const { port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), '127.0.0.1')
    let received = ''
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString()
      // A handshake that went through leaves the socket open: what came is the answer.
      if (received.includes('\r\n\r\n') && received.startsWith('HTTP/1.1 101')) socket.destroy()
    })
    socket.on('close', () => resolve(received))
    socket.on('error', reject)
    const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64')
    socket.write(
      `GET /agent HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${authorization ? `Authorization: ${authorization}\r\n` : ''}\r\n`,
    )
  })
}

describe('rate limits on WebSocket upgrades', () => {
  let running: TestServer
  beforeAll(async () => {
    running = await startServer({ rate_limit_per_s: 0.01, rate_limit_burst: 3 })
  })
  afterAll(() => running?.close())

  it('count an /agent upgrade against its caller\'s bucket, shared with its requests, and refuse it with 429 before any handshake', async () => {
    expect((await rawRequest(`${running.url}/workers`)).status).toBe(200)
    const worker = await TestWorker.connect(running.url)
    expect(worker.isOpen).toBe(true)
    expect(await upgradeAgent(running.url, 'Bearer worker-token')).toStartWith('HTTP/1.1 101')
    const refused = await upgradeAgent(running.url, 'Bearer worker-token')
    expect(refused).toStartWith('HTTP/1.1 429 Too Many Requests\r\n')
    expect(refused.toLowerCase()).toContain('retry-after: 100\r\n')
    expect(refused.toLowerCase()).toContain('x-ratelimit-remaining: 0\r\n')
    expect(refused).not.toContain('Sec-WebSocket-Accept')
    expect(refused).toEndWith('\r\n\r\nToo many requests: try again in 100 s')
    // The bucket the upgrades emptied is the one the caller's requests draw on.
    expect((await rawRequest(`${running.url}/workers`)).status).toBe(429)
    await worker.close()
  })
})

describe('rate limits by default', () => {
  it('are off: no X-RateLimit headers and no 429', async () => {
    const running = await startServer()
    try {
      const statuses = new Set<number>()
      for (let i = 0; i < 250; i++) statuses.add((await rawRequest(`${running.url}/workers`)).status)
      expect([...statuses]).toEqual([200])
      expect((await rawRequest(`${running.url}/workers`)).headers['x-ratelimit-limit']).toBeUndefined()
    } finally {
      await running.close()
    }
  })
})

describe('the waiting limit', () => {
  let running: TestServer
  const streams: EventStream[] = []
  const inbox = agentId()

  beforeAll(async () => {
    running = await startServer({ auth: 'token', tokens_file: tokens, max_waiting_per_client: 2, sse_ping_s: 30 })
    const mine = await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(inbox), headers: A })
    expect(mine.status).toBe(200)
  })
  afterAll(async () => {
    for (const stream of streams) stream.close()
    await running?.close()
  })

  const listen = async (headers: Record<string, string>) => {
    const stream = await openStream(`${running.url}/mailbox/listen`, { body: bodies.receive(inbox, 30), headers })
    streams.push(stream)
    return stream
  }

  it('refuses a client its third listen stream or long-poll with a text/plain 429, and admits it again once one closes', async () => {
    const first = await listen(A)
    const second = await listen(A)
    expect([first.status, second.status]).toEqual([200, 200])
    await first.waitFor('retry: 0')

    const third = await rawRequest(`${running.url}/mailbox/listen`, { body: bodies.receive(inbox, 30), headers: A })
    expect(third.status).toBe(429)
    expect(third.headers['content-type']).toStartWith('text/plain')
    expect(third.headers['retry-after']).toBe('1')
    expect(third.text).toContain('max_waiting_per_client')
    const poll = await rawRequest(`${running.url}/message`, { body: bodies.receive(inbox, 30), headers: A })
    expect(poll.status).toBe(429)

    first.close()
    let again = 0
    for (let attempt = 0; attempt < 50 && again !== 408; attempt++) {
      again = (await rawRequest(`${running.url}/message`, { body: bodies.receive(inbox, 0.05), headers: A })).status
      if (again === 429) await Bun.sleep(20)
    }
    expect(again).toBe(408)
  })

  it('counts each client on its own', async () => {
    const other = agentId()
    expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(other), headers: B })).status).toBe(200)
    const polled = await rawRequest(`${running.url}/message`, { body: bodies.receive(other, 0.05), headers: B })
    expect(polled.status).toBe(408)
  })
})
