import { afterEach, describe, expect, it } from 'bun:test'
import Redis from 'ioredis'
import type { Backend, Client, EntityId, JobRecord, WorkerRecord } from '../../src/backend/index'
import { createBackend, PluginError } from '../../src/backend/index'
import { loadPlugin } from '../../plugins/index'
import { createLogger } from '../../src/ops/logger'
import { reserveAny } from '../../src/backend/workers'
import { RedisKeys } from '../../plugins/redis/keys'
import { Drained } from '../../plugins/redis/drained'
import { script } from '../../plugins/redis/connection'
import { GIVE_BACK_MESSAGE, RECOVER_INFLIGHT, TAKE_MESSAGE } from '../../plugins/redis/scripts/mailboxes'
import { mailboxKey } from '../../src/backend/mailboxes'
import { ForbiddenError, MailboxTerminatedError, UnavailableError } from '../../src/errors'
import { testBackend } from './conformance'
import { makeBackend } from '../support/backend'
import { deleteKeys, randomPrefix, testRedis } from '../support/redis'
import { eventually } from '../support/wait'

const redis = await testRedis()

const client: Client = { id: 'owner', groups: [] }
const agent = (): EntityId => ({ uid: crypto.randomUUID(), name: null, role: 'agent' })
const message = (dest: EntityId, src: EntityId = agent()) => {
  const raw = JSON.stringify({ header: { src, dest, tag: crypto.randomUUID(), label: null, kind: 'request', protocol_version: '1' }, body: { kind: 'ping-request' } })
  return { raw, src, dest, tag: crypto.randomUUID(), label: null, kind: 'request' as const }
}

