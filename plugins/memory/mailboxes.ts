import type { Client, EntityId, Envelope, MailboxCounts, MailboxRetention, MailboxStats, MailboxStatus, MailboxStore, PendingRequest, TakeOptions } from '../../src/backend/mailboxes'
import { canAccess, isOwner, mailboxKey, mailboxStats, matchesAgent } from '../../src/backend/mailboxes'
import { Waiters, takeOrWait } from '../../src/backend/waiters'
import { ExchangeFullError, ForbiddenError, MailboxTerminatedError, UnknownMailboxError } from '../../src/errors'

interface Mailbox {
  id: EntityId
  owner: string
  terminated: boolean
  mro: readonly string[] | null
  /** Messages from `head` on are queued; the consumed prefix is dropped in bulk. */
  queue: string[]
  head: number
  /** Characters of the messages queued (from `head` on). */
  size: number
  shares: Set<string>
  /** Requests put into this mailbox and not yet answered, by tag. */
  pending: Map<string, PendingRequest>
  completed: number
  /** Epoch ms of the last take, or of a client's put from it; null before any. */
  lastActive: number | null
  /** Epoch ms from which the mailbox is gone: idle expiry while active, the end of the gravestone once terminated. */
  expiresAt: number
}

/** Requests sent from a mailbox key (kept even when the sender has no mailbox here), forgotten after the idle expiry like a mailbox. */
interface Outgoing {
  count: number
  expiresAt: number
}

/** Longest pause between two sweeps of expired mailboxes, so memory is given back within a minute whatever the retention. */
const MAX_SWEEP_INTERVAL_MS = 60_000

/**
 * Mailboxes in plain maps; every operation is one synchronous step, so it is
 * atomic. Expiry follows the redis backend: a mailbox with no activity
 * (create, put, take, restore, send) for the idle expiry disappears with its
 * queue, and a gravestone is remembered for the gravestone expiry. An expired
 * mailbox is gone the moment it expires (every read checks); an unref'd timer
 * sweeps the maps so that the memory is given back too.
 *
 * The queued messages of all mailboxes together are bounded by
 * `maxQueuedSize` characters of their text: a client's send past it is
 * refused (ExchangeFullError) and changes nothing. What Switchboard puts
 * itself (the answers to a terminated mailbox's pending requests) and a
 * message given back to its queue are always taken, so nothing already
 * accepted is lost.
 */
export class MemoryMailboxes implements MailboxStore {
  private readonly boxes = new Map<string, Mailbox>()
  private readonly outgoing = new Map<string, Outgoing>()
  readonly waiters = new Waiters()
  /** Active mailboxes and the messages queued in them, kept up to date by every change so a scrape costs nothing. */
  private activeCount = 0
  private queuedCount = 0
  /** Characters of all queued messages, held under `maxQueuedSize`. */
  private queuedSize = 0
  private readonly sweeper: ReturnType<typeof setInterval>

  constructor(
    private readonly expiry: MailboxRetention,
    /** Characters of message text all mailboxes together may hold queued. */
    private readonly maxQueuedSize = Number.POSITIVE_INFINITY,
  ) {
    const interval = Math.min(MAX_SWEEP_INTERVAL_MS, Math.max(10, Math.min(expiry.idleMs, expiry.gravestoneMs) / 4))
    this.sweeper = setInterval(() => this.sweep(Date.now()), interval)
    this.sweeper.unref()
  }

  private get(id: EntityId): Mailbox | undefined {
    return this.at(mailboxKey(id))
  }

  /** The live mailbox stored under `key` (see mailboxKey) at `now`; an expired one is forgotten here. */
  private at(key: string, now = Date.now()): Mailbox | undefined {
    const box = this.boxes.get(key)
    if (box === undefined || box.expiresAt > now) return box
    this.remove(key, box)
    return undefined
  }

  /** Forgets an expired mailbox, and its messages with it. */
  private remove(key: string, box: Mailbox): void {
    this.boxes.delete(key)
    if (box.terminated) return
    this.activeCount--
    this.queuedCount -= box.queue.length - box.head
    this.queuedSize -= box.size
  }

