/**
 * Two Switchboards, one Redis: real servers on real ports sharing a key
 * prefix. A message sent through one reaches a receiver waiting on the
 * other at once, a terminate through one ends a wait on the other, and the
 * event bus reaches subscribers on both.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { makeBackend } from '../support/backend'
import { serveBackend } from '../support/app'
import { openStream, rawRequest, sseData } from '../support/http'
import { deleteKeys, randomPrefix, testRedis } from '../support/redis'

const redis = await testRedis()

/** One Switchboard on a real port, on the redis backend with the given key prefix. */
async function startInstance(prefix: string) {
  return serveBackend(await makeBackend('redis', { redis_url: redis.url!, redis_prefix: prefix }))
}

type Instance = Awaited<ReturnType<typeof startInstance>>

describe.skipIf(redis.url === null)('two instances sharing one Redis', () => {
  const prefix = randomPrefix()
  let a: Instance
  let b: Instance

  beforeAll(async () => {
    a = await startInstance(prefix)
    b = await startInstance(prefix)
  })

  afterAll(async () => {
    await a?.close()
    await b?.close()
    await deleteKeys(redis.url!, prefix)
  })

  async function createMailboxes(url: string) {
    const user = userId()
    const agent = agentId()
    for (const id of [user, agent]) expect((await rawRequest(`${url}/mailbox`, { method: 'POST', body: bodies.create(id, ['mod.Worker']) })).status).toBe(200)
    return { user, agent }
  }

  it('runs both instances on the redis backend', async () => {
    for (const server of [a, b]) expect(await (await fetch(`${server.url}/readyz`)).json()).toEqual({ status: 'ready', backend: 'redis' })
  })

  it('delivers a message sent through A to a long-poll waiting on B without delay', async () => {
    const { user, agent } = await createMailboxes(a.url)
    const started = Date.now()
    const receiving = rawRequest(`${b.url}/message`, { method: 'GET', body: bodies.receive(agent, 30) })
    await Bun.sleep(100)
    const message = messageJson(user, agent)
    const sentAt = Date.now()
    expect((await rawRequest(`${a.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    const received = await receiving
    expect(received.status).toBe(200)
    expect(JSON.parse(received.text)).toEqual({ message })
    // Woken by pub/sub, not by a polling interval: far below any plausible poll period.
    expect(Date.now() - sentAt).toBeLessThan(1000)
    expect(Date.now() - started).toBeLessThan(5000)
  })

  it('streams messages sent through A to a listener on B in order', async () => {
    const { user, agent } = await createMailboxes(b.url)
    const stream = await openStream(`${b.url}/mailbox/listen`, { body: bodies.receive(agent, 30) })
    expect(stream.status).toBe(200)
    const messages = Array.from({ length: 5 }, () => messageJson(user, agent))
    for (const message of messages) expect((await rawRequest(`${a.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    await stream.waitFor(JSON.parse(messages[4]!).header.tag)
    stream.close()
    expect(sseData(stream.received())).toEqual(messages)
  })

  it('ends a long-poll waiting on A with 419 when B terminates the mailbox', async () => {
    const { agent } = await createMailboxes(a.url)
    const receiving = rawRequest(`${a.url}/message`, { method: 'GET', body: bodies.receive(agent, 30) })
    await Bun.sleep(100)
    const terminatedAt = Date.now()
    expect((await rawRequest(`${b.url}/mailbox`, { method: 'DELETE', body: bodies.mailbox(agent) })).status).toBe(200)
    const received = await receiving
    expect(received.status).toBe(419)
    expect(received.text).toBe('Mailbox was closed')
    expect(Date.now() - terminatedAt).toBeLessThan(1000)
  })

  it('answers a pending request with the terminate auto-reply whichever instance terminates', async () => {
    const { user, agent } = await createMailboxes(a.url)
    const request = messageJson(user, agent)
    expect((await rawRequest(`${a.url}/message`, { method: 'PUT', body: bodies.send(request) })).status).toBe(200)
    const receiving = rawRequest(`${a.url}/message`, { method: 'GET', body: bodies.receive(user, 30) })
    expect((await rawRequest(`${b.url}/mailbox`, { method: 'DELETE', body: bodies.mailbox(agent) })).status).toBe(200)
    const reply = JSON.parse(JSON.parse((await receiving).text).message)
    expect(reply.header.tag).toBe(JSON.parse(request).header.tag)
    expect(reply.body.kind).toBe('academy-error-response')
  })

  it('discovers on B an agent created through A, and stops after it is terminated through A', async () => {
    const agent = agentId()
    const kind = `mod.Kind${crypto.randomUUID().slice(0, 8)}`
    expect((await rawRequest(`${a.url}/mailbox`, { method: 'POST', body: bodies.create(agent, [kind, 'academy.agent.Agent']) })).status).toBe(200)
    const found = await rawRequest(`${b.url}/discover`, { method: 'GET', body: bodies.discover(kind, false) })
    expect(JSON.parse(found.text)).toEqual({ agent_ids: agent.uid })
    expect((await rawRequest(`${a.url}/mailbox`, { method: 'DELETE', body: bodies.mailbox(agent) })).status).toBe(200)
    const after = await rawRequest(`${b.url}/discover`, { method: 'GET', body: bodies.discover(kind, false) })
    expect(JSON.parse(after.text)).toEqual({ agent_ids: '' })
  })

  it('gives each message to exactly one of the receivers waiting on both instances', async () => {
    const { user, agent } = await createMailboxes(a.url)
    const receivers = [a, b, a, b].map((server) => rawRequest(`${server.url}/message`, { method: 'GET', body: bodies.receive(agent, 2) }))
    await Bun.sleep(100)
    const messages = [messageJson(user, agent), messageJson(user, agent)]
    for (const message of messages) expect((await rawRequest(`${b.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    const results = await Promise.all(receivers)
    const delivered = results.filter((result) => result.status === 200).map((result) => JSON.parse(result.text).message)
    expect(delivered.sort()).toEqual(messages.sort())
    expect(results.filter((result) => result.status === 408)).toHaveLength(2)
  })

  it('carries event bus messages published on one instance to subscribers on both', async () => {
    const channel = `test-${crypto.randomUUID()}`
    const seen: string[] = []
    const arrivedOnA = new Promise<void>((resolve) => void a.app.decorator.switchboard.backend.events.subscribe(channel, (payload) => (seen.push(`a:${payload}`), resolve())))
    const stopB = await b.app.decorator.switchboard.backend.events.subscribe(channel, (payload) => seen.push(`b:${payload}`))
    await Bun.sleep(50)
    await b.app.decorator.switchboard.backend.events.publish(channel, 'hello')
    await arrivedOnA
    for (let i = 0; i < 50 && seen.length < 2; i++) await Bun.sleep(20)
    expect(seen.sort()).toEqual(['a:hello', 'b:hello'])
    stopB()
  })
})
