/**
 * Mailboxes in Redis. Each operation is one Lua script, so the rights check
 * and the change are one atomic step even with many instances. Receivers
 * wait in this process (Waiters), holding no connection; a put anywhere
 * publishes the mailbox key and every instance wakes one local waiter, which
 * then races the others through the atomic pop.
 */
import { randomUUID } from 'node:crypto'
import type { Client, EntityId, Envelope, MailboxCounts, MailboxStats, MailboxStatus, MailboxStore, PendingRequest, TakeOptions } from '../../src/backend/mailboxes'
import { mailboxKey, mailboxStats, retentionMs } from '../../src/backend/mailboxes'
import { Waiters, takeOrWait } from '../../src/backend/waiters'
import { MailboxTerminatedError, UnavailableError } from '../../src/errors'
import type { Logger } from '../../src/ops/logger'
import { script, storeError, type RedisConnection } from './connection'
import type { Drained } from './drained'
import type { RedisKeys } from './keys'
import * as lua from './scripts/mailboxes'
import * as instanceLua from './scripts/instances'

const SCRIPTS = {
  create: script(lua.CREATE_MAILBOX),
  status: script(lua.MAILBOX_STATUS, { answered: false }),
  terminate: script(lua.TERMINATE_MAILBOX),
  put: script(lua.PUT_MESSAGE),
  putInto: script(lua.PUT_INTO),
  putFrom: script(lua.PUT_FROM),
  // Acknowledged by the replicas in `take`, which gives the message back when they do not acknowledge it.
  take: script(lua.TAKE_MESSAGE, { answered: false }),
  giveBack: script(lua.GIVE_BACK_MESSAGE, { answered: false }),
  // A put back after a failed delivery: no caller's answer depends on it.
  restore: script(lua.RESTORE_MESSAGE, { answered: false }),
  recover: script(lua.RECOVER_INFLIGHT, { answered: false }),
  dead: script(instanceLua.DEAD, { answered: false }),
  forgetDead: script(instanceLua.FORGET_DEAD, { answered: false }),
  discover: script(lua.DISCOVER_AGENTS, { answered: false }),
  heartbeat: script(lua.MAILBOX_HEARTBEAT, { answered: false }),
  stats: script(lua.MAILBOX_STATS, { answered: false }),
  share: script(lua.SHARE_MAILBOX),
  counts: script(lua.COUNT_MAILBOXES, { answered: false }),
}

/** A take waits for the wake-up instead of asking Redis only when its caller waits at least this long. */
const SKIP_WAIT_MIN_MS = 1000

/** Index entries one counts call settles at most, so a scrape after many expiries never blocks Redis for long. */
const SWEEP_BATCH = 1000

/**
 * How long Redis remembers a put's id. ioredis re-sends a command whose reply was lost only while it reconnects
 * (a few attempts of at most 2 s each, or a Sentinel failover), well within it.
 */
const PUT_ID_MS = 60_000

/** What ioredis says of a command it refused to send because the connection is down. */
const NOT_SENT = 'enableOfflineQueue options is false'

/** Takes remembered for a give-back at most; past it the oldest is left in flight, put back only when this instance dies. */
const UNCERTAIN_MAX = 10_000

/** Milliseconds between attempts to give back the messages of takes whose receivers got an error, while Redis refuses. */
const GIVE_BACK_RETRY_MS = 500

/**
 * How long the void mark of a take given back is kept: longer than ioredis may hold a command for a retry after its
 * caller got a timeout (attempts every 200 ms while a Cluster fails over, at most 16 of them).
 */
const VOID_KEEP_MS = 60_000

/** Dead instances one recovery call puts back the messages of, at most, so that it never blocks Redis for long. */
const RECOVER_BATCH = 10

export interface MailboxExpiry {
  /** Days an idle mailbox (queue, pending requests, record) is kept. */
  mailboxDays: number
  /** Days a terminated mailbox is remembered. */
  gravestoneDays: number
}

/** The pub/sub channels mailboxes listen on, and what each does to this instance's waiters. */
export function mailboxChannels(keys: RedisKeys, waiters: Waiters, drained: Drained): Record<string, (payload: string) => void> {
  return {
    [keys.wakeChannel()]: (key) => {
      drained.wake(key)
      waiters.notify(key)
    },
    [keys.terminatedChannel()]: (key) => {
      drained.wake(key)
      waiters.fail(key, () => new MailboxTerminatedError())
    },
  }
}

