/**
 * Mailboxes in SQLite. Each write is one transaction function over prepared
 * statements, committed with the other writes of the same turn of the event
 * loop (GroupCommit: one sync to disk for all of them); receivers wait
 * in-process (Waiters), woken by `put`, never by polling the file.
 *
 * Delivery is at-least-once across crashes: `take` marks a message as handed
 * out instead of deleting it, and the mark is settled (the row deleted) once
 * the redelivery window has passed. A process that dies inside that window
 * leaves the mark behind, and the next start returns such messages to the
 * head of their queues, in their original order.
 *
 * The counts (active mailboxes, queued messages) are read from the file once
 * at open and then kept in memory, moved by each committed change: the file
 * belongs to this one process (it holds the lock), so nobody else changes
 * them, and a scrape costs no query.
 *
 * Expiry is the memory and redis backends': a mailbox with no activity
 * (create, put, take, restore, send) for the idle expiry disappears with its
 * queue, and a gravestone is remembered for the gravestone expiry. An expired
 * mailbox reads as missing from the moment it expires (`expires_at`); an
 * unref'd timer deletes expired rows, a bounded batch at a time, so that the
 * file stops growing too.
 */
import type { Database, Statement } from 'bun:sqlite'
import type { Client, EntityId, Envelope, MailboxCounts, MailboxRetention, MailboxStats, MailboxStatus, MailboxStore, PendingRequest, TakeOptions } from '../../src/backend/mailboxes'
import { canAccess, isOwner, mailboxKey, mailboxStats, outgoingKey, utf8Bytes } from '../../src/backend/mailboxes'
import { Waiters, takeOrWait } from '../../src/backend/waiters'
import { ForbiddenError, MailboxTerminatedError, StoreFullError, UnknownMailboxError } from '../../src/errors'
import type { Logger } from '../../src/ops/logger'
import type { GroupCommit } from './commit'
import type { DatabaseSize } from './database'

interface MailboxRow {
  id: number
  owner: string
  terminated: number
  completed: number
  last_active: number | null
  head: number
  tail: number
}

/** What deleting expired mailboxes took out of the counts. */
interface Expired {
  mailboxes: number
  queued: number
}

/** Expired mailboxes one sweep deletes at most, so a sweep after a long pause never holds the file for long. */
const SWEEP_BATCH = 500
/** Longest pause between two sweeps, so the file's expired rows go within a minute whatever the retention. */
const MAX_SWEEP_INTERVAL_MS = 60_000

/** A message handed to a receiver and not yet settled. */
interface Delivery {
  id: number
  takenAt: number
}

type Row<T> = Statement<T, (string | number | null)[]>

export class SqliteMailboxes implements MailboxStore {
  readonly waiters = new Waiters()
  /** Deliveries in the order they were handed out (so also by `takenAt`). */
  private deliveries: Delivery[] = []
  private settleTimer: ReturnType<typeof setTimeout> | null = null
  private sweepTimer: ReturnType<typeof setTimeout> | null = null
  private closed = false
  private readonly sweepIntervalMs: number
  private readonly current: MailboxCounts

  private readonly statements: {
    mailbox: Row<MailboxRow>
    staleMailbox: Row<{ id: number; terminated: number }>
    expiredMailboxes: Row<{ id: number; terminated: number }>
    deleteMailbox: Row<never>
    deleteSharesOf: Row<never>
    deleteExpiredOutgoing: Row<never>
    shares: Row<{ group_id: string }>
    insertMailbox: Row<never>
    insertClass: Row<never>
    terminate: Row<never>
    deleteClasses: Row<never>
    deleteMessages: Row<never>
    pending: Row<{ request: string }>
    deletePendingOf: Row<never>
    upsertPending: Row<never>
    deletePending: Row<never>
    countCompleted: Row<never>
    countOutgoing: Row<never>
    outgoing: Row<{ count: number }>
    insertMessage: Row<never>
    advanceTail: Row<never>
    nextQueued: Row<{ id: number; raw: string }>
    markTaken: Row<never>
    setLastActive: Row<never>
    findDelivery: Row<{ id: number }>
    requeueAtHead: Row<never>
    insertAtHead: Row<never>
    advanceHead: Row<never>
    discover: Row<{ id: number; uid: string; owner: string }>
    countQueued: Row<{ count: number }>
    countPending: Row<{ count: number }>
    counts: Row<MailboxCounts>
    insertShare: Row<never>
    deleteShare: Row<never>
    settle: Row<never>
  }

