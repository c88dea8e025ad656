/**
 * The redis backend on a Redis Cluster (3 masters, 3 replicas the test
 * starts): where the settings say the nodes are, the backend contract with
 * WAIT on, a put whose reply a relay in front of one master drops before
 * the connection (queued once), and a failover under load
 * (test/support/failover.ts): the master of the store's slot is SIGKILLed
 * after its replica fell 300 ms behind; its replica takes the slot over,
 * both instances follow by themselves. With redis_wait_replicas every
 * message acknowledged with a 2xx is received exactly once; without, what
 * was lost and duplicated is counted and printed. A .check.ts file, outside
 * `npm test` (which must stay under 10 minutes): `npm run test:replicated`
 * runs it, then test/modules and test/compat on a cluster (test/backends.ts
 * redis-cluster); CI runs that after `npm test`.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import Redis from 'ioredis'
import type { Backend, Client, EntityId } from '../../src/backend/index'
import { describeTarget, RedisConnection, redisTarget } from '../../plugins/redis/connection'
import { RedisKeys } from '../../plugins/redis/keys'
import { logger, makeBackend } from '../support/backend'
import { clusterBinaries, clusterPorts, startRedisCluster, type RedisCluster } from '../support/cluster'
import { expectFailoverOutcome, failoverUnderLoad as underLoad, type Counts, type Replicated } from '../support/failover'
import { randomPrefix } from '../support/redis'
import { startRelay } from '../support/relay'
import { eventually, freePort } from '../support/wait'
import { BUN, ROOT, runToEnd, startProcess, type RunningProcess } from '../support/process'
import { tempDir } from '../support/temp'
import { listenBody, mailboxBody, newAgent, newUser, sendBody } from '../../bench/academy'
import { request } from '../../bench/lib'
import { testBackend } from './conformance'
import { activity, digest, workspace } from './conformance/agents'
import { worker } from './conformance/workers'
import { reserveAny } from '../../src/backend/workers'
import { FORGET_WORKER } from '../../plugins/redis/scripts/workers'

describe('where the settings say the cluster is', () => {
  it('takes redis_cluster, and refuses it with Sentinels', () => {
    const target = redisTarget({ redis_url: 'redis://ignored:6379', redis_cluster: '10.0.0.1:7000, [::1]:7001' })
    expect(target).toEqual({ cluster: [{ host: '10.0.0.1', port: 7000 }, { host: '::1', port: 7001 }] })
    expect(describeTarget(target)).toBe('Redis Cluster of 10.0.0.1:7000,[::1]:7001')
    expect(() => redisTarget({ redis_url: 'redis://x', redis_cluster: 'a:1', redis_sentinels: 'b:2', redis_master_name: 'main' })).toThrow('redis_cluster and redis_sentinels exclude each other')
    expect(() => redisTarget({ redis_url: 'redis://x', redis_cluster: 'a' })).toThrow('redis_cluster: "a" is not host:port')
  })

  it('takes a redis+cluster:// URL with a user and password (rediss+cluster:// over TLS), and names it without the password', () => {
    const target = redisTarget({ redis_url: 'rediss+cluster://app:s%40cret@10.0.0.1:7000,[::1]:7001' })
    expect(target).toEqual({ cluster: [{ host: '10.0.0.1', port: 7000 }, { host: '::1', port: 7001 }], username: 'app', password: 's@cret', tls: true })
    expect(describeTarget(target)).toBe('Redis Cluster of 10.0.0.1:7000,[::1]:7001')
    expect(redisTarget({ redis_url: 'redis+cluster://:pw@h:7000' })).toEqual({ cluster: [{ host: 'h', port: 7000 }], password: 'pw' })
    expect(() => redisTarget({ redis_url: 'redis+cluster://:pw@h:7000/3' })).toThrow('redis_url redis+cluster://:********@h:7000/3: expected redis+cluster://[user:password@]host:port,… (rediss+cluster:// over TLS)')
    expect(() => redisTarget({ redis_url: 'redis+cluster://h' })).toThrow('redis_url: "h" is not host:port')
  })
})

/** Buckets do not depend on the prefix. */
const keys = new RedisKeys('any', { cluster: true })