describe.skipIf(redis.url === null)('redis backend', () => {
  testBackend((options) => makeBackend('redis', options))

  describe('redis specifics', () => {
    const opened: { backend: Backend; prefix: string }[] = []
    let inspector: Redis | null = null
    const inspect = async () => {
      inspector ??= new Redis(redis.url!)
      return inspector
    }
    /** A backend on its own prefix, with overrides; closed and cleaned after the test. */
    const open = async (options: Record<string, unknown> = {}) => {
      const prefix = randomPrefix()
      const backend = await makeBackend('redis', { redis_url: redis.url!, redis_prefix: prefix, ...options })
      opened.push({ backend, prefix })
      return { backend, keys: new RedisKeys(prefix), prefix }
    }
    afterEach(async () => {
      for (const { backend, prefix } of opened.splice(0)) {
        await backend.close()
        await deleteKeys(redis.url!, prefix)
      }
      await inspector?.quit()
      inspector = null
    })

    it('counts the finished jobs stored before finished_jobs_kept at the next start, keeps the newest, and trims a large backlog in batches', async () => {
      const { backend, keys, prefix } = await open()
      const now = Date.now()
      const stored = (id: string, state: JobRecord['state'], updatedAt: number): JobRecord => ({
        id, agentName: 'voice', roomId: 'room', owner: 'tenant', metadata: null, roomOptions: null, state, workerId: null, history: [], createdAt: now, updatedAt,
      })
      // 450 finished jobs, stored newest first so that creation order and finishing order disagree; one still running.
      for (let i = 449; i >= 0; i--) await backend.workers.createJob(stored(`done-${i}`, 'completed', now + i))
      await backend.workers.createJob(stored('running', 'running', now))
      // The store as a Switchboard without finished_jobs_kept left it: jobs and their index, no finished set.
      const db = await inspect()
      await db.del(keys.finishedJobs(), keys.finishedSequence(), keys.jobsIndexed(), keys.jobsByCreation(), ...['completed', 'running'].map((state) => keys.jobsInState(state)))

      const next = await makeBackend('redis', { redis_url: redis.url!, redis_prefix: prefix, finished_jobs_kept: 10 })
      opened.push({ backend: next, prefix })
      const ids = async () => (await next.workers.listJobs({})).map((job) => job.id).sort()
      const newest = (count: number, from: number) => Array.from({ length: count }, (_, i) => `done-${from - i}`)
      expect(await ids()).toEqual([...newest(10, 449), 'running'].sort())
      expect(await db.zcard(keys.finishedJobs())).toBe(10)
      // Each is in the set of its state, which the ones dropped have left.
      expect((await next.workers.listJobs({ state: 'running' })).map((job) => job.id)).toEqual(['running'])
      expect((await db.smembers(keys.jobsInState('completed'))).sort()).toEqual(newest(10, 449).sort())
      // And in the creation index: all were created in one millisecond, so the one stored last comes first.
      expect((await next.workers.listJobs({ owner: 'tenant', limit: 3 })).map((job) => job.id)).toEqual(['running', 'done-440', 'done-441'])
      expect(await db.zcard(keys.jobsByCreation())).toBe(11)
      expect(await db.exists(keys.job('done-439'))).toBe(0)
      // Jobs finishing from now on push out the oldest of those kept.
      await next.workers.transitionJob('running', { from: ['running'], to: 'failed' })
      expect(await ids()).toEqual([...newest(9, 449), 'running'].sort())
      // Counted once per store: a restart finds nothing to count again.
      expect(await db.get(keys.jobsIndexed())).toBe('1')
    })

    it('indexes the workers stored before the agent-name indexes at the next start, in registration order', async () => {
      const { backend, keys, prefix } = await open()
      const worker = (id: string, agentName: string): WorkerRecord => ({
        id, agentName, owner: 'tenant', status: 'available', draining: false, maxProcesses: 1, loadThreshold: 1, reportedLoad: 0,
        jobs: [], reserved: [], instance: 'instance-1', connection: id, capabilities: [], registeredAt: Date.now(), disconnectedAt: null,
      })
      for (const [id, name] of [['w1', 'voice'], ['w2', 'chat'], ['w3', 'voice']] as const) await backend.workers.upsertWorker(worker(id, name))
      const db = await inspect()
      await db.del(keys.workersOf('voice'), keys.workersOf('chat'), keys.workersIndexed())
      expect(await backend.workers.listWorkers('voice')).toEqual([])

      const next = await makeBackend('redis', { redis_url: redis.url!, redis_prefix: prefix })
      opened.push({ backend: next, prefix })
      expect((await next.workers.listWorkers('voice')).map((found) => found.id)).toEqual(['w1', 'w3'])
      expect((await next.workers.listWorkers('chat')).map((found) => found.id)).toEqual(['w2'])
      expect(await db.get(keys.workersIndexed())).toBe('1')
    })

    it('with redis_wait_replicas, answers 503 for a write no replica acknowledges, and gives back a take\'s message', async () => {
      // This Redis has no replica: WAIT 1 times out.
      const { backend: plain, prefix, keys } = await open()
      const lines: string[] = []
      const waiting = await createBackend(await loadPlugin('redis'), { redis_url: redis.url!, redis_prefix: prefix, redis_wait_replicas: 1, redis_wait_timeout_ms: 50 }, { logger: createLogger('warn', (line) => lines.push(line)) })
      opened.push({ backend: waiting, prefix })
      expect(lines.some((line) => line.includes('redis_wait_replicas asks for more replicas than the Redis master has') && line.includes('"connected":0'))).toBe(true)
      const [box, sender] = [agent(), agent()]
      await plain.mailboxes.create(client, box, null)
      const refusal = await waiting.mailboxes.put(client, message(box, sender)).catch((error: Error) => error)
      expect(refusal).toBeInstanceOf(UnavailableError)
      expect((refusal as Error).message).toContain('not acknowledged by 1 Redis replica(s) within 50 ms (only by 0)')
      // Applied in the master all the same: the sender was told it may or may not survive a failover.
      expect(await (await inspect()).llen(keys.queue(box))).toBe(1)
      const taking = await waiting.mailboxes.take(client, box, { deadline: Date.now() + 1000 }).catch((error: Error) => error)
      expect(taking).toBeInstanceOf(UnavailableError)
      // The receiver got an error, so the message went back to the queue and left the in-flight hash (a void mark stays).
      await eventually(async () => (await (await inspect()).llen(keys.queue(box))) === 1, 5000, 'the message back in its queue')
      expect(Object.values(await (await inspect()).hgetall(keys.inflight((waiting.mailboxes as unknown as { instance: string }).instance, keys.bucketOf(box))))).toEqual([''])
      expect(await plain.mailboxes.take(client, box, { deadline: Date.now() + 1000 })).not.toBeNull()
    })

    // ioredis can send a command whose caller already got a timeout, from its retry queue once a Cluster failed over:
    // a take given back (its receiver got the error) before it ran must then pop nothing, or its message is lost.
    it('lets a take given back before it ran pop nothing when it runs late, and survivors skip its void mark', async () => {
      const { backend, keys } = await open()
      const db = await inspect()
      const box = agent()
      await backend.mailboxes.create(client, box, null)
      await backend.mailboxes.put(client, message(box))
      const bucket = keys.bucketOf(box)
      const counts = [keys.activeMailboxes(bucket), keys.queuedBy(bucket), keys.queuedTotal(bucket)]
      const inflight = keys.inflight('late-instance', bucket)
      const run = (lua: string, keyList: string[], args: (string | number)[]) => db.eval(lua, keyList.length, ...keyList, ...args)
      // Take 7 failed for its caller and is given back before Redis ever ran it: nothing to put back, a void mark left.
      expect(await run(GIVE_BACK_MESSAGE, [inflight, keys.mailbox(box), keys.queue(box), ...counts], [7, 60_000, keys.wakeChannel()])).toBe(0)
      // Now it runs: it pops nothing, and the message stays queued for the next receiver.
      const late = await run(TAKE_MESSAGE, [keys.mailbox(box), keys.queue(box), keys.pending(box), inflight, ...counts], [client.id, '[]', Date.now(), 60_000, 7, mailboxKey(box)])
      expect(late).toBeNull()
      expect(await db.llen(keys.queue(box))).toBe(1)
      // A take given back after it ran puts its message back and leaves a void mark too.
      const taken = (await run(TAKE_MESSAGE, [keys.mailbox(box), keys.queue(box), keys.pending(box), inflight, ...counts], [client.id, '[]', Date.now(), 60_000, 8, mailboxKey(box)])) as [string, number]
      expect(await db.llen(keys.queue(box))).toBe(0)
      expect(await run(GIVE_BACK_MESSAGE, [inflight, keys.mailbox(box), keys.queue(box), ...counts], [8, 60_000, keys.wakeChannel()])).toBe(1)
      expect(await db.lrange(keys.queue(box), 0, -1)).toEqual([taken[0]])
      expect(await db.hgetall(inflight)).toEqual({ '7': '', '8': '' })
      // The survivors of a dead instance put back what it held in flight, and nothing for a void mark.
      expect(await run(RECOVER_INFLIGHT, counts, [keys.inflightPrefix(bucket), keys.mailboxPrefix(bucket), keys.queuePrefix(bucket), 60_000, keys.wakeChannel(), 'late-instance'])).toBe(0)
      expect(await db.llen(keys.queue(box))).toBe(1)
      expect(await backend.mailboxes.take(client, box, { deadline: Date.now() + 1000 })).toBe(taken[0])
    })

    it('refuses to start with a clear message when Redis cannot be reached', async () => {
      const failure = await makeBackend('redis', { redis_url: 'redis://127.0.0.1:1', redis_prefix: randomPrefix() }).catch((error: unknown) => error)
      expect(failure).toBeInstanceOf(PluginError)
      expect((failure as Error).message).toContain('cannot reach Redis at redis://127.0.0.1:1')
      // Through Sentinels none of which answers: refused at once too, rather than asking them again forever.
      const started = Date.now()
      const viaSentinels = await makeBackend('redis', { redis_sentinels: '127.0.0.1:1,127.0.0.1:2', redis_master_name: 'main', redis_prefix: randomPrefix() }).catch((error: unknown) => error)
      expect(viaSentinels).toBeInstanceOf(PluginError)
      expect((viaSentinels as Error).message).toContain('cannot reach Redis at master "main" of Sentinels 127.0.0.1:1,127.0.0.1:2: All sentinels are unreachable')
      expect(Date.now() - started).toBeLessThan(2000)
    })

    it('keeps every key under its prefix', async () => {
      const { backend, prefix } = await open()
      const id = agent()
      await backend.mailboxes.create(client, id, ['mod.A'])
      await backend.mailboxes.put(client, message(id))
      const keys: string[] = []
      const db = await inspect()
      let cursor = '0'
      do {
        const [next, found] = await db.scan(cursor, 'MATCH', `*${id.uid}*`, 'COUNT', 1000)
        cursor = next
        keys.push(...found)
      } while (cursor !== '0')
      expect(keys.length).toBeGreaterThanOrEqual(3)
      for (const key of keys) expect(key.startsWith(`${prefix}:`)).toBe(true)
    })

    it('expires an idle mailbox with its queue and drops it from discovery', async () => {
      const { backend, keys } = await open({ mailbox_expiration_d: 1 / 86_400 })
      const id = agent()
      await backend.mailboxes.create(client, id, ['mod.Idle'])
      await backend.mailboxes.put(client, message(id))
      const db = await inspect()
      for (const key of [keys.mailbox(id), keys.queue(id)]) {
        const ttl = await db.pttl(key)
        expect(ttl).toBeGreaterThan(0)
        expect(ttl).toBeLessThanOrEqual(1000)
      }
      for (let i = 0; i < 50 && (await backend.mailboxes.status(client, id)) !== 'MISSING'; i++) await Bun.sleep(100)
      expect(await backend.mailboxes.status(client, id)).toBe('MISSING')
      expect(await db.exists(keys.queue(id))).toBe(0)
      expect(await backend.mailboxes.discover(client, 'mod.Idle', false)).toEqual([])
      expect(await db.zcard(keys.discover(0, 'mod.Idle'))).toBe(0)
    })

    it('keeps a gravestone for gravestone_expiration_d and drops the queue at once', async () => {
      const { backend, keys } = await open({ gravestone_expiration_d: 2, mailbox_expiration_d: 1 })
      const id = agent()
      await backend.mailboxes.create(client, id, null)
      await backend.mailboxes.put(client, message(id))
      const db = await inspect()
      expect(await db.pttl(keys.queue(id))).toBeGreaterThan(86_400_000 - 60_000)
      await backend.mailboxes.terminate(client, id)
      const ttl = await db.pttl(keys.mailbox(id))
      expect(ttl).toBeGreaterThan(86_400_000)
      expect(ttl).toBeLessThanOrEqual(2 * 86_400_000)
      expect(await db.exists(keys.queue(id))).toBe(0)
      expect(await backend.mailboxes.status(client, id)).toBe('TERMINATED')
    })

    it("picks a dispatch's worker inside Redis: one script call, no worker read into the instance", async () => {
      const { backend, prefix } = await open()
      const now = Date.now()
      const ids: string[] = []
      for (let i = 0; i < 30; i++) {
        const id = crypto.randomUUID()
        ids.push(id)
        await backend.workers.upsertWorker({
          id, agentName: 'voice', owner: 'tenant', status: 'available', draining: false, maxProcesses: 4, loadThreshold: 1, reportedLoad: 0,
          jobs: [], reserved: [], instance: 'i', connection: `c${i}`, capabilities: [], registeredAt: now, disconnectedAt: null,
        })
      }
      const monitor = await (await inspect()).monitor()
      const fromClients: string[] = []
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        if (!source.includes('lua') && args.some((arg) => arg.includes(prefix))) fromClients.push(args[0]!.toLowerCase())
      })
      await Bun.sleep(50)
      const picked = await reserveAny(backend.workers, 'voice', 'tenant', 'job-1', new Set())
      await Bun.sleep(100)
      monitor.disconnect()
      expect(ids).toContain(picked.worker!.id)
      expect(picked.worker!.reserved).toEqual(['job-1'])
      expect(fromClients).toEqual(['evalsha'])
    })

    it('discovers through its class index, never by scanning the keyspace', async () => {
      const { backend, keys, prefix } = await open()
      const kind = `mod.Scan${crypto.randomUUID().slice(0, 8)}`
      const ids = Array.from({ length: 20 }, agent)
      for (const id of ids) await backend.mailboxes.create(client, id, [kind])
      const monitor = await (await inspect()).monitor()
      const seen: string[][] = []
      monitor.on('monitor', (_time: string, args: string[]) => {
        if (args.some((arg) => arg.includes(prefix))) seen.push(args)
      })
      await Bun.sleep(50)
      expect(await backend.mailboxes.discover(client, kind, true)).toEqual(ids.map((id) => id.uid))
      await Bun.sleep(100)
      monitor.disconnect()
      const commands = seen.map((args) => args[0]!.toLowerCase())
      expect(seen.some((args) => args[0]!.toLowerCase() === 'zrange' && args[1] === keys.discover(0, kind))).toBe(true)
      expect(commands).not.toContain('scan')
      expect(commands).not.toContain('keys')
    })

    it('counts across instances from its own bookkeeping, never by scanning the keyspace', async () => {
      const { backend: first, prefix } = await open()
      const second = await makeBackend('redis', { redis_url: redis.url!, redis_prefix: prefix })
      opened.push({ backend: second, prefix })
      const [sender, receiver] = [agent(), agent()]
      await first.mailboxes.create(client, sender, null)
      await second.mailboxes.create(client, receiver, null)
      await first.mailboxes.put(client, message(receiver))
      await second.mailboxes.put(client, message(receiver))
      const monitor = await (await inspect()).monitor()
      const seen: string[] = []
      monitor.on('monitor', (_time: string, args: string[]) => void seen.push(args[0]!.toLowerCase()))
      await Bun.sleep(50)
      expect(await first.mailboxes.counts()).toEqual({ mailboxes: 2, queued: 2 })
      expect(await second.mailboxes.counts()).toEqual({ mailboxes: 2, queued: 2 })
      await Bun.sleep(100)
      monitor.disconnect()
      expect(seen).toContain('evalsha')
      expect(seen).not.toContain('scan')
      expect(seen).not.toContain('keys')
    })

    it('takes an idle mailbox that expired out of the counts, with its queue, and leaves no bookkeeping behind', async () => {
      const { backend, keys } = await open({ mailbox_expiration_d: 1 / 86_400 })
      const [sender, idle] = [agent(), agent()]
      await backend.mailboxes.create(client, sender, null)
      await backend.mailboxes.create(client, idle, null)
      await backend.mailboxes.put(client, message(idle))
      await backend.mailboxes.put(client, message(idle))
      expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 2, queued: 2 })
      const db = await inspect()
      // Expiry leaves no trace a script sees: nothing but the counts' own sweep may notice it.
      await eventually(async () => (await db.exists(keys.mailbox(idle))) === 0, 5000, 'the mailbox expired')
      expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 0, queued: 0 })
      expect(await db.zcard(keys.activeMailboxes())).toBe(0)
      expect(await db.hlen(keys.queuedBy())).toBe(0)
      expect(await db.get(keys.queuedTotal())).toBe('0')
    })

    it('settles expired index entries on create, so the index stays bounded when nobody scrapes', async () => {
      const { backend, keys } = await open({ mailbox_expiration_d: 0.5 / 86_400 })
      const expiring = Array.from({ length: 5 }, agent)
      for (const id of expiring) await backend.mailboxes.create(client, id, null)
      const db = await inspect()
      expect(await db.zcard(keys.activeMailboxes())).toBe(5)
      await eventually(async () => (await db.exists(...expiring.map((id) => keys.mailbox(id)))) === 0, 5000, 'the mailboxes expired')
      await backend.mailboxes.create(client, agent(), null)
      expect(await db.zcard(keys.activeMailboxes())).toBe(1)
    })

    it('keeps the queue of a mailbox that only sends for as long as the mailbox', async () => {
      const { backend } = await open({ mailbox_expiration_d: 0.5 / 86_400 })
      const [receiver, peer] = [agent(), agent()]
      await backend.mailboxes.create(client, receiver, null)
      await backend.mailboxes.create(client, peer, null)
      const kept = message(receiver)
      await backend.mailboxes.put(client, kept)
      const until = Date.now() + 1200
      while (Date.now() < until) {
        // The receiver only sends; the peer takes what it sent, which keeps the peer.
        await backend.mailboxes.put(client, message(peer, receiver))
        expect(await backend.mailboxes.take(client, peer, { deadline: Date.now() + 1000 })).not.toBeNull()
        await Bun.sleep(100)
      }
      expect(await backend.mailboxes.counts()).toEqual({ mailboxes: 2, queued: 1 })
      expect(await backend.mailboxes.take(client, receiver, { deadline: Date.now() + 1000 })).toBe(kept.raw)
    })

    /** Counts the take scripts Redis runs on `queue` while `work` runs (MONITOR sees every command of every client). */
    const takesDuring = async (queue: string, work: () => Promise<void>): Promise<number> => {
      const monitor = await new Redis(redis.url!).monitor()
      const sha = script(TAKE_MESSAGE).sha
      let takes = 0
      monitor.on('monitor', (_time: string, args: string[]) => {
        if (args[0]?.toLowerCase() === 'evalsha' && args[1] === sha && args.includes(queue)) takes++
      })
      try {
        await work()
        // MONITOR lags the commands it reports a little.
        await Bun.sleep(100)
      } finally {
        monitor.disconnect()
      }
      return takes
    }

    /** Two instances on one prefix: the backend under test and another. */
    const twoInstances = async () => {
      const mine = await open()
      const other = await makeBackend('redis', { redis_url: redis.url!, redis_prefix: mine.prefix })
      opened.push({ backend: other, prefix: mine.prefix })
      return { ...mine, other }
    }
    /** `caller` takes the one message put in `box`, its wake-up heard first (one heard after might announce a later message, and keeps the mark off). */
    const emptyBy = async (backend: Backend, caller: Client, box: EntityId) => {
      await backend.mailboxes.put(caller, message(box))
      await Bun.sleep(50)
      expect(await backend.mailboxes.take(caller, box, { deadline: Date.now() + 1000 })).not.toBeNull()
    }
    /** Cuts the wake-up connection of the first instance on `prefix` (the oldest subscriber). */
    const killEvents = async (prefix: string) => {
      const db = await inspect()
      const lines = ((await db.client('LIST')) as string).split('\n')
      const events = lines.filter((line) => line.includes(`name=switchboard:${prefix}:events`)).map((line) => /\bid=(\d+)/.exec(line)![1]!)
      const first = events.sort((x, y) => Number(x) - Number(y))[0]!
      expect(await db.client('KILL', 'ID', first)).toBe(1)
    }
    /** What a take ends with: its message, or the error it was refused with. */
    const outcome = (taking: Promise<string | null>) => taking.then((taken) => taken, (error: unknown) => error)

    it('waits without asking Redis after taking the last message, until a wake-up says there may be more', async () => {
      const { backend, keys, other } = await twoInstances()
      const box = agent()
      await backend.mailboxes.create(client, box, null)
      const [first, second] = [message(box), message(box)]
      await backend.mailboxes.put(client, first)
      // Its wake-up is heard before the take is sent (one heard after might announce a later message, and keeps the mark off).
      await Bun.sleep(50)
      expect(await backend.mailboxes.take(client, box, { deadline: Date.now() + 1000 })).toBe(first.raw)
      let got: string | null = 'not yet'
      const takes = await takesDuring(keys.queue(box), async () => {
        // Emptied by the take above: this one waits for its deadline with no take script run.
        expect(await backend.mailboxes.take(client, box, { deadline: Date.now() + 1100 })).toBeNull()
        // Asks Redis again (the mark is used up), finds nothing, and waits; a put on another instance wakes it.
        const waiting = backend.mailboxes.take(client, box, { deadline: Date.now() + 5000 })
        await Bun.sleep(100)
        const started = Date.now()
        await other.mailboxes.put(client, second)
        got = await waiting
        expect(Date.now() - started).toBeLessThan(1000)
      })
      expect(got).toBe(second.raw)
      // The empty take after the wait, and the one after the wake-up.
      expect(takes).toBe(2)
    })

    it('asks Redis after the last message when its caller will not wait, so what another instance stored just before is found', async () => {
      const { backend, other, prefix } = await twoInstances()
      const box = agent()
      await backend.mailboxes.create(client, box, null)
      await emptyBy(backend, client, box)
      // Its wake-up connection cut, this instance hears of the next message late: only Redis knows of it.
      await killEvents(prefix)
      const sent = message(box)
      await other.mailboxes.put(client, sent)
      expect(await backend.mailboxes.take(client, box, { deadline: Date.now() })).toBe(sent.raw)
    })

    it('misses no message put on another instance while its take of the last one is answered (300 races)', async () => {
      const { backend, other } = await twoInstances()
      const box = agent()
      await backend.mailboxes.create(client, box, null)
      await backend.mailboxes.put(client, message(box))
      for (let round = 0; round < 300; round++) {
        const next = message(box)
        // The take and the put race: the wake-up may come before or after the take's reply, or the put may land first.
        const [taken] = await Promise.all([backend.mailboxes.take(client, box, { deadline: Date.now() + 1000 }), other.mailboxes.put(client, next)])
        expect(taken).not.toBeNull()
        const started = Date.now()
        const following = await backend.mailboxes.take(client, box, { deadline: Date.now() + 2000 })
        if (following !== next.raw) throw new Error(`round ${round}: got ${following === null ? 'nothing' : 'another message'} after ${Date.now() - started} ms`)
        expect(Date.now() - started).toBeLessThan(1000)
        await backend.mailboxes.put(client, message(box))
      }
    }, 30_000)

    it('ends a wait after the last message at once when another instance terminates the mailbox', async () => {
      const { backend, other } = await twoInstances()
      const box = agent()
      await backend.mailboxes.create(client, box, null)
      await emptyBy(backend, client, box)
      await other.mailboxes.terminate(client, box)
      await Bun.sleep(50)
      const started = Date.now()
      expect(await outcome(backend.mailboxes.take(client, box, { deadline: Date.now() + 5000 }))).toBeInstanceOf(MailboxTerminatedError)
      expect(Date.now() - started).toBeLessThan(1000)
    })

    it('refuses at once, on any instance, a take by a caller whose share was withdrawn or who never had one, after its last message', async () => {
      const { backend, other } = await twoInstances()
      const alice: Client = { id: 'alice', groups: ['lab'] }
      const bob: Client = { id: 'bob', groups: ['lab'] }
      const carol: Client = { id: 'carol', groups: [] }
      const box = agent()
      await backend.mailboxes.create(alice, box, null)
      await backend.mailboxes.share(alice, box, 'lab')
      await emptyBy(backend, bob, box)
      await other.mailboxes.unshare(alice, box, 'lab')
      await Bun.sleep(50)
      let started = Date.now()
      expect(await outcome(backend.mailboxes.take(bob, box, { deadline: Date.now() + 5000 }))).toBeInstanceOf(ForbiddenError)
      expect(Date.now() - started).toBeLessThan(1000)
      // Emptied by its owner: a caller without access is refused, not told to wait.
      await emptyBy(backend, alice, box)
      started = Date.now()
      expect(await outcome(backend.mailboxes.take(carol, box, { deadline: Date.now() + 5000 }))).toBeInstanceOf(ForbiddenError)
      expect(Date.now() - started).toBeLessThan(1000)
    })

    it('asks Redis again after its wake-up connection was cut, since the wake-ups sent meanwhile were lost', async () => {
      const { backend, other, prefix } = await twoInstances()
      const box = agent()
      await backend.mailboxes.create(client, box, null)
      await emptyBy(backend, client, box)
      await killEvents(prefix)
      const missed = message(box)
      await other.mailboxes.put(client, missed)
      await eventually(() => backend.ready(), 10_000, 'resubscribed')
      expect(await backend.mailboxes.take(client, box, { deadline: Date.now() + 1000 })).toBe(missed.raw)
    })

    it('serves 10,000 waiting receivers over two connections and wakes the right ones', async () => {
      const { backend, prefix } = await open()
      const mailboxes = Array.from({ length: 1000 }, agent)
      await Promise.all(mailboxes.map((id) => backend.mailboxes.create(client, id, null)))
      const deadline = Date.now() + 30_000
      const delivered: string[] = []
      for (let i = 0; i < 10_000; i++) {
        backend.mailboxes.take(client, mailboxes[i % 1000]!, { deadline }).then(
          (result) => void (result !== null && delivered.push(result)),
          () => {},
        )
      }
      const db = await inspect()
      // Let every take reach Redis once and go to sleep.
      await Bun.sleep(1000)
      const connections = ((await db.client('LIST')) as string).split('\n').filter((line) => line.includes(`name=switchboard:${prefix}:`))
      expect(connections).toHaveLength(2)
      const sent = mailboxes.map((id) => message(id))
      await Promise.all(sent.map((envelope) => backend.mailboxes.put(client, envelope)))
      for (let i = 0; i < 300 && delivered.length < sent.length; i++) await Bun.sleep(50)
      expect(delivered.sort()).toEqual(sent.map((envelope) => envelope.raw).sort())
    }, 60_000)
  })
})

