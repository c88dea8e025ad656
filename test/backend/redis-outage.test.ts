/**
 * A Switchboard whose Redis connection drops: killed by Redis (CLIENT KILL),
 * or cut off for a while (a TCP relay between Switchboard and Redis stops
 * passing traffic). It reconnects, reports not-ready meanwhile, loses no
 * acknowledged message, queues none twice, and its waiting receivers carry on.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import Redis from 'ioredis'
import type { Client, EntityId } from '../../src/backend/index'
import { RedisKeys } from '../../plugins/redis/keys'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { makeBackend } from '../support/backend'
import { serveBackend } from '../support/app'
import { rawRequest } from '../support/http'
import { startRelay } from '../support/relay'
import { deleteKeys, randomPrefix, testRedis } from '../support/redis'
import { masterUrl, sentinelBinaries, startSentinelGroup } from '../support/sentinel'
import { eventually } from '../support/wait'

const redis = await testRedis()

async function startInstance(url: string, prefix: string) {
  const backend = await makeBackend('redis', { redis_url: url, redis_prefix: prefix })
  return { ...(await serveBackend(backend)), backend }
}

const readiness = async (url: string) => (await fetch(`${url}/readyz`)).status

/** The value of `switchboard_backend_errors_total{kind}` in one scrape of /metrics. */
async function backendErrors(url: string, kind: 'unavailable' | 'error'): Promise<number> {
  const series = `switchboard_backend_errors_total{kind="${kind}"} `
  const line = (await (await fetch(`${url}/metrics`)).text()).split('\n').find((candidate) => candidate.startsWith(series))
  return line === undefined ? Number.NaN : Number(line.slice(series.length))
}

