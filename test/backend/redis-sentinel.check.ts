/**
 * The redis backend behind Sentinels (1 master, 1 replica, 3 Sentinels the
 * test starts): where the settings say the master is, the backend contract
 * with WAIT on, and a failover under load. Two Switchboards serve senders
 * and receivers while the master is SIGKILLed after its replica fell 300 ms
 * behind; the Sentinels promote the replica, every instance finds it by
 * itself and /readyz is 200 again, a receiver that waited through it gets
 * a message sent after it (woken, re-subscribed), and an event published
 * after it crosses instances. With
 * redis_wait_replicas every message acknowledged with a 2xx is received
 * exactly once; without, what was lost and duplicated is counted and
 * printed (some of either, since the replica missed the last writes).
 * Named *.check.ts: `npm run test:replicated` runs it, outside `npm test`.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { describeTarget, redisTarget } from '../../plugins/redis/connection'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { makeBackend } from '../support/backend'
import { expectFailoverOutcome, failoverUnderLoad as underLoad, twoInstances, type Counts, type Replicated } from '../support/failover'
import { testBackend } from './conformance'
import { rawRequest } from '../support/http'
import { randomPrefix } from '../support/redis'
import { sentinelBinaries, startSentinelGroup, type SentinelGroup } from '../support/sentinel'
import { eventually } from '../support/wait'

describe('where the settings say the master is', () => {
  it('takes redis_sentinels with redis_master_name, and a redis+sentinel:// URL', () => {
    expect(redisTarget({ redis_url: 'redis://ignored:6379', redis_sentinels: '10.0.0.1:26379, [::1]:26380', redis_master_name: 'main' })).toEqual({
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      name: 'main',
    })
    const target = redisTarget({ redis_url: 'redis+sentinel://user:p%40ss@s1:26379,s2:26379/main/2' })
    expect(target).toEqual({ sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }], name: 'main', username: 'user', password: 'p@ss', db: 2 })
    expect(describeTarget(target)).toBe('master "main" of Sentinels s1:26379,s2:26379')
    expect(redisTarget({ redis_url: 'redis://cache:6379/1' })).toEqual({ url: 'redis://cache:6379/1' })
  })

  it('refuses a Sentinel list without a master name, a name without Sentinels, and a redis+sentinel:// URL without a master', () => {
    expect(() => redisTarget({ redis_url: 'redis://x', redis_sentinels: 'a:1' })).toThrow('redis_sentinels needs redis_master_name')
    expect(() => redisTarget({ redis_url: 'redis://x', redis_master_name: 'main' })).toThrow('redis_master_name needs redis_sentinels')
    expect(() => redisTarget({ redis_url: 'redis+sentinel://:secret@s1:26379' })).toThrow('expected redis+sentinel://[user:password@]host:port,…/master_name[/db]')
    expect(() => redisTarget({ redis_url: 'redis+sentinel://:secret@s1:26379' })).not.toThrow('secret')
  })
})

const binaries = sentinelBinaries()
if (typeof binaries === 'string') {
  if (process.env.CI === 'true') throw new Error(`the Sentinel tests need ${binaries}`)
  console.warn(`skipping the Sentinel failover tests: ${binaries}`)
}

// The backend contract behind Sentinels, with every answered write acknowledged by the replica (WAIT 1).
describe.skipIf(typeof binaries === 'string')('redis backend behind Sentinels, with redis_wait_replicas = 1', () => {
  testBackend((options) => makeBackend('redis-sentinel', { redis_wait_replicas: 1, ...options }))
})

describe.skipIf(typeof binaries === 'string')('a Sentinel failover under load', () => {
  const cleanup: (() => unknown)[] = []
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step()
  })

  /** The group as the failover harness drives it (one master serves every store). */
  const replicated = (group: SentinelGroup): Replicated => ({
    options: group.options,
    master: () => group.masterPort(),
    replica: () => group.replicaPort(),
    signal: (port, signal) => group.signal(port, signal),
    killMaster: () => group.killMaster(),
    failedOver: (_, old) => group.failedOver(old),
    restart: (port) => group.restart(port),
  })

  /** Sends and receives through two instances while the master is killed; counts what was acknowledged and received. */
  async function failoverUnderLoad(waitReplicas: number): Promise<Counts> {
    const group = await startSentinelGroup()
    cleanup.push(() => group.stop())
    return underLoad(replicated(group), randomPrefix(), waitReplicas, cleanup)
  }

  it('follows a failover the Sentinels are asked for while the master stays up', async () => {
    const group = await startSentinelGroup()
    cleanup.push(() => group.stop())
    const { urls } = await twoInstances(replicated(group), randomPrefix(), 1, cleanup)
    const [a, b] = urls as [string, string]
    const [user, agent] = [userId(), agentId()]
    for (const id of [user, agent]) expect((await rawRequest(`${a}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
    const old = await group.switchMaster()
    await group.failedOver(old)
    // The old master is a replica now (the Sentinels cut its clients); the instances reach the new master.
    const message = messageJson(user, agent)
    await eventually(async () => (await rawRequest(`${a}/message`, { method: 'PUT', body: bodies.send(message) })).status === 200, 20_000, 'a message sent after the switch')
    const received = await rawRequest(`${b}/message`, { body: bodies.receive(agent, 10) })
    expect([received.status, received.text]).toEqual([200, JSON.stringify({ message })])
    for (const url of [a, b]) expect((await rawRequest(`${url}/readyz`)).status).toBe(200)
  }, 60_000)

  it('with redis_wait_replicas = 1, delivers every acknowledged message exactly once', async () => {
    const counts = await failoverUnderLoad(1)
    console.log(`Sentinel failover, WAIT 1: ${JSON.stringify(counts)}`)
    expectFailoverOutcome(counts, 1)
  }, 120_000)

  it('without WAIT, recovers by itself, and loses or duplicates what the replica missed (counted)', async () => {
    const counts = await failoverUnderLoad(0)
    console.log(`Sentinel failover, no WAIT: ${JSON.stringify(counts)}`)
    expectFailoverOutcome(counts, 0)
  }, 120_000)
})