/** A new mailbox id whose bucket `wanted` accepts. */
function idIn(role: 'user' | 'agent', wanted: (bucket: number) => boolean): EntityId {
  for (;;) {
    const id: EntityId = { uid: crypto.randomUUID(), name: null, role }
    if (wanted(keys.bucketOf(id))) return id
  }
}

const binaries = clusterBinaries()
if (typeof binaries === 'string') {
  if (process.env.CI === 'true') throw new Error(`the Redis Cluster tests need ${binaries}`)
  console.warn(`skipping the Redis Cluster tests: ${binaries}`)
}

// The backend contract on a Cluster, with every answered write acknowledged by the slot's replica (WAIT 1).
describe.skipIf(typeof binaries === 'string')('redis backend on a Redis Cluster, with redis_wait_replicas = 1', () => {
  testBackend((options) => makeBackend('redis-cluster', { redis_wait_replicas: 1, ...options }))
})

/** Runs `use` on a backend of a Cluster started for it, under a key prefix of its own (`prefixed` names its keys); `slotOf` asks a node for a key's slot. */
async function onClusterBackend(use: (on: { cluster: RedisCluster; backend: Backend; prefixed: RedisKeys; slotOf: (key: string) => Promise<unknown> }) => Promise<void>): Promise<void> {
  const cluster = await startRedisCluster()
  const prefix = randomPrefix()
  const backend = await makeBackend('redis-cluster', { ...cluster.options, redis_prefix: prefix })
  const node = new Redis(`redis://${cluster.nodes.split(',')[0]}`)
  try {
    await use({ cluster, backend, prefixed: new RedisKeys(prefix, { cluster: true }), slotOf: (key) => node.call('CLUSTER', 'KEYSLOT', key) })
  } finally {
    node.disconnect()
    await backend.close()
    cluster.stop()
  }
}

