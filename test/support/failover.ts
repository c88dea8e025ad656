/**
 * A failover under load, for any replicated Redis (Sentinels, Cluster): two
 * Switchboards serve senders and receivers while the master serving the
 * store is SIGKILLed after its replica fell 300 ms behind; counted: what was
 * acknowledged (2xx), received, lost and duplicated, and how long until both
 * instances' /readyz is 200 again. A receiver waiting through it must get a
 * message sent after it, and an event published after it must cross
 * instances.
 */
import { expect } from 'bun:test'
import Redis from 'ioredis'
import { createApp } from '../../src/app'
import { createBackend, type Backend } from '../../src/backend/index'
import { serve, type RunningServer } from '../../src/http/node'
import { loadPlugin } from '../../plugins/index'
import { agentId, bodies, messageJson, userId, type Id } from './academy'
import { logger } from './backend'
import { rawRequest } from './http'
import { eventually } from './wait'

/** What one failover under load counted. */
export interface Counts {
  /** Messages whose PUT got a 2xx. */
  acknowledged: number
  /** Of those, received with a 2xx after the failover was over. */
  acknowledgedAfterFailover: number
  /** Acknowledged and never received. */
  lost: number
  /** Received more than once (acknowledged or not). */
  duplicated: number
  /** From the SIGKILL until both instances' /readyz answer 200 again. */
  readyAfterMs: number
  /** Whether /readyz answered 503 in between. */
  notReadySeen: boolean
  /** What a receiver waiting since before the SIGKILL got, for a message sent through the other instance after it. */
  waiter: { status: number; gotIt: boolean }
  /** Whether an event published through the first instance after the failover reached a subscriber on the second. */
  eventHeard: boolean
}

/** The replicated Redis a failover is run on, for the store with key prefix `prefix`. */
export interface Replicated {
  /** Backend options reaching it (without the prefix). */
  options: Record<string, unknown>
  /** The ports of the master serving the store's keys and of its replica, now. */
  master(prefix: string): Promise<number>
  replica(prefix: string): Promise<number>
  signal(port: number, signal: 'SIGSTOP' | 'SIGCONT'): void
  /** SIGKILLs the master serving the store; resolves with its port once it is dead. */
  killMaster(prefix: string): Promise<number>
  /** Resolves once a node other than `old` serves the store. */
  failedOver(prefix: string, old: number): Promise<unknown>
  /** Starts the killed node again (empty): it follows the new master, so that WAIT can be met again. */
  restart(port: number): Promise<void>
  /** A new agent mailbox id whose keys the killed master holds (in a Cluster, where a store spreads over several); any by default. */
  agentId?: () => Id
}

/** The pairs of mailboxes messages go through, one sender and one receiver each. */
const PAIRS = 4

/** Two Switchboards on one store of `redis`: their URLs and backends; `cleanup` gets what stops them. */
export async function twoInstances(redis: Replicated, prefix: string, waitReplicas: number, cleanup: (() => unknown)[]): Promise<{ urls: string[]; backends: Backend[] }> {
  const urls: string[] = []
  const backends: Backend[] = []
  for (let i = 0; i < 2; i++) {
    const options = { ...redis.options, redis_prefix: prefix, redis_wait_replicas: waitReplicas, redis_wait_timeout_ms: 500 }
    const backend = await createBackend(await loadPlugin('redis'), options, { logger })
    const app = createApp({ backend, config: { log_level: 'silent' }, logger })
    const server: RunningServer = await serve(app, { host: '127.0.0.1', port: 0 })
    cleanup.push(async () => {
      await server.stop()
      await app.decorator.switchboard.close()
    })
    urls.push(server.url)
    backends.push(backend)
  }
  return { urls, backends }
}

