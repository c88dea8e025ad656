import type { Client, EntityId, Envelope, MailboxStats, MailboxStatus, MailboxStore, PendingRequest, TakeOptions } from '../../src/backend/mailboxes'
import { canAccess, isOwner, mailboxKey, mailboxStats, matchesAgent } from '../../src/backend/mailboxes'
import { Waiters, takeOrWait } from '../../src/backend/waiters'
import { ForbiddenError, MailboxTerminatedError, UnknownMailboxError } from '../../src/errors'

interface Mailbox {
  id: EntityId
  owner: string
  terminated: boolean
  mro: readonly string[] | null
  /** Messages from `head` on are queued; the consumed prefix is dropped in bulk. */
  queue: string[]
  head: number
  shares: Set<string>
  /** Requests put into this mailbox and not yet answered, by tag. */
  pending: Map<string, PendingRequest>
  completed: number
}

/** Mailboxes in plain maps; every operation is one synchronous step, so it is atomic. */
export class MemoryMailboxes implements MailboxStore {
  private readonly boxes = new Map<string, Mailbox>()
  private readonly lastActive = new Map<string, number>()
  private readonly outgoing = new Map<string, number>()
  readonly waiters = new Waiters()

  private get(id: EntityId): Mailbox | undefined {
    return this.boxes.get(mailboxKey(id))
  }

  private accessible(client: Client, id: EntityId): Mailbox | undefined {
    const box = this.get(id)
    if (box && !canAccess(client, box.owner, box.shares)) throw new ForbiddenError()
    return box
  }

  async create(client: Client, id: EntityId, mro: readonly string[] | null): Promise<void> {
    const box = this.accessible(client, id)
    if (box) return
    this.boxes.set(mailboxKey(id), {
      id,
      owner: client.id,
      terminated: false,
      mro: id.role === 'agent' ? mro : null,
      queue: [],
      head: 0,
      shares: new Set(),
      pending: new Map(),
      completed: 0,
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
    box.queue = []
    box.head = 0
    box.mro = null
    const pending = [...box.pending.values()]
    box.pending.clear()
    this.waiters.fail(mailboxKey(id), () => new MailboxTerminatedError())
    return pending
  }

  async put(client: Client | null, message: Envelope): Promise<void> {
    const box = this.get(message.dest)
    if (client) {
      if (box && !canAccess(client, box.owner, box.shares)) throw new ForbiddenError()
      const source = this.get(message.src)
      if (source && !isOwner(client, source.owner)) throw new ForbiddenError()
    }
    if (!box) throw new UnknownMailboxError()
    if (box.terminated) throw new MailboxTerminatedError()
    if (message.kind === 'request') {
      box.pending.set(message.tag, { src: message.src, dest: message.dest, tag: message.tag, label: message.label })
      const source = mailboxKey(message.src)
      this.outgoing.set(source, (this.outgoing.get(source) ?? 0) + 1)
    } else {
      const answered = this.get(message.src)
      if (answered?.pending.delete(message.tag)) answered.completed++
    }
    box.queue.push(message.raw)
    this.waiters.notify(mailboxKey(message.dest))
  }

  async take(client: Client, id: EntityId, options: TakeOptions): Promise<string | null> {
    const key = mailboxKey(id)
    return takeOrWait(this.waiters, key, options, () => {
      const box = this.accessible(client, id)
      if (!box) throw new UnknownMailboxError()
      if (box.terminated) throw new MailboxTerminatedError()
      this.lastActive.set(key, Date.now())
      if (box.head >= box.queue.length) return null
      const message = box.queue[box.head]!
      box.head++
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
    this.waiters.notify(mailboxKey(id))
  }

  async discover(client: Client, agent: string, allowSubclasses: boolean): Promise<string[]> {
    const found: string[] = []
    for (const box of this.boxes.values()) {
      if (box.terminated || !box.mro || box.id.role !== 'agent') continue
      if (!canAccess(client, box.owner, box.shares)) continue
      if (matchesAgent(box.mro, agent, allowSubclasses)) found.push(box.id.uid)
    }
    return found
  }

  async heartbeat(client: Client, id: EntityId): Promise<number | null> {
    if (!this.accessible(client, id)) throw new UnknownMailboxError()
    const at = this.lastActive.get(mailboxKey(id))
    return at === undefined ? null : (Date.now() - at) / 1000
  }

  async touch(id: EntityId): Promise<void> {
    const key = mailboxKey(id)
    if (this.boxes.has(key)) this.lastActive.set(key, Date.now())
  }

  async stats(client: Client, id: EntityId): Promise<MailboxStats> {
    const box = this.accessible(client, id)
    const outgoing = this.outgoing.get(mailboxKey(id)) ?? 0
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

  /** Wake every waiter with an error; used when the backend closes. */
  close(): void {
    this.waiters.failAll(() => new MailboxTerminatedError())
  }
}