describe.skipIf(typeof binaries === 'string')('mailboxes, workspaces and workers in buckets of a Redis Cluster', () => {

  it('spreads the buckets over every master of the cluster', async () => {
    const cluster = await startRedisCluster()
    try {
      const masters = new Set(await Promise.all(keys.allBuckets().map((bucket) => cluster.masterOf(keys.mailboxPrefix(bucket)))))
      expect(masters.size).toBe(3)
    } finally {
      cluster.stop()
    }
  }, 30_000)

  it('spreads workspaces over every master, each with its tokens, activity and children index in its own slot', () =>
    onClusterBackend(async ({ cluster, backend, prefixed, slotOf }) => {
      const store = backend.agents
      const parent = workspace({ name: 'parent' })
      await store.createWorkspace(parent, digest(store, parent.id))
      const children = Array.from({ length: 24 }, (_, at) => workspace({ name: `child-${at}`, parentId: parent.id }))
      const tokens = new Map<string, string>()
      for (const child of children) {
        const token = digest(store, child.id)
        tokens.set(child.id, token)
        expect(await store.createWorkspace(child, token)).toBe(true)
      }
      // One workspace's keys share a slot (one script changes them together); the workspaces spread over the masters.
      for (const child of children) {
        const slots = new Set(await Promise.all([prefixed.workspace(child.id), prefixed.token(tokens.get(child.id)!), prefixed.tokensOf(child.id), prefixed.activity(child.id)].map(slotOf)))
        expect(slots.size).toBe(1)
      }
      const masters = new Set(await Promise.all(children.map((child) => cluster.masterOf(prefixed.workspace(child.id)))))
      expect(masters.size).toBe(3)
      // Listings walk every bucket and keep the creation order; a call between two buckets reaches both logs.
      expect((await store.listChildren(parent.id)).map((item) => item.name)).toEqual(children.map((child) => child.name))
      expect((await store.listWorkspaces()).map((item) => item.name)).toEqual(['parent', ...children.map((child) => child.name)])
      const [a, b] = [children.find((child) => prefixed.workspaceBucketOf(child.id) !== prefixed.workspaceBucketOf(parent.id))!, parent]
      await store.recordActivity(activity(a.id, b.id))
      for (const id of [a.id, b.id]) expect((await store.listActivity(id, 10, null)).items).toHaveLength(1)
      await store.removeWorkspace(a.id, 1)
      expect(await store.workspaceOfToken(tokens.get(a.id)!)).toBeNull()
    }), 60_000)

  it('spreads agent names over every master, each with its workers and their slots in one slot, and finds a worker by id alone', () =>
    onClusterBackend(async ({ cluster, backend, prefixed, slotOf }) => {
      const direct = new Redis.Cluster(clusterPorts(cluster.nodes).map((port) => ({ host: '127.0.0.1', port })))
      try {
        const store = backend.workers
        const names = Array.from({ length: 12 }, (_, at) => `agent-${at}`)
        const workers = names.flatMap((agentName) => [worker({ agentName }), worker({ agentName })])
        for (const each of workers) expect(await store.upsertWorker(each)).toBeNull()
        // A name's index and its workers' hashes share a slot (a dispatch's pick and reservation is one script); the names spread over the masters.
        for (const each of workers) {
          const bucket = prefixed.workerBucketOf(each.agentName)
          expect(new Set(await Promise.all([prefixed.worker(bucket, each.id), prefixed.workersOf(each.agentName), prefixed.workers(bucket)].map(slotOf))).size).toBe(1)
        }
        expect(new Set(await Promise.all(names.map((name) => cluster.masterOf(prefixed.workersOf(name))))).size).toBe(3)
        // Listings walk every bucket in registration order; by id, a worker is found through the directory.
        expect((await store.listWorkers()).map((each) => each.id)).toEqual(workers.map((each) => each.id))
        expect((await store.listWorkers('agent-3')).map((each) => each.id)).toEqual([workers[6]!.id, workers[7]!.id])
        for (const name of names) {
          const reservation = await reserveAny(store, name, 'tenant-a', `job-${name}`, new Set())
          expect(reservation.worker?.agentName).toBe(name)
          expect(await store.assignSlot(reservation.worker!.id, `job-${name}`)).toBe(true)
          expect((await store.getWorker(reservation.worker!.id))?.jobs).toEqual([`job-${name}`])
        }
        // Registering under a name of another bucket moves the worker with its jobs and drain flag; its old bucket holds nothing of it.
        const moving = (await store.listWorkers('agent-0')).find((each) => each.jobs.length === 1)!
        const to = names.find((name) => prefixed.workerBucketOf(name) !== prefixed.workerBucketOf('agent-0'))!
        await store.setDraining(moving.id, true)
        const previous = await store.upsertWorker(worker({ id: moving.id, agentName: to, connection: 'new-socket' }))
        expect(previous?.connection).toBe(moving.connection)
        expect(await store.getWorker(moving.id)).toMatchObject({ agentName: to, connection: 'new-socket', jobs: ['job-agent-0'], draining: true })
        expect((await store.listWorkers('agent-0')).map((each) => each.id)).not.toContain(moving.id)
        expect((await store.listWorkers(to)).map((each) => each.id)).toContain(moving.id)
        expect(await direct.exists(prefixed.worker(prefixed.workerBucketOf('agent-0'), moving.id))).toBe(0)
        expect(await store.listWorkers()).toHaveLength(workers.length)
        // A removal forgets the worker's directory entry, and only its own.
        await store.releaseSlot(moving.id, 'job-agent-0')
        expect((await store.deleteWorker(moving.id, 'new-socket'))?.id).toBe(moving.id)
        expect(await direct.hget(prefixed.workerDirectory(), moving.id)).toBeNull()
        expect(await direct.hlen(prefixed.workerDirectory())).toBe(workers.length - 1)
        expect(await store.getWorker(moving.id)).toBeNull()
        expect(await store.reserveSlot(moving.id, 'job-x')).toBe(false)
        // A removal whose forget comes late, after the id registered again, leaves the new registration's entry.
        const again = workers[0]!
        const stale = await direct.hget(prefixed.workerDirectory(), again.id)
        await store.deleteWorker(again.id, again.connection)
        await store.upsertWorker(again)
        await direct.eval(FORGET_WORKER, 1, prefixed.workerDirectory(), again.id, stale!)
        expect((await store.getWorker(again.id))?.connection).toBe(again.connection)
      } finally {
        direct.disconnect()
      }
    }), 60_000)

  it('reaches a Cluster that asks for a password over TLS through a rediss+cluster:// URL, and stops at a wrong password naming the cause, not the password', async () => {
    const cluster = await startRedisCluster()
    const dir = tempDir('cluster-tls')
    const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')]
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'pipe' })
    expect(made.status, `openssl: ${made.stderr}`).toBe(0)
    const prefix = randomPrefix()
    let server: RunningProcess | null = null
    try {
      // Every node also serves TLS on a port of its own and announces that one to clients; then every node asks for the password.
      const tlsPorts: number[] = []
      for (const port of clusterPorts(cluster.nodes)) {
        const node = new Redis({ host: '127.0.0.1', port })
        const tlsPort = await freePort()
        await node.config('SET', 'tls-cert-file', cert, 'tls-key-file', key, 'tls-ca-cert-file', cert, 'tls-auth-clients', 'no')
        await node.config('SET', 'tls-port', String(tlsPort))
        node.disconnect()
        await cluster.announce(port, tlsPort)
        tlsPorts.push(tlsPort)
      }
      for (const port of clusterPorts(cluster.nodes)) {
        const node = new Redis({ host: '127.0.0.1', port })
        await node.config('SET', 'masterauth', 'cluster-secret')
        await node.config('SET', 'requirepass', 'cluster-secret')
        node.disconnect()
      }
      const nodes = tlsPorts.map((port) => `127.0.0.1:${port}`).join(',')
      const env = { NODE_EXTRA_CA_CERTS: cert }
      const start = (password: string) => [BUN, join(ROOT, 'src/main.ts'), '--port', '0', '--backend', 'redis', '--redis-url', `rediss+cluster://:${password}@${nodes}`, '--redis-prefix', prefix]
      server = await startProcess(start('cluster-secret'), env)
      // Ready: every slot of the store (its own and its 48 buckets') has a master that answers over TLS.
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200)
      const [user, agent] = [newUser(), newAgent()]
      for (const id of [user, agent]) expect((await request(`${server.url}/mailbox`, 'POST', mailboxBody(id))).status).toBe(200)
      const tag = crypto.randomUUID()
      expect((await request(`${server.url}/message`, 'PUT', sendBody(user, agent, 'request', 256, tag))).status).toBe(200)
      const taken = await request(`${server.url}/message`, 'GET', listenBody(agent, 1))
      expect(taken.status).toBe(200)
      expect(taken.text).toContain(tag)
      // The store's keys went to the masters through TLS and the password (a plain client with the password reads them on the plain ports).
      const masters = await Promise.all(clusterPorts(cluster.nodes).map(async (port) => {
        const node = new Redis({ host: '127.0.0.1', port, password: 'cluster-secret' })
        try {
          return (await node.keys(`{${prefix}*`)).length
        } finally {
          node.disconnect()
        }
      }))
      expect(masters.filter((count) => count > 0).length).toBeGreaterThanOrEqual(2)
      expect(await server.stop()).toBe(0)
      server = null
      const refused = await runToEnd(start('not-the-secret'), env)
      expect(refused.code).toBe(2)
      expect(refused.stderr).toMatch(/WRONGPASS|invalid password/i)
      expect(refused.stderr).not.toContain('not-the-secret')
    } finally {
      await server?.stop()
      cluster.stop()
    }
  }, 90_000)

  it('with redis_wait_replicas, has the writes answered in one tick share one WAIT per master, whatever their keys', async () => {
    const cluster = await startRedisCluster()
    const prefix = randomPrefix()
    const keys = new RedisKeys(prefix, { cluster: true })
    const connection = await RedisConnection.open(redisTarget({ redis_url: '', redis_cluster: cluster.nodes }), prefix, logger, () => {}, {}, { replicas: 1, timeoutMs: 1000 }, keys.storeMarker())
    const masters = await Promise.all(keys.allBuckets().map((bucket) => cluster.masterOf(keys.mailboxPrefix(bucket))))
    const nodes = [...new Set(masters)].map((port) => new Redis(`redis://127.0.0.1:${port}`))
    const waits = async () => (await Promise.all(nodes.map(async (node) => Number(/cmdstat_wait:calls=(\d+)/.exec((await node.info('commandstats')) as string)?.[1] ?? 0)))).reduce((sum, calls) => sum + calls, 0)
    try {
      // Twenty mailboxes' keys in every bucket, so on every master: one WAIT per master covers them all.
      const written = keys.allBuckets().flatMap((bucket) => Array.from({ length: 20 }, () => keys.queue(idIn('agent', (at) => at === bucket))))
      const before = await waits()
      await Promise.all(written.map((key) => connection.replicated(key)))
      expect((await waits()) - before).toBe(nodes.length)
    } finally {
      for (const node of nodes) node.disconnect()
      await connection.close()
      cluster.stop()
    }
  }, 60_000)

  // Within a bucket a put is one script; between two it is two: both keep the same books.
  for (const [name, apart] of [['the same bucket', false], ['two buckets', true]] as const) {
    it(`keeps the books of a request and its answer between mailboxes of ${name}, for an owner that is '' (no auth)`, async () => {
      const backend = await makeBackend('redis-cluster')
      try {
        const client: Client = { id: '', groups: [] }
        const user = idIn('user', () => true)
        const agent = idIn('agent', (bucket) => (bucket !== keys.bucketOf(user)) === apart)
        for (const id of [user, agent]) await backend.mailboxes.create(client, id, ['mod.Agent'])
        const message = (src: EntityId, dest: EntityId, kind: 'request' | 'response') => ({ raw: `${kind} ${src.uid}`, src, dest, tag: 'tag-1', label: null, kind })
        await backend.mailboxes.put(client, message(user, agent, 'request'))
        expect(await backend.mailboxes.stats(client, user)).toMatchObject({ outgoing: 1 })
        expect(await backend.mailboxes.stats(client, agent)).toMatchObject({ incoming: 1, queued: 1 })
        expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 2, queued: 1 })
        expect(await backend.mailboxes.take(client, agent, { deadline: Date.now() + 1000 })).toBe(`request ${user.uid}`)
        await backend.mailboxes.put(client, message(agent, user, 'response'))
        expect(await backend.mailboxes.stats(client, agent)).toMatchObject({ completed: 1, incoming: 1 })
        await backend.mailboxes.put(client, message(user, agent, 'request'))
        // The source's owner ('') goes with the pending request, so that Switchboard answers it when the agent goes.
        expect(await backend.mailboxes.terminate(client, agent)).toEqual([{ src: user, dest: agent, tag: 'tag-1', label: null, srcOwner: '' }])
        expect(await backend.mailboxes.discover(client, 'mod.Agent', true)).toEqual([])
      } finally {
        await backend.close()
      }
    }, 30_000)
  }
})