describe.skipIf(redis.url === null)('redis connection loss', () => {
  const cleanup: (() => Promise<void>)[] = []
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step()
  })

  async function setup(throughRelay: boolean) {
    const prefix = randomPrefix()
    cleanup.push(async () => void (await deleteKeys(redis.url!, prefix)))
    const relay = throughRelay ? await startRelay(new URL(redis.url!)) : null
    if (relay) cleanup.push(() => relay.close())
    const a = await startInstance(relay?.url ?? redis.url!, prefix)
    cleanup.push(() => a.close())
    const b = await startInstance(redis.url!, prefix)
    cleanup.push(() => b.close())
    const admin = new Redis(redis.url!)
    cleanup.push(async () => void (await admin.quit()))
    const user = userId()
    const agent = agentId()
    for (const id of [user, agent]) expect((await rawRequest(`${b.url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
    return { prefix, relay, a, b, admin, user, agent }
  }

  it('survives CLIENT KILL of both its connections: waiters resume and no message is lost', async () => {
    const { prefix, a, b, admin, user, agent } = await setup(false)
    const queued = messageJson(user, agent)
    expect((await rawRequest(`${b.url}/message`, { method: 'PUT', body: bodies.send(queued) })).status).toBe(200)
    const list = (await admin.client('LIST')) as string
    const ids = list.split('\n').filter((line) => line.includes(`name=switchboard:${prefix}:`)).map((line) => /\bid=(\d+)/.exec(line)![1]!)
    expect(ids.length).toBe(4)
    // Instance A's two connections are the first two opened.
    const aIds = ids.sort((x, y) => Number(x) - Number(y)).slice(0, 2)
    const receiving = rawRequest(`${a.url}/message`, { method: 'GET', body: bodies.receive(agent, 20) })
    expect(JSON.parse((await receiving).text)).toEqual({ message: queued })
    const waiting = rawRequest(`${a.url}/message`, { method: 'GET', body: bodies.receive(agent, 20) })
    await Bun.sleep(100)
    for (const id of aIds) expect(await admin.client('KILL', 'ID', id)).toBe(1)
    const sent = messageJson(user, agent)
    expect((await rawRequest(`${b.url}/message`, { method: 'PUT', body: bodies.send(sent) })).status).toBe(200)
    const received = await waiting
    expect(received.status).toBe(200)
    expect(JSON.parse(received.text)).toEqual({ message: sent })
    await eventually(async () => (await readiness(a.url)) === 200, 10_000, '/readyz ready')
    const reconnected = ((await admin.client('LIST')) as string).split('\n').filter((line) => line.includes(`name=switchboard:${prefix}:`))
    expect(reconnected).toHaveLength(4)
  })

  it('reports not ready while Redis is unreachable, then wakes its waiters for what arrived meanwhile', async () => {
    const { relay, a, b, user, agent } = await setup(true)
    expect(await readiness(a.url)).toBe(200)
    const waiting = rawRequest(`${a.url}/message`, { method: 'GET', body: bodies.receive(agent, 30) })
    await Bun.sleep(100)
    relay!.cut()
    await eventually(async () => (await readiness(a.url)) === 503, 10_000, '/readyz not ready')
    // Sent through B while A is cut off: A misses the wake-up.
    const sent = messageJson(user, agent)
    expect((await rawRequest(`${b.url}/message`, { method: 'PUT', body: bodies.send(sent) })).status).toBe(200)
    await eventually(async () => (await readiness(a.url)) === 503, 300, '/readyz not ready')
    relay!.restore()
    await eventually(async () => (await readiness(a.url)) === 200, 10_000, '/readyz ready')
    const received = await waiting
    expect(received.status).toBe(200)
    expect(JSON.parse(received.text)).toEqual({ message: sent })
  })

  it('returns the popped message, not the next one, when the reply to a take is lost with the connection', async () => {
    const { prefix, relay, a, b, user, agent } = await setup(true)
    const first = messageJson(user, agent)
    const second = messageJson(user, agent)
    for (const message of [first, second]) expect((await rawRequest(`${b.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    const keys = new RedisKeys(prefix)
    const admin = new Redis(redis.url!)
    cleanup.push(async () => void (await admin.quit()))
    const mailbox: EntityId = agent
    const caller: Client = { id: '', groups: [] }
    relay!.swallowReplies()
    const taking = a.backend.mailboxes.take(caller, mailbox, { deadline: Date.now() + 20_000 })
    // The pop ran in Redis; its reply is gone.
    await eventually(async () => (await admin.llen(keys.queue(mailbox))) === 1, 10_000, 'the message queued')
    relay!.dropAll()
    expect(await taking).toBe(first)
    expect(await a.backend.mailboxes.take(caller, mailbox, { deadline: Date.now() + 5000 })).toBe(second)
  })

  it('queues a put once when its reply is lost with the connection after Redis applied it, and ioredis sends it again', async () => {
    const { prefix, relay, a, user, agent } = await setup(true)
    const admin = new Redis(redis.url!)
    cleanup.push(async () => void (await admin.quit()))
    const queue = new RedisKeys(prefix).queue(agent)
    // One put first, so that Redis knows the script and the put below is one EVALSHA.
    const before = messageJson(user, agent)
    expect((await rawRequest(`${a.url}/message`, { method: 'PUT', body: bodies.send(before) })).status).toBe(200)
    relay!.swallowReplies()
    const sent = messageJson(user, agent)
    const putting = rawRequest(`${a.url}/message`, { method: 'PUT', body: bodies.send(sent) })
    // The put ran in Redis; its reply is gone. Cutting the connection makes ioredis send it again once reconnected.
    await eventually(async () => (await admin.llen(queue)) === 2, 10_000, 'the message queued')
    relay!.dropAll()
    expect((await putting).status).toBe(200)
    expect(await admin.lrange(queue, 0, -1)).toEqual([before, sent])
    const stats = await rawRequest(`${a.url}/mailbox/stats`, { body: bodies.mailbox(agent) })
    expect(JSON.parse(stats.text).queued).toBe(2)
  })

  it.skipIf(typeof sentinelBinaries() === 'string')('does not count a WAIT sent again after the connection dropped as the replicas\' acknowledgement of the put', async () => {
    // A master with a replica; the replica stops, so the WAIT after the put blocks until the connection is cut.
    const group = await startSentinelGroup()
    cleanup.push(async () => group.stop())
    const master = await masterUrl(group.sentinels)
    const relay = await startRelay(new URL(master))
    cleanup.push(() => relay.close())
    const prefix = randomPrefix()
    const backend = await makeBackend('redis', { redis_url: relay.url, redis_prefix: prefix, redis_wait_replicas: 1, redis_wait_timeout_ms: 2000 })
    cleanup.push(() => backend.close())
    const caller: Client = { id: '', groups: [] }
    const [source, box] = [userId(), agentId()]
    await backend.mailboxes.create(caller, box as EntityId, null)
    const admin = new Redis(master)
    cleanup.push(async () => void (await admin.quit()))
    const queue = new RedisKeys(prefix).queue(box as EntityId)
    group.signal(await group.replicaPort(), 'SIGSTOP')
    cleanup.push(async () => group.signal(await group.replicaPort(), 'SIGCONT'))
    const putting = backend.mailboxes.put(caller, { raw: messageJson(source, box), src: source as EntityId, dest: box as EntityId, tag: crypto.randomUUID(), label: null, kind: 'request' }).catch((error: Error) => error)
    await eventually(async () => (await admin.llen(queue)) === 1, 10_000, 'the put applied')
    await Bun.sleep(100)
    // The WAIT is blocked in Redis; cut: ioredis sends it again on a new connection, where it has no write to wait for.
    relay.dropAll()
    const outcome = await putting
    expect(outcome).toBeInstanceOf(Error)
    expect((outcome as Error).message).toContain('the connection to Redis dropped before the replicas acknowledged the write')
  })

  it('counts the store failures while Redis is cut off, per instance, and not the callers\' mistakes', async () => {
    const { relay, a, b, user, agent } = await setup(true)
    const stranger = messageJson(user, agentId())
    expect((await rawRequest(`${a.url}/message`, { method: 'PUT', body: bodies.send(stranger) })).status).toBe(404)
    expect(await backendErrors(a.url, 'unavailable')).toBe(0)
    expect(await backendErrors(a.url, 'error')).toBe(0)
    relay!.cut()
    const refused = await rawRequest(`${a.url}/message`, { method: 'PUT', body: bodies.send(messageJson(user, agent)) })
    expect(refused.status).toBe(503)
    relay!.restore()
    await eventually(async () => (await readiness(a.url)) === 200, 10_000, '/readyz ready')
    const counted = await backendErrors(a.url, 'unavailable')
    expect(counted).toBeGreaterThanOrEqual(1)
    expect((await rawRequest(`${a.url}/message`, { method: 'PUT', body: bodies.send(messageJson(user, agent)) })).status).toBe(200)
    // A counter: it keeps what it counted once Redis is back; nothing else failed, and the other instance saw nothing.
    expect(await backendErrors(a.url, 'unavailable')).toBe(counted)
    expect(await backendErrors(a.url, 'error')).toBe(0)
    expect(await backendErrors(b.url, 'unavailable')).toBe(0)
  }, 20_000)
})