/** After a reconnect: wake every local waiter, since wake-ups published meanwhile were lost. */
export function wakeAll(waiters: Waiters, drained: Drained): void {
  drained.forget()
  for (const key of [...waiters.keys()]) waiters.notify(key, waiters.count(key))
}

export class RedisMailboxes implements MailboxStore {
  private readonly idleMs: number
  private readonly gravestoneMs: number
  /** The instance whose in-flight hash this one's takes go to; its heartbeat (see index.ts) tells the others it lives. */
  readonly instance = randomUUID()
  private takes = 0
  /** Takes answered and not yet settled, oldest first: their numbers, their mailbox buckets and when each reply arrived. */
  private unsettled: { take: number; bucket: number; at: number }[] = []
  private settleTimer: ReturnType<typeof setTimeout> | null = null
  /** Takes that failed with Redis unavailable and may have popped a message (held in flight) nobody received, oldest first. */
  private uncertain: { take: number; id: EntityId }[] = []
  /** Takes given back, oldest first, whose void marks (in the in-flight hash) are removed VOID_KEEP_MS after. At most UNCERTAIN_MAX. */
  private voided: { take: number; bucket: number; at: number }[] = []
  private giveBackTimer: ReturnType<typeof setTimeout> | null = null
  private givingBack: Promise<void> | null = null
  private closed = false

  constructor(
    private readonly connection: RedisConnection,
    private readonly keys: RedisKeys,
    private readonly waiters: Waiters,
    private readonly drained: Drained,
    expiry: MailboxExpiry,
    /** How long a message handed to a receiver stays in flight, to be put back if this instance dies before the answer is out. */
    private readonly redeliveryWindowMs: number,
    private readonly logger: Logger,
  ) {
    this.idleMs = retentionMs(expiry.mailboxDays)
    this.gravestoneMs = retentionMs(expiry.gravestoneDays)
  }

  /** The keys of one bucket's counts' bookkeeping, as the scripts take them. */
  private countKeys(bucket: number): string[] {
    return [this.keys.activeMailboxes(bucket), this.keys.queuedBy(bucket), this.keys.queuedTotal(bucket)]
  }

  async create(client: Client, id: EntityId, mro: readonly string[] | null): Promise<void> {
    const classes = id.role === 'agent' && mro && mro.length > 0 ? JSON.stringify(mro) : ''
    const bucket = this.keys.bucketOf(id)
    let seq: number
    try {
      // The store's counter orders the agents of every bucket (discover); a create refused below leaves a gap.
      seq = await this.connection.command.incr(this.keys.sequence())
    } catch (error) {
      throw storeError(error)
    }
    await this.connection.run(
      SCRIPTS.create,
      [this.keys.mailbox(id), ...this.countKeys(bucket)],
      [client.id, groups(client), classes, this.idleMs, this.keys.discoverPrefix(bucket), id.uid, mailboxKey(id), this.keys.mailboxPrefix(bucket), seq],
    )
  }

  async status(client: Client, id: EntityId): Promise<MailboxStatus> {
    return (await this.connection.run(SCRIPTS.status, [this.keys.mailbox(id)], [client.id, groups(client)])) as MailboxStatus
  }

  async terminate(client: Client, id: EntityId): Promise<PendingRequest[]> {
    const pending = (await this.connection.run(
      SCRIPTS.terminate,
      [this.keys.mailbox(id), this.keys.queue(id), this.keys.pending(id), ...this.countKeys(this.keys.bucketOf(id))],
      [client.id, this.gravestoneMs, this.keys.discoverPrefix(this.keys.bucketOf(id)), id.uid, this.keys.terminatedChannel(), mailboxKey(id)],
    )) as string[]
    return pending.map((json) => JSON.parse(json) as PendingRequest)
  }

