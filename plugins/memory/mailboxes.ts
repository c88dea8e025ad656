import type { Client, EntityId, Envelope, MailboxCounts, MailboxRetention, MailboxStats, MailboxStatus, MailboxStore, PendingRequest, TakeOptions } from '../../src/backend/mailboxes'
import { canAccess, isOwner, mailboxKey, mailboxStats, matchesAgent, outgoingKey, utf8Bytes } from '../../src/backend/mailboxes'
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
  /** Bytes the messages queued (from `head` on) are counted for. */
  size: number
  /** Bytes the record itself (its id, classes and shares) is counted for. */
  bytes: number
  shares: Set<string>
  /** Requests put into this mailbox and not yet answered, by tag. */
  pending: Map<string, PendingRequest>
  completed: number
  /** Epoch ms of the last take, or of a client's put from it; null before any. */
  lastActive: number | null
  /** Epoch ms from which the mailbox is gone: idle expiry while active, the end of the gravestone once terminated. */
  expiresAt: number
}

/** Requests one client sent from a mailbox key (kept even when the sender has no mailbox here), forgotten after the idle expiry like a mailbox. */
interface Outgoing {
  count: number
  expiresAt: number
  bytes: number
}

/**
 * What each record is counted for beyond its text, in bytes: the objects and
 * map entries that hold it, as measured in Bun (heap growth per record,
 * with the ids and tags a parsed message brings, rounded up), so that many
 * small records are bounded as truly as a few large ones.
 */
const COST = { mailbox: 640, message: 48, pending: 512, outgoing: 224, share: 160 } as const

/** Bytes a mailbox record is counted for: its own cost, its name, its classes and its shares. */
function recordBytes(id: EntityId, mro: readonly string[] | null, shares: Iterable<string>): number {
  let bytes = COST.mailbox + utf8Bytes(id.uid) + (id.name === null ? 0 : utf8Bytes(id.name))
  for (const name of mro ?? []) bytes += 16 + utf8Bytes(name)
  for (const group of shares) bytes += COST.share + utf8Bytes(group)
  return bytes
}

/** Bytes a queued message is counted for. */
const messageBytes = (raw: string): number => COST.message + utf8Bytes(raw)