  /** Drops every mailbox and outgoing count whose time is up. */
  private sweep(now: number): void {
    for (const [key, box] of this.boxes) if (box.expiresAt <= now) this.remove(key, box)
    for (const [key, outgoing] of this.outgoing) if (outgoing.expiresAt <= now) this.outgoing.delete(key)
  }

  private full(): ExchangeFullError {
    const mib = (chars: number) => Math.round((chars / 1048576) * 10) / 10
    return new ExchangeFullError(
      `Exchange is full: ${mib(this.queuedSize)} MiB of messages are waiting to be received (limit ${mib(this.maxQueuedSize)} MiB, max_queued_mb of the memory backend); the message was not stored`,
    )
  }

  private accessible(client: Client, id: EntityId): Mailbox | undefined {
    const box = this.get(id)
    if (box && !canAccess(client, box.owner, box.shares)) throw new ForbiddenError()
    return box
  }

  async create(client: Client, id: EntityId, mro: readonly string[] | null): Promise<void> {
    const box = this.accessible(client, id)
    if (box) return
    this.activeCount++
    this.boxes.set(mailboxKey(id), {
      id,
      owner: client.id,
      terminated: false,
      mro: id.role === 'agent' ? mro : null,
      queue: [],
      head: 0,
      size: 0,
      shares: new Set(),
      pending: new Map(),
      completed: 0,
      lastActive: null,
      expiresAt: Date.now() + this.expiry.idleMs,
    })
  }

  async status(client: Client, id: EntityId): Promise<MailboxStatus> {
    const box = this.accessible(client, id)
    if (!box) return 'MISSING'
    return box.terminated ? 'TERMINATED' : 'ACTIVE'
  }

  async terminate(client: Client, id: EntityId): Promise<PendingRequest[]> {
    const box = this.get(id)
    if (!box) return []
    if (!isOwner(client, box.owner)) throw new ForbiddenError()
    if (box.terminated) return []
    box.terminated = true
    box.expiresAt = Date.now() + this.expiry.gravestoneMs
    this.activeCount--
    this.queuedCount -= box.queue.length - box.head
    this.queuedSize -= box.size
    box.queue = []
    box.head = 0
    box.size = 0
    box.mro = null
    const pending = [...box.pending.values()]
    box.pending.clear()
    this.waiters.fail(mailboxKey(id), () => new MailboxTerminatedError())
    return pending
  }

  async put(client: Client | null, message: Envelope): Promise<void> {
    // Each key is built once: a send looks both mailboxes up more than once.
    const destKey = mailboxKey(message.dest)
    const srcKey = mailboxKey(message.src)
    const now = Date.now()
    const box = this.at(destKey, now)
    const source = client ? this.at(srcKey, now) : undefined
    if (client) {
      if (box && !canAccess(client, box.owner, box.shares)) throw new ForbiddenError()
      if (source && !isOwner(client, source.owner)) throw new ForbiddenError()
    }
    if (!box) throw new UnknownMailboxError()
    if (box.terminated) throw new MailboxTerminatedError()
    if (client && this.queuedSize + message.raw.length > this.maxQueuedSize) throw this.full()
    // A client's send is activity of the mailbox it comes from.
    if (source) this.markActive(source, now)
    if (message.kind === 'request') {
      box.pending.set(message.tag, { src: message.src, dest: message.dest, tag: message.tag, label: message.label })
      const sent = this.outgoing.get(srcKey)
      if (sent !== undefined && sent.expiresAt > now) {
        sent.count++
        sent.expiresAt = now + this.expiry.idleMs
      } else this.outgoing.set(srcKey, { count: 1, expiresAt: now + this.expiry.idleMs })
    } else {
      const answered = source ?? this.at(srcKey, now)
      if (answered?.pending.delete(message.tag)) answered.completed++
    }
    box.queue.push(message.raw)
    box.size += message.raw.length
    box.expiresAt = now + this.expiry.idleMs
    this.queuedCount++
    this.queuedSize += message.raw.length
    this.waiters.notify(destKey)
  }