  async put(client: Client | null, message: Envelope): Promise<void> {
    const { src, dest } = message
    const pending: PendingRequest = { src, dest, tag: message.tag, label: message.label }
    const destOwner = client === null ? message.destOwner : undefined
    const [bucket, sourceBucket] = [this.keys.bucketOf(dest), this.keys.bucketOf(src)]
    const into = [this.keys.mailbox(dest), this.keys.queue(dest), this.keys.pending(dest), ...this.countKeys(bucket), this.keys.puts(dest)]
    const from = [this.keys.mailbox(src), this.keys.pending(src), this.keys.outgoing(src, client?.id ?? ''), this.keys.queue(src)]
    // The same in every attempt ioredis sends of this call.
    const putId = randomUUID()
    // The arguments' layout PUT_HALVES documents.
    const args = (sourceOwner: string | null | undefined) => [
      client ? '1' : '',
      client?.id ?? '',
      client ? groups(client) : '[]',
      message.kind,
      message.tag,
      // The script closes the object with the source's owner (srcOwner).
      JSON.stringify(pending).slice(0, -1),
      message.raw,
      this.idleMs,
      this.keys.wakeChannel(),
      mailboxKey(dest),
      // JSON: an owner may be '' (the client of an instance without auth); read by the script itself when undefined.
      sourceOwner === undefined ? '' : JSON.stringify(sourceOwner),
      destOwner === undefined ? '' : '1',
      destOwner ?? '',
      putId,
      PUT_ID_MS,
      Date.now(),
      mailboxKey(src),
    ]
    if (bucket === sourceBucket) {
      await this.connection.run(SCRIPTS.put, [...into, ...from], args(undefined))
      return
    }
    // Between two buckets (slots of a Cluster): the destination's half, then the source's. Each is idempotent per put
    // id; a failure between them leaves the source's books behind (its stats, the expiry of its activity), never the message.
    let sourceOwner: string | null
    try {
      // An owner, once set, never changes: read before the destination's half, which checks it.
      sourceOwner = await this.connection.command.hget(this.keys.mailbox(src), 'owner')
    } catch (error) {
      throw storeError(error)
    }
    const between = args(sourceOwner)
    await this.connection.run(SCRIPTS.putInto, into, between)
    await this.connection.run(SCRIPTS.putFrom, [...from, ...this.countKeys(sourceBucket), this.keys.puts(src)], between)
  }

  async take(client: Client, id: EntityId, options: TakeOptions): Promise<string | null> {
    const key = mailboxKey(id)
    const [box, queue, pending] = [this.keys.mailbox(id), this.keys.queue(id), this.keys.pending(id)]
    const bucket = this.keys.bucketOf(id)
    const clientGroups = groups(client)
    const caller = `${client.id}\n${clientGroups}`
    return takeOrWait(this.waiters, key, options, async () => {
      // Emptied by this caller's last take here, with no wake-up since: waiting is all a take would lead to. A caller
      // that will not wait long asks Redis anyway, so a message sent through another instance just before is found
      // even if its wake-up is still on its way.
      if (options.deadline - Date.now() >= SKIP_WAIT_MIN_MS && this.drained.claim(key, caller)) return null
      const take = ++this.takes
      const sent = this.drained.sending(key)
      let reply: [string, number] | null
      try {
        reply = (await this.connection.run(
          SCRIPTS.take,
          [box, queue, pending, this.keys.inflight(this.instance, bucket), ...this.countKeys(bucket)],
          [client.id, clientGroups, Date.now(), this.idleMs, take, key],
        )) as [string, number] | null
      } catch (error) {
        this.drained.taken(key, sent, false, caller)
        // A take sent may have run with its reply lost (a connection cut, a failover): what it popped goes back.
        if (error instanceof UnavailableError && !error.message.includes(NOT_SENT)) this.giveBackLater(take, id)
        throw error
      }
      this.drained.taken(key, sent, reply !== null && reply[1] === 0, caller)
      if (reply === null) return null
      try {
        await this.connection.replicated(box)
      } catch (error) {
        this.giveBackLater(take, id)
        throw error
      }
      this.unsettled.push({ take, bucket, at: Date.now() })
      this.scheduleSettle()
      return reply[0]
    })
  }

  /** Gives back, as soon as Redis answers, the message take number `take` may hold in flight, its receiver having got an error. */
  private giveBackLater(take: number, id: EntityId): void {
    this.uncertain.push({ take, id })
    if (this.uncertain.length > UNCERTAIN_MAX) this.uncertain.shift()
    void this.giveBack().finally(() => this.scheduleGiveBack())
  }

  /** Puts back at the head of their mailboxes the messages the uncertain takes hold in flight; one run at a time, stopping at the first failure. */
  private giveBack(): Promise<void> {
    this.givingBack ??= this.giveBackAll().finally(() => (this.givingBack = null))
    return this.givingBack
  }

