/**
 * Events across instances and restarts: two instances on one Redis (an event
 * emitted on one reaches a stream held by the other; each webhook delivery is
 * made once), and pending deliveries that outlive a restart on SQLite and Redis.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { join } from 'node:path'
import type { Backend } from '../../../src/backend/index'
import { serveBackend, writeTokensFile, type TestServer } from '../../support/app'
import { makeBackend } from '../../support/backend'
import { openStream, sseEvents, type EventStream } from '../../support/http'
import { deleteKeys, randomPrefix, testRedis } from '../../support/redis'
import { tempDir } from '../../support/temp'
import { eventually } from '../../support/wait'
import { Receiver } from './receiver'

const SECRET = 'durable-secret-0123456789'
const tokens = writeTokensFile([{ token: 'token-acme', client: 'acme' }])
const headers = { 'content-type': 'application/json', authorization: 'Bearer token-acme' }
const config = { auth: 'token' as const, tokens_file: tokens, allow_private_agent_urls: true, webhook_backoff_ms: 50 }
const redis = await testRedis()

const opened: { servers: TestServer[]; streams: EventStream[]; receivers: Receiver[]; prefixes: string[] } = { servers: [], streams: [], receivers: [], prefixes: [] }
afterEach(async () => {
  for (const stream of opened.streams.splice(0)) stream.close()
  for (const receiver of opened.receivers.splice(0)) await receiver.stop()
  for (const server of opened.servers.splice(0)) await server.close()
  for (const prefix of opened.prefixes.splice(0)) await deleteKeys(redis.url!, prefix)
})

async function serve(backend: Backend): Promise<TestServer> {
  const server = await serveBackend(backend, config)
  opened.servers.push(server)
  return server
}

async function createMailbox(server: TestServer): Promise<string> {
  const uid = crypto.randomUUID()
  const response = await fetch(`${server.url}/mailbox`, { method: 'POST', headers, body: JSON.stringify({ mailbox: JSON.stringify({ uid, name: null, role: 'agent' }) }) })
  expect(response.status).toBe(200)
  return uid
}

async function subscribe(server: TestServer, url: string): Promise<void> {
  const response = await fetch(`${server.url}/webhooks`, { method: 'POST', headers, body: JSON.stringify({ url, secret: SECRET }) })
  expect(response.status).toBe(201)
}

function receiver(): Receiver {
  const made = new Receiver(SECRET).start()
  opened.receivers.push(made)
  return made
}

/** Pending deliveries survive a restart: the receiver is down while events happen and while the first instance stops. */
async function survivesRestart(open: () => Promise<Backend>): Promise<void> {
  const hook = receiver()
  const before = await serve(await open())
  await subscribe(before, hook.url)
  await hook.stop()
  const uids = [await createMailbox(before), await createMailbox(before)]
  await Bun.sleep(200)
  await before.close()
  opened.servers.splice(opened.servers.indexOf(before), 1)
  hook.start()
  const after = await serve(await open())
  await eventually(() => hook.deliveries.length >= 2, 10000, 'the deliveries pending across the restart')
  expect(hook.deliveries.map((delivery) => delivery.event.resource.id).sort()).toEqual([...uids].sort())
  expect(hook.deliveries.every((delivery) => delivery.verified)).toBe(true)
  // Resuming from the start reads them from the retained log of the new process too.
  const stream = await openStream(`${after.url}/events`, { headers: { ...headers, 'last-event-id': '0' } })
  opened.streams.push(stream)
  await eventually(() => sseEvents(stream.received()).length >= 2)
  expect(sseEvents(stream.received()).map((event) => JSON.parse(event.data).resource.id)).toEqual(uids)
}

describe('on SQLite', () => {
  it('keeps pending deliveries and the retained log across a restart', async () => {
    const db = join(tempDir('events'), 'switchboard.db')
    await survivesRestart(() => makeBackend('sqlite', { db }))
  }, 20000)
})

describe.skipIf(redis.url === null)('on Redis', () => {
  const shared = () => {
    const prefix = randomPrefix()
    opened.prefixes.push(prefix)
    return () => makeBackend('redis', { redis_url: redis.url!, redis_prefix: prefix })
  }

  it('keeps pending deliveries and the retained log across a restart', async () => {
    await survivesRestart(shared())
  }, 20000)

  it('brings an event emitted through one instance to a stream held by the other, once', async () => {
    const open = shared()
    const [a, b] = [await serve(await open()), await serve(await open())]
    const stream = await openStream(`${b.url}/events`, { headers })
    opened.streams.push(stream)
    const uids: string[] = []
    for (let n = 0; n < 5; n++) uids.push(await createMailbox(n % 2 === 0 ? a : b))
    await eventually(() => sseEvents(stream.received()).length === 5, 5000, 'five events through instance B')
    await Bun.sleep(200)
    expect(sseEvents(stream.received()).map((event) => JSON.parse(event.data).resource.id)).toEqual(uids)
  }, 20000)

  it('makes each webhook delivery once, whichever instance takes it', async () => {
    const open = shared()
    const [a, b] = [await serve(await open()), await serve(await open())]
    const hook = receiver()
    // B has looked up the tenant's subscriptions (none) before A adds one: A's change must reach B at once.
    const before = await createMailbox(b)
    await subscribe(a, hook.url)
    const uids: string[] = []
    for (let n = 0; n < 20; n++) uids.push(await createMailbox(n % 2 === 0 ? a : b))
    await eventually(() => hook.deliveries.length >= 20, 10000, 'twenty deliveries')
    await Bun.sleep(1500)
    // The event of the mailbox made just before the subscription may be heard after it exists, and delivered: either way, once.
    const delivered = hook.deliveries.filter((delivery) => delivery.event.resource.id !== before)
    expect(delivered.map((delivery) => delivery.event.resource.id).sort()).toEqual([...uids].sort())
    expect(new Set(hook.deliveries.map((delivery) => delivery.eventId)).size).toBe(hook.deliveries.length)
  }, 20000)
})