/** Bytes a pending request is counted for: its cost and the names it carries (uids and tags are of bounded size). */
function pendingBytes(request: PendingRequest): number {
  return COST.pending + (request.src.name === null ? 0 : utf8Bytes(request.src.name)) + (request.dest.name === null ? 0 : utf8Bytes(request.dest.name)) + (request.srcOwner ? utf8Bytes(request.srcOwner) : 0)
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
 * Everything a client can make the exchange hold is bounded together by
 * `maxHeldBytes`, counted in UTF-8 bytes plus each record's own cost: queued
 * messages, pending requests, mailbox records (their names and classes,
 * gravestones too) and the counts of requests sent. A client's send, create
 * or share past it is refused (ExchangeFullError) and changes nothing. What
 * Switchboard puts itself (the answers to a terminated mailbox's pending
 * requests, no larger than the requests they replace) and a message given
 * back to its queue are always taken, so nothing already accepted is lost.
 */
export class MemoryMailboxes implements MailboxStore {
  private readonly boxes = new Map<string, Mailbox>()
  private readonly outgoing = new Map<string, Outgoing>()
  readonly waiters = new Waiters()
  /** Active mailboxes and the messages queued in them, kept up to date by every change so a scrape costs nothing. */
  private activeCount = 0
  private queuedCount = 0
  /** Bytes of everything clients made the exchange hold (see the class comment), kept under `maxHeldBytes`. */
  private held = 0
  private readonly sweeper: ReturnType<typeof setInterval>

  constructor(
    private readonly expiry: MailboxRetention,
    /** Bytes all records clients create may take together (max_queued_mb). */
    private readonly maxHeldBytes = Number.POSITIVE_INFINITY,
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

  /** Forgets an expired mailbox, and its messages and pending requests with it. */
  private remove(key: string, box: Mailbox): void {
    this.boxes.delete(key)
    this.held -= box.bytes
    if (box.terminated) return
    this.activeCount--
    this.drop(box)
  }

  /** Takes a mailbox's queue and pending requests out of the counts and empties them. */
  private drop(box: Mailbox): PendingRequest[] {
    this.queuedCount -= box.queue.length - box.head
    this.held -= box.size
    box.queue = []
    box.head = 0
    box.size = 0
    const pending = [...box.pending.values()]
    for (const request of pending) this.held -= pendingBytes(request)
    box.pending.clear()
    return pending
  }

  /** Drops every mailbox and outgoing count whose time is up. */
  private sweep(now: number): void {
    for (const [key, box] of this.boxes) if (box.expiresAt <= now) this.remove(key, box)
    for (const [key, outgoing] of this.outgoing) {
      if (outgoing.expiresAt > now) continue
      this.outgoing.delete(key)
      this.held -= outgoing.bytes
    }
  }

  /** Refuses (ExchangeFullError) a client's change that would take what is held past the bound by `bytes`; `what` names what was not stored. */
  private admit(bytes: number, what: string): void {
    if (this.held + bytes <= this.maxHeldBytes) return
    const mib = (value: number) => Math.round((value / 1048576) * 10) / 10
    throw new ExchangeFullError(
      `Exchange is full: it holds ${mib(this.held)} MiB of queued messages, pending requests and mailboxes (limit ${mib(this.maxHeldBytes)} MiB, max_queued_mb of the memory backend); ${what}`,
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
    const classes = id.role === 'agent' ? mro : null
    const bytes = recordBytes(id, classes, []) + utf8Bytes(client.id)
    this.admit(bytes, 'the mailbox was not created')
    this.activeCount++
    this.held += bytes
    this.boxes.set(mailboxKey(id), {
      id,
      owner: client.id,
      terminated: false,
      mro: classes,
      queue: [],
      head: 0,
      size: 0,
      bytes,
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
    const pending = this.drop(box)
    // A gravestone keeps only what its status and rights need: no name, no classes.
    box.id = { uid: box.id.uid, name: null, role: box.id.role }
    box.mro = null
    this.held -= box.bytes
    box.bytes = recordBytes(box.id, null, box.shares) + utf8Bytes(box.owner)
    this.held += box.bytes
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
    if (!client && message.destOwner !== undefined && box.owner !== message.destOwner) throw new UnknownMailboxError()
    const size = messageBytes(message.raw)
    let request: PendingRequest | null = null
    let added = size
    const sentKey = outgoingKey(message.src, client?.id ?? '')
    let sent = this.outgoing.get(sentKey)
    if (sent !== undefined && sent.expiresAt <= now) {
      this.outgoing.delete(sentKey)
      this.held -= sent.bytes
      sent = undefined
    }
    if (message.kind === 'request') {
      request = { src: message.src, dest: message.dest, tag: message.tag, label: message.label, srcOwner: source ? source.owner : null }
      const replaced = box.pending.get(message.tag)
      added += pendingBytes(request) - (replaced ? pendingBytes(replaced) : 0)
      if (sent === undefined) added += COST.outgoing + utf8Bytes(sentKey)
    }
    if (client) this.admit(added, 'the message was not stored')
    // A client's send is activity of the mailbox it comes from.
    if (source) this.markActive(source, now)
    if (request !== null) {
      box.pending.set(message.tag, request)
      if (sent !== undefined) {
        sent.count++
        sent.expiresAt = now + this.expiry.idleMs
      } else this.outgoing.set(sentKey, { count: 1, expiresAt: now + this.expiry.idleMs, bytes: COST.outgoing + utf8Bytes(sentKey) })
    } else {
      const answered = source ?? this.at(srcKey, now)
      const settled = answered?.pending.get(message.tag)
      if (answered && settled) {
        answered.pending.delete(message.tag)
        answered.completed++
        this.held -= pendingBytes(settled)
      }
    }
    box.queue.push(message.raw)
    box.size += size
    box.expiresAt = now + this.expiry.idleMs
    this.queuedCount++
    this.held += added
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
      const size = messageBytes(message)
      box.head++
      box.size -= size
      this.queuedCount--
      this.held -= size
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
    const size = messageBytes(raw)
    box.size += size
    box.expiresAt = Date.now() + this.expiry.idleMs
    this.queuedCount++
    this.held += size
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
    // The owner's sends; from a key with no mailbox, only the caller's own.
    const sent = this.outgoing.get(outgoingKey(id, box ? box.owner : client.id))
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
    if (box.shares.has(group)) return
    const bytes = COST.share + utf8Bytes(group)
    this.admit(bytes, 'the mailbox was not shared')
    box.shares.add(group)
    box.bytes += bytes
    this.held += bytes
  }

  async unshare(client: Client, id: EntityId, group: string): Promise<void> {
    const box = this.owned(client, id)
    if (!box.shares.delete(group)) return
    const bytes = COST.share + utf8Bytes(group)
    box.bytes -= bytes
    this.held -= bytes
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