  private readonly createTx: (client: Client, id: EntityId, mro: readonly string[] | null) => { created: boolean; expired: Expired }
  private readonly terminateTx: (client: Client, id: EntityId) => { pending: PendingRequest[]; dropped: number } | null
  private readonly putTx: (client: Client | null, message: Envelope) => void
  private readonly takeTx: (client: Client, id: EntityId) => string | null
  private readonly restoreTx: (id: EntityId, raw: string) => boolean
  private readonly settleTx: (deliveries: Delivery[]) => void
  private readonly statsTx: (client: Client, id: EntityId) => MailboxStats
  private readonly shareTx: (client: Client, id: EntityId, group: string) => void
  private readonly unshareTx: (client: Client, id: EntityId, group: string) => void
  private readonly sweepTx: (now: number) => Expired & { more: boolean }

  constructor(
    db: Database,
    private readonly writes: GroupCommit,
    /** How long a handed-out message stays redeliverable after a crash, in milliseconds. */
    private readonly redeliveryWindowMs: number,
    private readonly logger: Logger,
    private readonly expiry: MailboxRetention,
    /** Client sends are refused once the file holds max_db_mb. */
    private readonly size: DatabaseSize,
  ) {
    const prepare = <T>(sql: string) => db.prepare(sql) as Row<T>
    this.statements = {
      mailbox: prepare('SELECT id, owner, terminated, completed, last_active, head, tail FROM mailboxes WHERE role = ? AND uid = ? AND expires_at > ?'),
      staleMailbox: prepare('SELECT id, terminated FROM mailboxes WHERE role = ? AND uid = ? AND expires_at <= ?'),
      expiredMailboxes: prepare('SELECT id, terminated FROM mailboxes WHERE expires_at <= ? ORDER BY expires_at LIMIT ?'),
      deleteMailbox: prepare('DELETE FROM mailboxes WHERE id = ?'),
      deleteSharesOf: prepare('DELETE FROM mailbox_shares WHERE mailbox_id = ?'),
      deleteExpiredOutgoing: prepare('DELETE FROM outgoing_requests WHERE expires_at <= ?'),
      shares: prepare('SELECT group_id FROM mailbox_shares WHERE mailbox_id = ? ORDER BY rowid'),
      insertMailbox: prepare('INSERT INTO mailboxes (role, uid, owner, expires_at) VALUES (?, ?, ?, ?)'),
      insertClass: prepare('INSERT OR IGNORE INTO mailbox_classes (class, mailbox_id, position) VALUES (?, ?, ?)'),
      terminate: prepare('UPDATE mailboxes SET terminated = 1, expires_at = ? WHERE id = ?'),
      deleteClasses: prepare('DELETE FROM mailbox_classes WHERE mailbox_id = ?'),
      deleteMessages: prepare('DELETE FROM messages WHERE mailbox_id = ?'),
      pending: prepare('SELECT request FROM pending_requests WHERE mailbox_id = ? ORDER BY rowid'),
      deletePendingOf: prepare('DELETE FROM pending_requests WHERE mailbox_id = ?'),
      upsertPending: prepare('INSERT INTO pending_requests (mailbox_id, tag, request) VALUES (?, ?, ?) ON CONFLICT (mailbox_id, tag) DO UPDATE SET request = excluded.request'),
      deletePending: prepare('DELETE FROM pending_requests WHERE mailbox_id = ? AND tag = ?'),
      countCompleted: prepare('UPDATE mailboxes SET completed = completed + 1 WHERE id = ?'),
      // A count whose time is up starts again from one. mailbox_key holds outgoingKey() (the sending client and the
      // mailbox key); counts a file holds under a bare mailbox key are no longer read, and expire.
      countOutgoing: prepare(
        'INSERT INTO outgoing_requests (mailbox_key, count, expires_at) VALUES (?, 1, ?) ON CONFLICT (mailbox_key) DO UPDATE SET ' +
          'count = CASE WHEN outgoing_requests.expires_at <= ? THEN 1 ELSE outgoing_requests.count + 1 END, expires_at = excluded.expires_at',
      ),
      outgoing: prepare('SELECT count FROM outgoing_requests WHERE mailbox_key = ? AND expires_at > ?'),
      insertMessage: prepare('INSERT INTO messages (mailbox_id, position, raw) VALUES (?, ?, ?)'),
      advanceTail: prepare('UPDATE mailboxes SET tail = tail + 1, expires_at = ? WHERE id = ?'),
      nextQueued: prepare('SELECT id, raw FROM messages WHERE mailbox_id = ? AND taken_at IS NULL ORDER BY position LIMIT 1'),
      markTaken: prepare('UPDATE messages SET taken_at = ? WHERE id = ?'),
      // Activity: a gravestone keeps its own expiry.
      setLastActive: prepare('UPDATE mailboxes SET last_active = ?, expires_at = CASE terminated WHEN 0 THEN ? ELSE expires_at END WHERE id = ?'),
      findDelivery: prepare('SELECT id FROM messages WHERE mailbox_id = ? AND taken_at IS NOT NULL AND raw = ? ORDER BY position DESC LIMIT 1'),
      requeueAtHead: prepare('UPDATE messages SET taken_at = NULL, position = ? WHERE id = ?'),
      insertAtHead: prepare('INSERT INTO messages (mailbox_id, position, raw) VALUES (?, ?, ?)'),
      advanceHead: prepare('UPDATE mailboxes SET head = head - 1, expires_at = ? WHERE id = ?'),
      discover: prepare(
        'SELECT m.id AS id, m.uid AS uid, m.owner AS owner FROM mailbox_classes c JOIN mailboxes m ON m.id = c.mailbox_id ' +
          'WHERE c.class = ? AND (c.position = 0 OR ?) AND m.expires_at > ? ORDER BY c.mailbox_id',
      ),
      countQueued: prepare('SELECT COUNT(*) AS count FROM messages WHERE mailbox_id = ? AND taken_at IS NULL'),
      countPending: prepare('SELECT COUNT(*) AS count FROM pending_requests WHERE mailbox_id = ?'),
      // Handed-out messages (taken_at set) are no longer queued.
      counts: prepare('SELECT (SELECT COUNT(*) FROM mailboxes WHERE terminated = 0) AS mailboxes, (SELECT COUNT(*) FROM messages WHERE taken_at IS NULL) AS queued'),
      insertShare: prepare('INSERT OR IGNORE INTO mailbox_shares (mailbox_id, group_id) VALUES (?, ?)'),
      deleteShare: prepare('DELETE FROM mailbox_shares WHERE mailbox_id = ? AND group_id = ?'),
      settle: prepare('DELETE FROM messages WHERE id = ? AND taken_at = ?'),
    }

    this.createTx = db.transaction((client: Client, id: EntityId, mro: readonly string[] | null) => {
      const expired: Expired = { mailboxes: 0, queued: 0 }
      if (this.accessible(client, id)) return { created: false, expired }
      const now = Date.now()
      // An expired mailbox of the same id that no sweep has deleted yet goes first: the new one starts empty.
      const stale = this.statements.staleMailbox.get(id.role, id.uid, now)
      if (stale) this.purge(stale, expired)
      const { lastInsertRowid } = this.statements.insertMailbox.run(id.role, id.uid, client.id, now + this.expiry.idleMs)
      if (id.role === 'agent' && mro) mro.forEach((name, position) => this.statements.insertClass.run(name, Number(lastInsertRowid), position))
      return { created: true, expired }
    })

    this.sweepTx = db.transaction((now: number) => {
      const expired: Expired = { mailboxes: 0, queued: 0 }
      const due = this.statements.expiredMailboxes.all(now, SWEEP_BATCH)
      for (const box of due) this.purge(box, expired)
      this.statements.deleteExpiredOutgoing.run(now)
      return { ...expired, more: due.length === SWEEP_BATCH }
    })

    this.terminateTx = db.transaction((client: Client, id: EntityId) => {
      const box = this.row(id)
      if (!box) return null
      if (!isOwner(client, box.owner)) throw new ForbiddenError()
      if (box.terminated) return null
      const pending = this.statements.pending.all(box.id).map((row) => JSON.parse(row.request) as PendingRequest)
      const dropped = this.statements.countQueued.get(box.id)!.count
      this.statements.terminate.run(Date.now() + this.expiry.gravestoneMs, box.id)
      this.statements.deleteMessages.run(box.id)
      this.statements.deleteClasses.run(box.id)
      this.statements.deletePendingOf.run(box.id)
      return { pending, dropped }
    })

    this.putTx = db.transaction((client: Client | null, message: Envelope) => {
      const box = this.row(message.dest)
      const source = client ? this.row(message.src) : undefined
      if (client) {
        if (box && !this.mayAccess(client, box)) throw new ForbiddenError()
        if (source && !isOwner(client, source.owner)) throw new ForbiddenError()
      }
      if (!box) throw new UnknownMailboxError()
      if (box.terminated) throw new MailboxTerminatedError()
      if (!client && message.destOwner !== undefined && box.owner !== message.destOwner) throw new UnknownMailboxError()
      // What Switchboard itself sends (answers to the pending requests of a terminated mailbox) is always stored.
      if (client && this.size.wouldPass(utf8Bytes(message.raw))) {
        throw new StoreFullError(`The SQLite database holds max_db_mb (${this.size.maxMb} MiB) already: the message was not stored. Take messages, or raise max_db_mb`)
      }
      const now = Date.now()
      const until = now + this.expiry.idleMs
      // A client's send is activity of the mailbox it comes from.
      if (source) this.statements.setLastActive.run(now, until, source.id)
      if (message.kind === 'request') {
        const request: PendingRequest = { src: message.src, dest: message.dest, tag: message.tag, label: message.label, srcOwner: source ? source.owner : null }
        this.statements.upsertPending.run(box.id, message.tag, JSON.stringify(request))
        this.statements.countOutgoing.run(outgoingKey(message.src, client?.id ?? ''), until, now)
      } else {
        const answered = source ?? this.row(message.src)
        if (answered && this.statements.deletePending.run(answered.id, message.tag).changes > 0) this.statements.countCompleted.run(answered.id)
      }
      this.statements.insertMessage.run(box.id, box.tail, message.raw)
      this.statements.advanceTail.run(until, box.id)
    })

    this.takeTx = db.transaction((client: Client, id: EntityId) => {
      const box = this.accessible(client, id)
      if (!box) throw new UnknownMailboxError()
      if (box.terminated) throw new MailboxTerminatedError()
      const now = Date.now()
      this.statements.setLastActive.run(now, now + this.expiry.idleMs, box.id)
      const next = this.statements.nextQueued.get(box.id)
      if (!next) return null
      this.statements.markTaken.run(now, next.id)
      this.deliveries.push({ id: next.id, takenAt: now })
      return next.raw
    })

    this.restoreTx = db.transaction((id: EntityId, raw: string) => {
      const box = this.row(id)
      if (!box || box.terminated) return false
      // The message is usually still stored as handed out: put that row back rather than store a second copy.
      const delivered = this.statements.findDelivery.get(box.id, raw)
      if (delivered) this.statements.requeueAtHead.run(box.head, delivered.id)
      else this.statements.insertAtHead.run(box.id, box.head, raw)
      this.statements.advanceHead.run(Date.now() + this.expiry.idleMs, box.id)
      return true
    })

    this.settleTx = db.transaction((deliveries: Delivery[]) => {
      for (const delivery of deliveries) this.statements.settle.run(delivery.id, delivery.takenAt)
    })

    this.statsTx = db.transaction((client: Client, id: EntityId) => {
      const box = this.accessible(client, id)
      // The owner's sends; from a key with no mailbox, only the caller's own.
      const outgoing = this.statements.outgoing.get(outgoingKey(id, box ? box.owner : client.id), Date.now())?.count ?? 0
      if (!box) return mailboxStats(0, 0, 0, outgoing)
      const pending = this.statements.countPending.get(box.id)!.count
      const queued = this.statements.countQueued.get(box.id)!.count
      return mailboxStats(pending, queued, box.completed, outgoing)
    })

    this.shareTx = db.transaction((client: Client, id: EntityId, group: string) => {
      const box = this.owned(client, id)
      if (!client.groups.includes(group)) throw new ForbiddenError()
      this.statements.insertShare.run(box.id, group)
    })

    this.unshareTx = db.transaction((client: Client, id: EntityId, group: string) => {
      this.statements.deleteShare.run(this.owned(client, id).id, group)
    })

    // Messages handed out by a process that died are delivered again, at the head of their queues.
    const returned = db.run('UPDATE messages SET taken_at = NULL WHERE taken_at IS NOT NULL').changes
    if (returned > 0) logger.info('returned unsettled deliveries to their mailboxes', { count: returned })
    // Rows written before the file had expiry get it now, counted from this start.
    const now = Date.now()
    db.run('UPDATE mailboxes SET expires_at = ? WHERE expires_at IS NULL AND terminated = 0', [now + expiry.idleMs])
    db.run('UPDATE mailboxes SET expires_at = ? WHERE expires_at IS NULL AND terminated = 1', [now + expiry.gravestoneMs])
    db.run('UPDATE outgoing_requests SET expires_at = ? WHERE expires_at IS NULL', [now + expiry.idleMs])
    // What expired while no process had the file goes before the counts are read.
    while (this.sweepTx(now).more);
    this.current = this.statements.counts.get()!
    this.sweepIntervalMs = Math.min(MAX_SWEEP_INTERVAL_MS, Math.max(10, Math.min(expiry.idleMs, expiry.gravestoneMs) / 4))
    this.scheduleSweep(this.sweepIntervalMs)
  }