describe('what a Redis instance knows to be empty', () => {
  it('marks a mailbox empty for the caller whose take popped the last message, when no wake-up came since the take was sent', () => {
    const drained = new Drained()
    drained.taken('a', drained.sending('a'), true, 'alice')
    // Another caller asks Redis, which checks its access.
    expect(drained.claim('a', 'bob')).toBe(false)
    expect(drained.claim('a', 'alice')).toBe(true)
    // Used up: the next take asks Redis.
    expect(drained.claim('a', 'alice')).toBe(false)
    drained.taken('b', drained.sending('b'), false, 'alice')
    expect(drained.claim('b', 'alice')).toBe(false)
  })

  it('does not mark it when a wake-up came while the take was in flight, even before its reply', () => {
    const drained = new Drained()
    const sent = drained.sending('a')
    drained.wake('a')
    drained.taken('a', sent, true, 'alice')
    expect(drained.claim('a', 'alice')).toBe(false)
  })

  it('keeps a wake-up heard during one take from marking a later one, and a wake-up after the reply clears the mark', () => {
    const drained = new Drained()
    const early = drained.sending('a')
    drained.wake('a')
    const late = drained.sending('a')
    drained.taken('a', early, true, 'alice')
    expect(drained.claim('a', 'alice')).toBe(false)
    // Sent after the wake-up: its reply may mark the mailbox.
    drained.taken('a', late, true, 'alice')
    drained.wake('a')
    expect(drained.claim('a', 'alice')).toBe(false)
  })

  it('forgets every mark after a reconnect, and every wake-up during a take in flight counts', () => {
    const drained = new Drained()
    drained.taken('a', drained.sending('a'), true, 'alice')
    const sent = drained.sending('b')
    drained.forget()
    drained.taken('b', sent, true, 'alice')
    expect(drained.claim('a', 'alice')).toBe(false)
    expect(drained.claim('b', 'alice')).toBe(false)
  })

  it('remembers at most its limit of mailboxes, dropping the oldest mark', () => {
    const drained = new Drained(2)
    for (const key of ['a', 'b', 'c']) drained.taken(key, drained.sending(key), true, 'alice')
    expect(drained.size).toBe(2)
    expect(drained.claim('a', 'alice')).toBe(false)
    expect(drained.claim('c', 'alice')).toBe(true)
  })
})