  async take(client: Client, id: EntityId, options: TakeOptions): Promise<string | null> {
    const key = mailboxKey(id)
    return takeOrWait(this.waiters, key, options, () => {
      const box = this.accessible(client, id)
      if (!box) throw new UnknownMailboxError()
      if (box.terminated) throw new MailboxTerminatedError()
      const now = Date.now()
      box.lastActive = now
      box.expiresAt = now + this.expiry.idleMs
      if (box.head >= box.queue.length) return null
      const message = box.queue[box.head]!
      box.head++
      box.size -= message.length
      this.queuedCount--
      this.queuedSize -= message.length
      if (box.head > 1024 && box.head * 2 > box.queue.length) {
        box.queue = box.queue.slice(box.head)
        box.head = 0
      }
      return message
    })
  }

  async restore(id: EntityId, raw: string): Promise<void> {
    const box = this.get(id)
    if (!box || box.terminated) return
    if (box.head > 0) box.queue[--box.head] = raw
    else box.queue.unshift(raw)
    box.size += raw.length
    box.expiresAt = Date.now() + this.expiry.idleMs
    this.queuedCount++
    this.queuedSize += raw.length
    this.waiters.notify(mailboxKey(id))
  }

  async discover(client: Client, agent: string, allowSubclasses: boolean): Promise<string[]> {
    const found: string[] = []
    const now = Date.now()
    for (const box of this.boxes.values()) {
      if (box.terminated || !box.mro || box.id.role !== 'agent' || box.expiresAt <= now) continue
      if (!canAccess(client, box.owner, box.shares)) continue
      if (matchesAgent(box.mro, agent, allowSubclasses)) found.push(box.id.uid)
    }
    return found
  }

  async heartbeat(client: Client, id: EntityId): Promise<number | null> {
    const box = this.accessible(client, id)
    if (!box) throw new UnknownMailboxError()
    return box.lastActive === null ? null : (Date.now() - box.lastActive) / 1000
  }

  private markActive(box: Mailbox, now: number): void {
    box.lastActive = now
    if (!box.terminated) box.expiresAt = now + this.expiry.idleMs
  }

  async stats(client: Client, id: EntityId): Promise<MailboxStats> {
    const box = this.accessible(client, id)
    const sent = this.outgoing.get(mailboxKey(id))
    const outgoing = sent !== undefined && sent.expiresAt > Date.now() ? sent.count : 0
    if (!box) return mailboxStats(0, 0, 0, outgoing)
    return mailboxStats(box.pending.size, box.queue.length - box.head, box.completed, outgoing)
  }

  private owned(client: Client, id: EntityId): Mailbox {
    const box = this.get(id)
    if (!box) throw new UnknownMailboxError()
    if (box.terminated) throw new MailboxTerminatedError()
    if (!isOwner(client, box.owner)) throw new ForbiddenError()
    return box
  }

  async share(client: Client, id: EntityId, group: string): Promise<void> {
    const box = this.owned(client, id)
    if (!client.groups.includes(group)) throw new ForbiddenError()
    box.shares.add(group)
  }

  async unshare(client: Client, id: EntityId, group: string): Promise<void> {
    this.owned(client, id).shares.delete(group)
  }

  async shares(client: Client, id: EntityId): Promise<string[]> {
    return [...this.owned(client, id).shares]
  }

  async counts(): Promise<MailboxCounts> {
    // Expired mailboxes leave the counts when the sweep drops them (within a quarter of the retention, at most a minute).
    return { mailboxes: this.activeCount, queued: this.queuedCount }
  }

  /** Wake every waiter with an error and stop sweeping; used when the backend closes. */
  close(): void {
    clearInterval(this.sweeper)
    this.waiters.failAll(() => new MailboxTerminatedError())
  }
}