// The single-Redis version is in test/backend/redis-outage.test.ts; here the reply is lost between Switchboard and one
// master of a Cluster, which ioredis Cluster sends the command to again (after a slots refresh) once the connection drops.
describe.skipIf(typeof binaries === 'string')('a put to a Redis Cluster master whose reply is lost with the connection', () => {
  const cleanup: (() => unknown)[] = []
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step()
  })

  // Within a bucket a put is one script, sent again whole; between two buckets (on two masters here) it is two, and the
  // relay is in front of the master of the half whose reply is lost: the destination's (queue) or the source's (books).
  const cases = [
    ['within a bucket', 'one script'],
    ["between two buckets, the destination's half cut", 'destination'],
    ["between two buckets, the source's half cut", 'source'],
  ] as const
  for (const [name, cut] of cases) {
    it(`queues it once, and the sender's books count it once: ${name}`, async () => {
      const cluster = await startRedisCluster()
      cleanup.push(() => cluster.stop())
      const prefix = randomPrefix()
      const prefixed = new RedisKeys(prefix, { cluster: true })
      const masters = await Promise.all(keys.allBuckets().map((bucket) => cluster.masterOf(prefixed.mailboxPrefix(bucket))))
      const agent = idIn('agent', () => true)
      const destinationMaster = masters[keys.bucketOf(agent)]!
      const user = idIn('user', (bucket) => (cut === 'one script' ? bucket === keys.bucketOf(agent) : masters[bucket] !== destinationMaster))
      const sourceMaster = masters[keys.bucketOf(user)]!
      const port = cut === 'source' ? sourceMaster : destinationMaster
      // That master is reached only through the relay: the whole cluster names the relay for it.
      const relay = await startRelay(new URL(`redis://127.0.0.1:${port}`))
      cleanup.push(() => relay.close())
      await cluster.announce(port, relay.port)
      const others = clusterPorts(cluster.nodes).filter((node) => node !== port).map((node) => `127.0.0.1:${node}`).join(',')
      // No WAIT: the master's replica replicates through the relay too, and would not acknowledge while it swallows.
      const backend = await makeBackend('redis-cluster', { redis_cluster: others, redis_prefix: prefix, redis_wait_replicas: 0 })
      cleanup.push(() => backend.close())
      // Straight to the masters, past the relay.
      const [destination, source] = [destinationMaster, sourceMaster].map((master) => {
        const direct = new Redis({ host: '127.0.0.1', port: master })
        cleanup.push(() => direct.quit())
        return direct
      }) as [Redis, Redis]
      const [queue, outgoing] = [prefixed.queue(agent), prefixed.outgoing(user, '')]
      const client: Client = { id: '', groups: [] }
      for (const id of [user, agent]) await backend.mailboxes.create(client, id, null)
      const request = (tag: string) => ({ raw: `request ${tag}`, src: user, dest: agent, tag, label: null, kind: 'request' as const })
      // One put first, so that the masters it goes to know its scripts and the put below is EVALSHA alone.
      await backend.mailboxes.put(client, request('first'))
      const tag = `cut-${crypto.randomUUID()}`
      // The source's half (PUT_FROM) is the first command to that master that carries the tag: the HGET before passes.
      if (cut === 'source') relay.swallowRepliesFrom(tag)
      else relay.swallowReplies()
      const putting = backend.mailboxes.put(client, request(tag))
      // The put (or its half) ran in Redis; its reply is gone. Cutting the connection makes ioredis send it again.
      const applied = async () => (cut === 'source' ? (await source.get(outgoing)) === '2' : (await destination.llen(queue)) === 2)
      await eventually(applied, 10_000, 'the put applied')
      // Unanswered: the backend reaches that master through the relay alone.
      expect(await Promise.race([putting.then(() => 'answered'), Bun.sleep(200).then(() => 'waiting')])).toBe('waiting')
      relay.dropAll()
      await putting
      expect(await destination.lrange(queue, 0, -1)).toEqual(['request first', `request ${tag}`])
      expect(await source.get(outgoing)).toBe('2')
      expect(await backend.mailboxes.stats(client, user)).toMatchObject({ outgoing: 2 })
      expect(await backend.mailboxes.stats(client, agent)).toMatchObject({ incoming: 2, queued: 2 })
      expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 2, queued: 2 })
    }, 60_000)
  }
})

