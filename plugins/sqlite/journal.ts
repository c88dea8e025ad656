/** The event log and webhook deliveries in SQLite: both survive a restart; writes share the group commit of their turn. */
import type { Database, Statement } from 'bun:sqlite'
import { LocalEventBus } from '../../src/backend/events'
import type { EventLogStore, EventPage, LoggedEvent, WebhookDelivery, WebhookStore, WebhookSubscription } from '../../src/backend/journal'
import type { GroupCommit } from './commit'

type Row<T> = Statement<T, (string | number | null)[]>

const LOG_CHANNEL = 'event-log'

/** The retained log: one row per event, trimmed oldest first past either bound as each event is added. */
export class SqliteEventLog implements EventLogStore {
  private readonly bus = new LocalEventBus()
  private readonly statements: {
    insert: Row<{ id: number }>
    grow: Row<{ count: number; bytes: number }>
    dropOldest: Row<{ id: number; bytes: number }>
    shrink: Row<never>
    page: Row<{ id: number; body: string }>
    dropped: Row<{ dropped: number }>
  }

  constructor(
    db: Database,
    private readonly writes: GroupCommit,
    private readonly bounds: { maxEvents: number; maxBytes: number },
  ) {
    const prepare = <T>(sql: string) => db.prepare(sql) as Row<T>
    this.statements = {
      insert: prepare('INSERT INTO event_log (body, bytes) VALUES (?, ?) RETURNING id'),
      grow: prepare('UPDATE event_log_state SET count = count + 1, bytes = bytes + ? RETURNING count, bytes'),
      dropOldest: prepare('DELETE FROM event_log WHERE id IN (SELECT id FROM event_log ORDER BY id LIMIT ?) RETURNING id, bytes'),
      shrink: prepare('UPDATE event_log_state SET count = count - ?, bytes = bytes - ?, dropped = max(dropped, ?)'),
      page: prepare('SELECT id, body FROM event_log WHERE id > ? ORDER BY id LIMIT ?'),
      dropped: prepare('SELECT dropped FROM event_log_state'),
    }
  }

  async append(body: string): Promise<string> {
    const s = this.statements
    const id = await this.writes.run(() => {
      const bytes = Buffer.byteLength(body)
      const { id } = s.insert.get(body, bytes)!
      let { count, bytes: total } = s.grow.get(bytes)!
      while (count > this.bounds.maxEvents || total > this.bounds.maxBytes) {
        // Past the count, a hundredth more goes at once, so a full log is trimmed once in a while rather than on every event.
        const excess = count > this.bounds.maxEvents ? count - this.bounds.maxEvents + Math.floor(this.bounds.maxEvents / 100) : 1
        const dropped = s.dropOldest.all(excess)
        const freed = dropped.reduce((sum, row) => sum + row.bytes, 0)
        s.shrink.run(dropped.length, freed, Math.max(...dropped.map((row) => row.id)))
        total -= freed
        count -= dropped.length
      }
      return String(id)
    })
    // After the commit, so a subscriber that reads the log on hearing of it finds it there.
    this.bus.emit(LOG_CHANNEL, `${id} ${body}`)
    return id
  }

  async read(afterId: string, limit: number): Promise<EventPage> {
    const after = Number(afterId.split('-')[0])
    const events: LoggedEvent[] = this.statements.page.all(after, limit).map((row) => ({ id: String(row.id), body: row.body }))
    return { events, missed: after < this.statements.dropped.get()!.dropped }
  }

  subscribe(handler: (event: LoggedEvent) => void): Promise<() => void> {
    return this.bus.subscribe(LOG_CHANNEL, (payload) => {
      const space = payload.indexOf(' ')
      handler({ id: payload.slice(0, space), body: payload.slice(space + 1) })
    })
  }
}

/** Webhook subscriptions and deliveries in SQLite. */
export class SqliteWebhooks implements WebhookStore {
  private readonly statements: {
    countOfTenant: Row<{ count: number }>
    insertSubscription: Row<never>
    subscriptionsOfTenant: Row<{ record: string }>
    subscription: Row<{ record: string }>
    deleteSubscription: Row<never>
    deleteDeliveries: Row<never>
    countOfSubscription: Row<{ count: number }>
    insertDelivery: Row<never>
    due: Row<{ record: string }>
    saveDelivery: Row<never>
    delivery: Row<{ record: string }>
    deleteDelivery: Row<never>
    dead: Row<{ record: string }>
  }