  /** Deletes a mailbox with everything it holds, adding what leaves the counts to `expired`. */
  private purge(box: { id: number; terminated: number }, expired: Expired): void {
    if (box.terminated === 0) {
      expired.mailboxes++
      expired.queued += this.statements.countQueued.get(box.id)!.count
    }
    this.statements.deleteMessages.run(box.id)
    this.statements.deleteClasses.run(box.id)
    this.statements.deletePendingOf.run(box.id)
    this.statements.deleteSharesOf.run(box.id)
    this.statements.deleteMailbox.run(box.id)
  }

  /** Takes what expired mailboxes held out of the counts, once their deletion is committed. */
  private forget(expired: Expired): void {
    this.current.mailboxes -= expired.mailboxes
    this.current.queued -= expired.queued
  }

  /** Deletes expired rows in `delayMs`, then again every interval (at once while a batch was full). */
  private scheduleSweep(delayMs: number): void {
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = null
      this.writes
        .run(() => this.sweepTx(Date.now()))
        .then(
          (swept) => {
            this.forget(swept)
            if (!this.closed) this.scheduleSweep(swept.more ? 0 : this.sweepIntervalMs)
          },
          (error) => {
            this.logger.error('could not delete expired mailboxes', { error: String(error) })
            if (!this.closed) this.scheduleSweep(this.sweepIntervalMs)
          },
        )
    }, delayMs)
    this.sweepTimer.unref()
  }

  private row(id: EntityId): MailboxRow | null {
    return this.statements.mailbox.get(id.role, id.uid, Date.now())
  }

  private mayAccess(client: Client, box: MailboxRow): boolean {
    if (box.owner === client.id) return true
    return canAccess(client, box.owner, this.sharesOf(box.id))
  }

  private sharesOf(mailboxId: number): string[] {
    return this.statements.shares.all(mailboxId).map((row) => row.group_id)
  }

  /** The mailbox, or null when missing; ForbiddenError when the client may not use it. */
  private accessible(client: Client, id: EntityId): MailboxRow | null {
    const box = this.row(id)
    if (box && !this.mayAccess(client, box)) throw new ForbiddenError()
    return box
  }

  /** The mailbox, when it exists, is active, and the client owns it. */
  private owned(client: Client, id: EntityId): MailboxRow {
    const box = this.row(id)
    if (!box) throw new UnknownMailboxError()
    if (box.terminated) throw new MailboxTerminatedError()
    if (!isOwner(client, box.owner)) throw new ForbiddenError()
    return box
  }

  async create(client: Client, id: EntityId, mro: readonly string[] | null): Promise<void> {
    const { created, expired } = await this.writes.run(() => this.createTx(client, id, mro))
    this.forget(expired)
    if (created) this.current.mailboxes++
  }

  async status(client: Client, id: EntityId): Promise<MailboxStatus> {
    const box = this.accessible(client, id)
    if (!box) return 'MISSING'
    return box.terminated ? 'TERMINATED' : 'ACTIVE'
  }

  async terminate(client: Client, id: EntityId): Promise<PendingRequest[]> {
    const terminated = await this.writes.run(() => this.terminateTx(client, id))
    this.waiters.fail(mailboxKey(id), () => new MailboxTerminatedError())
    if (!terminated) return []
    this.current.mailboxes--
    this.current.queued -= terminated.dropped
    return terminated.pending
  }

  async put(client: Client | null, message: Envelope): Promise<void> {
    await this.writes.run(() => this.putTx(client, message))
    this.current.queued++
    this.waiters.notify(mailboxKey(message.dest))
  }

  async take(client: Client, id: EntityId, options: TakeOptions): Promise<string | null> {
    const message = await takeOrWait(this.waiters, mailboxKey(id), options, async () => {
      const taken = await this.writes.run(() => this.takeTx(client, id))
      if (taken !== null) this.current.queued--
      return taken
    })
    if (message !== null) this.scheduleSettle()
    return message
  }

  async restore(id: EntityId, raw: string): Promise<void> {
    if (!(await this.writes.run(() => this.restoreTx(id, raw)))) return
    this.current.queued++
    this.waiters.notify(mailboxKey(id))
  }

  async discover(client: Client, agent: string, allowSubclasses: boolean): Promise<string[]> {
    const found: string[] = []
    for (const row of this.statements.discover.all(agent, allowSubclasses ? 1 : 0, Date.now())) {
      if (row.owner === client.id || canAccess(client, row.owner, this.sharesOf(row.id))) found.push(row.uid)
    }
    return found
  }

  async heartbeat(client: Client, id: EntityId): Promise<number | null> {
    const box = this.accessible(client, id)
    if (!box) throw new UnknownMailboxError()
    return box.last_active === null ? null : (Date.now() - box.last_active) / 1000
  }

  async stats(client: Client, id: EntityId): Promise<MailboxStats> {
    return this.statsTx(client, id)
  }

  async share(client: Client, id: EntityId, group: string): Promise<void> {
    await this.writes.run(() => this.shareTx(client, id, group))
  }

  async unshare(client: Client, id: EntityId, group: string): Promise<void> {
    await this.writes.run(() => this.unshareTx(client, id, group))
  }

  async shares(client: Client, id: EntityId): Promise<string[]> {
    return this.sharesOf(this.owned(client, id).id)
  }

  async counts(): Promise<MailboxCounts> {
    return { ...this.current }
  }

  /** Deletes the deliveries handed out at or before `cutoff` (epoch ms): they can no longer come back. */
  private settle(cutoff: number): void {
    let count = 0
    while (count < this.deliveries.length && this.deliveries[count]!.takenAt <= cutoff) count++
    if (count === 0) return
    const settled = this.deliveries.slice(0, count)
    this.deliveries = this.deliveries.slice(count)
    try {
      this.settleTx(settled)
    } catch (error) {
      // Left marked, they are delivered again after a restart: a duplicate, never a loss.
      this.logger.error('could not settle delivered messages', { error: String(error), count })
    }
  }

  private scheduleSettle(): void {
    if (this.settleTimer !== null || this.deliveries.length === 0) return
    const due = this.deliveries[0]!.takenAt + this.redeliveryWindowMs - Date.now()
    this.settleTimer = setTimeout(() => {
      this.settleTimer = null
      this.settle(Date.now() - this.redeliveryWindowMs)
      this.scheduleSettle()
    }, Math.max(0, due))
    this.settleTimer.unref()
  }

  /** Settles every delivery (they were handed out before a clean stop) and fails every waiter. */
  close(): void {
    this.closed = true
    if (this.sweepTimer !== null) clearTimeout(this.sweepTimer)
    this.sweepTimer = null
    if (this.settleTimer !== null) clearTimeout(this.settleTimer)
    this.settleTimer = null
    this.settle(Number.POSITIVE_INFINITY)
    this.waiters.failAll(() => new MailboxTerminatedError())
  }
}