/** Sends and receives through two instances while the store's master is killed; counts what was acknowledged and received. */
export async function failoverUnderLoad(redis: Replicated, prefix: string, waitReplicas: number, cleanup: (() => unknown)[]): Promise<Counts> {
  const { urls, backends } = await twoInstances(redis, prefix, waitReplicas, cleanup)
  const [a, b] = urls as [string, string]
  // An event bus subscriber on the second instance, for an event the first publishes after the failover.
  const events: string[] = []
  cleanup.push(await backends[1]!.events.subscribe('failover-probe', (payload) => events.push(payload)))
  const newAgent = redis.agentId ?? (() => agentId())
  // The receivers' mailboxes are on the master killed, so that what its replica missed is theirs.
  const pairs: [Id, Id][] = Array.from({ length: PAIRS }, () => [userId(), newAgent()])
  for (const [user, agent] of pairs) for (const id of [user, agent]) expect((await rawRequest(`${a}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)

  const acknowledged = new Set<string>()
  const received = new Map<string, number>()
  let failedOverAt = Number.POSITIVE_INFINITY
  const receivedAfterFailover = new Set<string>()
  let sending = true
  let receiving = true
  // Each pair's sender puts through one instance and its receiver takes through the other; errors (503) are expected during the gap.
  const senders = pairs.map(async ([user, agent], index) => {
    const via = index % 2 === 0 ? a : b
    while (sending) {
      const message = messageJson(user, agent)
      const answer = await rawRequest(`${via}/message`, { method: 'PUT', body: bodies.send(message) }).catch(() => null)
      if (answer?.status === 200) acknowledged.add(message)
      else await Bun.sleep(20)
    }
  })
  const receivers = pairs.map(async ([, agent], index) => {
    const via = index % 2 === 0 ? b : a
    while (receiving) {
      const answer = await rawRequest(`${via}/message`, { body: bodies.receive(agent, 1) }).catch(() => null)
      const message = answer?.status === 200 ? (JSON.parse(answer.text) as { message?: string }).message : undefined
      if (message === undefined) {
        if (answer?.status !== 200) await Bun.sleep(20)
        continue
      }
      received.set(message, (received.get(message) ?? 0) + 1)
      if (Date.now() > failedOverAt) receivedAfterFailover.add(message)
    }
  })

  await eventually(() => acknowledged.size >= 100, 20_000, '100 messages acknowledged before the failover')
  // A receiver waiting on one instance through the failover, for a message sent through the other one after it.
  const [lateUser, lateAgent] = [userId(), newAgent()]
  for (const id of [lateUser, lateAgent]) expect((await rawRequest(`${a}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
  const waiting = rawRequest(`${b}/message`, { body: bodies.receive(lateAgent, 60) })
  await Bun.sleep(100)
  // The replica falls behind before the master dies: stopped, its link cut by the master (what was sent before
  // waits in its socket), it misses what is written in the last 300 ms, which is in the master alone.
  const replica = await redis.replica(prefix)
  redis.signal(replica, 'SIGSTOP')
  const master = new Redis(`redis://127.0.0.1:${await redis.master(prefix)}`)
  await master.call('CLIENT', 'KILL', 'TYPE', 'replica')
  master.disconnect()
  await Bun.sleep(300)
  const killedAt = Date.now()
  const old = await redis.killMaster(prefix)
  redis.signal(replica, 'SIGCONT')
  // Polled from the kill on: the first moment both instances answer 200 again.
  let readyAt = 0
  let notReadySeen = false
  const ready = eventually(
    async () => {
      const statuses = await Promise.all([a, b].map(async (url) => (await rawRequest(`${url}/readyz`).catch(() => null))?.status))
      readyAt = Date.now()
      if (statuses.includes(503)) notReadySeen = true
      return statuses.every((status) => status === 200) && (await redis.master(prefix).catch(() => old)) !== old
    },
    30_000,
    'both instances ready again on the new master',
  )
  await redis.failedOver(prefix, old)
  // Back as a replica of the new master (empty, like a host that crashed without persistence), so that WAIT can be met again.
  await redis.restart(old)
  await ready
  failedOverAt = readyAt
  const before = acknowledged.size
  await eventually(() => acknowledged.size >= before + 100, 30_000, '100 more messages acknowledged after the failover')
  // Sent once writes are acknowledged again: a put refused meanwhile (503) may still be queued, and wake the receiver.
  const late = messageJson(lateUser, lateAgent)
  expect((await rawRequest(`${a}/message`, { method: 'PUT', body: bodies.send(late) })).status).toBe(200)
  const woken = await waiting
  await backends[0]!.events.publish('failover-probe', 'after')
  await eventually(() => events.includes('after'), 5000, 'the event published after the failover heard by the other instance').catch(() => {})
  sending = false
  await Promise.all(senders)
  await eventually(() => [...acknowledged].every((message) => received.has(message)), 10_000, 'every acknowledged message received').catch(() => {})
  receiving = false
  await Promise.all(receivers)
  return {
    acknowledged: acknowledged.size,
    acknowledgedAfterFailover: [...receivedAfterFailover].filter((message) => acknowledged.has(message)).length,
    lost: [...acknowledged].filter((message) => !received.has(message)).length,
    duplicated: [...received.values()].filter((count) => count > 1).length,
    readyAfterMs: readyAt - killedAt,
    notReadySeen,
    waiter: { status: woken.status, gotIt: woken.text === JSON.stringify({ message: late }) },
    eventHeard: events.includes('after'),
  }
}

/**
 * What a failover under load must show, with or without WAIT: traffic acknowledged after it, /readyz 503 during the
 * gap and 200 within 20 s, a receiver waiting through it answered, an event heard across instances; with WAIT, no
 * acknowledged message lost or duplicated; without, the loss WAIT exists for does happen.
 */
export function expectFailoverOutcome(counts: Counts, waitReplicas: number): void {
  if (waitReplicas > 0) {
    expect(counts.lost).toBe(0)
    expect(counts.duplicated).toBe(0)
  } else {
    expect(counts.lost + counts.duplicated).toBeGreaterThan(0)
  }
  expect(counts.acknowledgedAfterFailover).toBeGreaterThan(0)
  expect(counts.notReadySeen).toBe(true)
  expect(counts.readyAfterMs).toBeLessThan(20_000)
  expect(counts.waiter).toEqual({ status: 200, gotIt: true })
  expect(counts.eventHeard).toBe(true)
}