describe.skipIf(typeof binaries === 'string')('a Redis Cluster failover under load', () => {
  const cleanup: (() => unknown)[] = []
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step()
  })

  /** The cluster as the failover harness drives it: the master killed is that of mailbox bucket 0, where the receivers' mailboxes are. */
  const replicated = (cluster: RedisCluster): Replicated => {
    const slotKey = (prefix: string) => new RedisKeys(prefix, { cluster: true }).mailboxPrefix(0)
    return {
      agentId: () => idIn('agent', (bucket) => bucket === 0),
      options: cluster.options,
      master: (prefix) => cluster.masterOf(slotKey(prefix)),
      replica: (prefix) => cluster.replicaOf(slotKey(prefix)),
      signal: (port, signal) => cluster.signal(port, signal),
      killMaster: (prefix) => cluster.killMasterOf(slotKey(prefix)),
      failedOver: (prefix, old) => cluster.failedOver(slotKey(prefix), old),
      restart: (port) => cluster.restart(port),
    }
  }

  async function failoverUnderLoad(waitReplicas: number): Promise<Counts> {
    const cluster = await startRedisCluster()
    cleanup.push(() => cluster.stop())
    return underLoad(replicated(cluster), randomPrefix(), waitReplicas, cleanup)
  }

  it('with redis_wait_replicas = 1, delivers every acknowledged message exactly once', async () => {
    const counts = await failoverUnderLoad(1)
    console.log(`Cluster failover, WAIT 1: ${JSON.stringify(counts)}`)
    expectFailoverOutcome(counts, 1)
  }, 120_000)

  it('without WAIT, recovers by itself, and loses or duplicates what the replica missed (counted)', async () => {
    const counts = await failoverUnderLoad(0)
    console.log(`Cluster failover, no WAIT: ${JSON.stringify(counts)}`)
    expectFailoverOutcome(counts, 0)
  }, 120_000)
})