  private async giveBackAll(): Promise<void> {
    while (this.uncertain.length > 0) {
      const { take, id } = this.uncertain[0]!
      try {
        const bucket = this.keys.bucketOf(id)
        await this.connection.run(SCRIPTS.giveBack, [this.keys.inflight(this.instance, bucket), this.keys.mailbox(id), this.keys.queue(id), ...this.countKeys(bucket)], [take, this.idleMs, this.keys.wakeChannel()])
        this.voided.push({ take, bucket, at: Date.now() })
      } catch (error) {
        if (this.closed) this.logger.warn('could not give back messages their receivers did not get; they stay in flight', { error: String(error), count: this.uncertain.length })
        return
      }
      this.uncertain.shift()
    }
    this.scheduleSettle()
  }

  private scheduleGiveBack(): void {
    if (this.closed || this.giveBackTimer !== null || this.uncertain.length === 0) return
    this.giveBackTimer = setTimeout(() => {
      void this.giveBack().finally(() => {
        this.giveBackTimer = null
        this.scheduleGiveBack()
      })
    }, GIVE_BACK_RETRY_MS)
    this.giveBackTimer.unref?.()
  }

  /**
   * Settles (drops from the in-flight hash) the takes answered a redelivery window before `now`, and the void marks
   * of takes given back VOID_KEEP_MS before it (and past the UNCERTAIN_MAX newest); those that fail to settle are
   * tried again later.
   */
  private async settle(now: number): Promise<void> {
    let count = 0
    while (count < this.unsettled.length && this.unsettled[count]!.at <= now - this.redeliveryWindowMs) count++
    let voids = Math.max(this.voided.length - UNCERTAIN_MAX, 0)
    while (voids < this.voided.length && this.voided[voids]!.at <= now - VOID_KEEP_MS) voids++
    if (count === 0 && voids === 0) return
    const settled = this.unsettled.splice(0, count)
    const cleared = this.voided.splice(0, voids)
    const byBucket = Map.groupBy([...settled, ...cleared], ({ bucket }) => bucket)
    try {
      await Promise.all(
        [...byBucket].map(async ([bucket, takes]) => {
          const inflight = this.keys.inflight(this.instance, bucket)
          await this.connection.command.hdel(inflight, ...takes.map(({ take }) => String(take)))
          // With redis_wait_replicas, a settle lost in a failover would deliver its messages again when this instance dies.
          await this.connection.replicated(inflight)
        }),
      )
    } catch (error) {
      // Tried again a window later, rather than at once against a store that just failed.
      const now = Date.now()
      this.unsettled.unshift(...settled.map((entry) => ({ ...entry, at: now })))
      this.voided.unshift(...cleared.map((entry) => ({ ...entry, at: now - VOID_KEEP_MS + GIVE_BACK_RETRY_MS })))
      this.logger.warn('could not settle delivered messages; trying again', { error: String(error), count })
    }
  }

  private scheduleSettle(): void {
    if (this.closed || this.settleTimer !== null || (this.unsettled.length === 0 && this.voided.length === 0)) return
    const next = Math.min((this.unsettled[0]?.at ?? Number.POSITIVE_INFINITY) + this.redeliveryWindowMs, (this.voided[0]?.at ?? Number.POSITIVE_INFINITY) + VOID_KEEP_MS)
    const due = Math.max(next - Date.now(), 0)
    this.settleTimer = setTimeout(() => {
      void this.settle(Date.now()).finally(() => {
        this.settleTimer = null
        this.scheduleSettle()
      })
    }, due)
    this.settleTimer.unref?.()
  }

  /**
   * Puts back at the head of their mailboxes the messages that dead instances (last heartbeat expired) had in
   * flight; called on each heartbeat of this instance. Returns how many were put back.
   */
  async recoverDead(): Promise<number> {
    let restored = 0
    for (;;) {
      const dead = (await this.connection.run(SCRIPTS.dead, [this.keys.instances()], [RECOVER_BATCH])) as string[]
      if (dead.length === 0) return restored
      // Bucket by bucket (each its own slot in a Cluster); an instance is forgotten once every bucket put its messages back.
      const counts = await Promise.all(
        this.keys.allBuckets().map(
          async (bucket) =>
            (await this.connection.run(
              SCRIPTS.recover,
              this.countKeys(bucket),
              [this.keys.inflightPrefix(bucket), this.keys.mailboxPrefix(bucket), this.keys.queuePrefix(bucket), this.idleMs, this.keys.wakeChannel(), ...dead],
            )) as number,
        ),
      )
      restored += counts.reduce((sum, count) => sum + count, 0)
      await this.connection.run(SCRIPTS.forgetDead, [this.keys.instances()], dead)
      if (dead.length < RECOVER_BATCH) return restored
    }
  }

