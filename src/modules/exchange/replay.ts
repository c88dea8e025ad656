/**
 * What listen streams delivered lately, so a listener that reconnects with
 * `Last-Event-ID` gets again what was written to its old connection after
 * that event: a write the kernel accepted may never have been read (a
 * listener that stalled, then reset). Kept in this process, for a short
 * window and a bounded number of bytes; events carry integer ids (Academy's
 * client reads `id:` as an integer) that only ever grow, also across
 * restarts, since each process starts counting from its start time.
 */
import type { EntityId } from '../../backend/mailboxes'

export interface ReplayOptions {
  /** How long a delivered message stays replayable, in ms. */
  windowMs: number
  /** Bytes of message text kept at most, over every mailbox (the oldest go first). */
  maxBytes: number
}

interface Delivered {
  id: number
  key: string
  message: string
  bytes: number
  at: number
}

const keyOf = (mailbox: EntityId) => `${mailbox.role}:${mailbox.uid}`

export class ReplayLog {
  /** Every kept delivery, oldest first. */
  private readonly order: Delivered[] = []
  private head = 0
  /** Each mailbox's kept deliveries, oldest first. */
  private readonly byMailbox = new Map<string, Delivered[]>()
  private bytes = 0
  // Microseconds since the epoch at start: ids stay above those of an earlier process of the same store.
  private last = Date.now() * 1000

  constructor(private readonly options: ReplayOptions) {}

  /** The next event id. */
  nextId(): number {
    return ++this.last
  }

  /** Keeps `message`, delivered to `mailbox` as event `id`, for the window. */
  keep(mailbox: EntityId, id: number, message: string, now = Date.now()): void {
    if (this.options.windowMs <= 0) return
    const bytes = Buffer.byteLength(message)
    if (bytes > this.options.maxBytes) return
    const entry: Delivered = { id, key: keyOf(mailbox), message, bytes, at: now }
    this.order.push(entry)
    const list = this.byMailbox.get(entry.key)
    if (list) list.push(entry)
    else this.byMailbox.set(entry.key, [entry])
    this.bytes += bytes
    this.expire(now)
  }

  /** The messages delivered to `mailbox` after event `lastId`, oldest first, still in the window. */
  after(mailbox: EntityId, lastId: number, now = Date.now()): { id: number; message: string }[] {
    this.expire(now)
    const list = this.byMailbox.get(keyOf(mailbox)) ?? []
    return list.filter((entry) => entry.id > lastId).map(({ id, message }) => ({ id, message }))
  }

  /** Bytes kept now. */
  get size(): number {
    return this.bytes
  }

  /** Drops what is past the window or over the byte bound, oldest first. */
  private expire(now: number): void {
    while (this.head < this.order.length) {
      const oldest = this.order[this.head]!
      if (now - oldest.at < this.options.windowMs && this.bytes <= this.options.maxBytes) break
      this.head++
      this.bytes -= oldest.bytes
      // Each mailbox's list is in the same order as the whole: its oldest is this one.
      const list = this.byMailbox.get(oldest.key)!
      list.shift()
      if (list.length === 0) this.byMailbox.delete(oldest.key)
    }
    // The array's dropped head is cut off now and then, not on every drop.
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order.splice(0, this.head)
      this.head = 0
    }
  }
}