  constructor(
    db: Database,
    private readonly writes: GroupCommit,
  ) {
    const prepare = <T>(sql: string) => db.prepare(sql) as Row<T>
    this.statements = {
      countOfTenant: prepare('SELECT COUNT(*) AS count FROM webhook_subscriptions WHERE tenant = ?'),
      insertSubscription: prepare('INSERT INTO webhook_subscriptions (id, tenant, record) VALUES (?, ?, ?)'),
      subscriptionsOfTenant: prepare('SELECT record FROM webhook_subscriptions WHERE tenant = ? ORDER BY seq'),
      subscription: prepare('SELECT record FROM webhook_subscriptions WHERE id = ?'),
      deleteSubscription: prepare('DELETE FROM webhook_subscriptions WHERE id = ?'),
      deleteDeliveries: prepare('DELETE FROM webhook_deliveries WHERE subscription_id = ?'),
      countOfSubscription: prepare('SELECT COUNT(*) AS count FROM webhook_deliveries WHERE subscription_id = ?'),
      insertDelivery: prepare('INSERT INTO webhook_deliveries (id, subscription_id, due_at, dead_at, record) VALUES (?, ?, ?, ?, ?)'),
      due: prepare('SELECT record FROM webhook_deliveries WHERE dead_at IS NULL AND due_at <= ? ORDER BY due_at LIMIT ?'),
      saveDelivery: prepare('UPDATE webhook_deliveries SET due_at = ?, dead_at = ?, record = ? WHERE id = ?'),
      delivery: prepare('SELECT record FROM webhook_deliveries WHERE id = ?'),
      deleteDelivery: prepare('DELETE FROM webhook_deliveries WHERE id = ?'),
      dead: prepare('SELECT record FROM webhook_deliveries WHERE subscription_id = ? AND dead_at IS NOT NULL ORDER BY dead_at'),
    }
  }

  private save(delivery: WebhookDelivery): void {
    this.statements.saveDelivery.run(delivery.dueAt, delivery.deadAt, JSON.stringify(delivery), delivery.id)
  }

  private deliveryOf(id: string): WebhookDelivery | null {
    const row = this.statements.delivery.get(id)
    return row ? (JSON.parse(row.record) as WebhookDelivery) : null
  }

  async createSubscription(subscription: WebhookSubscription, maxPerTenant: number): Promise<boolean> {
    return this.writes.run(() => {
      if (this.statements.countOfTenant.get(subscription.tenant)!.count >= maxPerTenant) return false
      this.statements.insertSubscription.run(subscription.id, subscription.tenant, JSON.stringify(subscription))
      return true
    })
  }

  async listSubscriptions(tenant: string): Promise<WebhookSubscription[]> {
    return this.statements.subscriptionsOfTenant.all(tenant).map((row) => JSON.parse(row.record) as WebhookSubscription)
  }

  async getSubscription(id: string): Promise<WebhookSubscription | null> {
    const row = this.statements.subscription.get(id)
    return row ? (JSON.parse(row.record) as WebhookSubscription) : null
  }

  async deleteSubscription(id: string): Promise<boolean> {
    return this.writes.run(() => {
      if (!this.statements.subscription.get(id)) return false
      this.statements.deleteSubscription.run(id)
      this.statements.deleteDeliveries.run(id)
      return true
    })
  }

  async addDelivery(delivery: WebhookDelivery, maxPerSubscription: number): Promise<boolean> {
    return this.writes.run(() => {
      if (!this.statements.subscription.get(delivery.subscriptionId)) return false
      if (this.statements.countOfSubscription.get(delivery.subscriptionId)!.count >= maxPerSubscription) return false
      this.statements.insertDelivery.run(delivery.id, delivery.subscriptionId, delivery.dueAt, delivery.deadAt, JSON.stringify(delivery))
      return true
    })
  }

  async claimDeliveries(now: number, leaseUntil: number, limit: number): Promise<WebhookDelivery[]> {
    return this.writes.run(() =>
      this.statements.due.all(now, limit).map((row) => {
        const delivery = { ...(JSON.parse(row.record) as WebhookDelivery), dueAt: leaseUntil }
        this.save(delivery)
        return delivery
      }),
    )
  }

  async completeDelivery(id: string): Promise<void> {
    await this.writes.run(() => this.statements.deleteDelivery.run(id))
  }

  async failDelivery(id: string, attempts: number, lastError: string, dueAt: number | null, now: number): Promise<void> {
    await this.writes.run(() => {
      const delivery = this.deliveryOf(id)
      if (delivery) this.save({ ...delivery, attempts, lastError, dueAt: dueAt ?? now, deadAt: dueAt === null ? now : null })
    })
  }

  async deadLetters(subscriptionId: string): Promise<WebhookDelivery[]> {
    return this.statements.dead.all(subscriptionId).map((row) => JSON.parse(row.record) as WebhookDelivery)
  }

  async redeliver(subscriptionId: string, id: string, now: number): Promise<boolean> {
    return this.writes.run(() => {
      const delivery = this.deliveryOf(id)
      if (!delivery || delivery.subscriptionId !== subscriptionId || delivery.deadAt === null) return false
      this.save({ ...delivery, attempts: 0, dueAt: now, deadAt: null })
      return true
    })
  }

  async dropDeadLetter(subscriptionId: string, id: string): Promise<boolean> {
    return this.writes.run(() => {
      const delivery = this.deliveryOf(id)
      if (!delivery || delivery.subscriptionId !== subscriptionId || delivery.deadAt === null) return false
      this.statements.deleteDelivery.run(id)
      return true
    })
  }
}