  async restore(id: EntityId, raw: string): Promise<void> {
    await this.connection.run(SCRIPTS.restore, [this.keys.mailbox(id), this.keys.queue(id), ...this.countKeys(this.keys.bucketOf(id))], [raw, this.idleMs, this.keys.wakeChannel(), mailboxKey(id)])
  }

  async discover(client: Client, agent: string, allowSubclasses: boolean): Promise<string[]> {
    // Each bucket's index (its own slot in a Cluster), merged in creation order.
    const found = await Promise.all(
      this.keys.allBuckets().map(
        async (bucket) =>
          (await this.connection.run(SCRIPTS.discover, [this.keys.discover(bucket, agent)], [client.id, groups(client), allowSubclasses ? '' : '1', agent, this.keys.agentMailboxPrefix(bucket)])) as string[],
      ),
    )
    const agents: { uid: string; seq: number }[] = []
    for (const flat of found) for (let i = 0; i + 1 < flat.length; i += 2) agents.push({ uid: flat[i]!, seq: Number(flat[i + 1]) })
    return agents.sort((a, b) => a.seq - b.seq).map((entry) => entry.uid)
  }

  async heartbeat(client: Client, id: EntityId): Promise<number | null> {
    const at = (await this.connection.run(SCRIPTS.heartbeat, [this.keys.mailbox(id)], [client.id, groups(client)])) as string | null
    return at === null ? null : Math.max(0, Date.now() - Number(at)) / 1000
  }

  async stats(client: Client, id: EntityId): Promise<MailboxStats> {
    const [pending, queued, completed, outgoing] = (await this.connection.run(
      SCRIPTS.stats,
      [this.keys.mailbox(id), this.keys.queue(id), this.keys.pending(id)],
      [client.id, groups(client), this.keys.outgoingPrefix(this.keys.bucketOf(id)), mailboxKey(id)],
    )) as [number, number, number, number]
    return mailboxStats(pending, queued, completed, outgoing)
  }

  async share(client: Client, id: EntityId, group: string): Promise<void> {
    await this.connection.run(SCRIPTS.share, [this.keys.mailbox(id)], [client.id, groups(client), 'share', group, this.keys.wakeChannel(), mailboxKey(id)])
  }

  async unshare(client: Client, id: EntityId, group: string): Promise<void> {
    await this.connection.run(SCRIPTS.share, [this.keys.mailbox(id)], [client.id, groups(client), 'unshare', group, this.keys.wakeChannel(), mailboxKey(id)])
  }

  async shares(client: Client, id: EntityId): Promise<string[]> {
    return (await this.connection.run(SCRIPTS.share, [this.keys.mailbox(id)], [client.id, groups(client), 'list', '', '', ''])) as string[]
  }

  async counts(): Promise<MailboxCounts> {
    // Kept per bucket (its own slot in a Cluster), summed.
    const counts = await Promise.all(
      this.keys.allBuckets().map(async (bucket) => {
        for (;;) {
          const [mailboxes, queued, more] = (await this.connection.run(SCRIPTS.counts, this.countKeys(bucket), [this.keys.mailboxPrefix(bucket), this.idleMs, SWEEP_BATCH])) as [number, number, number]
          if (more === 0) return { mailboxes, queued }
        }
      }),
    )
    return counts.reduce((sum, count) => ({ mailboxes: sum.mailboxes + count.mailboxes, queued: sum.queued + count.queued }), { mailboxes: 0, queued: 0 })
  }

  /** Wake every waiter with an error, and settle every delivery (a clean stop answers its receivers before this); used when the backend closes. */
  async close(): Promise<void> {
    this.closed = true
    this.waiters.failAll(() => new MailboxTerminatedError())
    if (this.settleTimer !== null) clearTimeout(this.settleTimer)
    if (this.giveBackTimer !== null) clearTimeout(this.giveBackTimer)
    this.settleTimer = null
    this.giveBackTimer = null
    await this.giveBack()
    await this.settle(Number.POSITIVE_INFINITY)
  }
}

/** The caller's groups as the scripts expect them. */
function groups(client: Client): string {
  return JSON.stringify(client.groups)
}
