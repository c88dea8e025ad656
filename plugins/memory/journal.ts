/** The event log as a ring in memory, and webhook subscriptions and deliveries in maps. */
import { LocalEventBus } from '../../src/backend/events'
import type { EventLogStore, EventPage, LoggedEvent, WebhookDelivery, WebhookStore, WebhookSubscription } from '../../src/backend/journal'

const LOG_CHANNEL = 'event-log'

/**
 * The retained log of one process; the oldest go first past either bound. Ids count up from the microseconds
 * since the epoch at start, so they keep growing across restarts, and a reader resuming from an id of an earlier
 * process is told it missed what that process held.
 */
export class MemoryEventLog implements EventLogStore {
  private readonly kept: { seq: number; body: string; bytes: number }[] = []
  private head = 0
  private bytes = 0
  private last = Date.now() * 1000
  /** The newest id dropped from the log: at first, every id of earlier processes. */
  private dropped = this.last
  private readonly bus = new LocalEventBus()

  constructor(private readonly bounds: { maxEvents: number; maxBytes: number }) {}

  async append(body: string): Promise<string> {
    const seq = ++this.last
    const bytes = Buffer.byteLength(body)
    this.kept.push({ seq, body, bytes })
    this.bytes += bytes
    while (this.kept.length - this.head > this.bounds.maxEvents || this.bytes > this.bounds.maxBytes) {
      const oldest = this.kept[this.head++]!
      this.bytes -= oldest.bytes
      this.dropped = oldest.seq
    }
    // The array's dropped head is cut off now and then, not on every drop.
    if (this.head > 1024 && this.head * 2 > this.kept.length) {
      this.kept.splice(0, this.head)
      this.head = 0
    }
    this.bus.emit(LOG_CHANNEL, `${seq} ${body}`)
    return String(seq)
  }

  async read(afterId: string, limit: number): Promise<EventPage> {
    const after = Number(afterId.split('-')[0])
    const events: LoggedEvent[] = []
    // Ids are consecutive, so the first one after `after` is found by position.
    for (let index = Math.max(this.head, this.head + after - (this.kept[this.head]?.seq ?? 0) + 1); index < this.kept.length && events.length < limit; index++) {
      const entry = this.kept[index]!
      events.push({ id: String(entry.seq), body: entry.body })
    }
    return { events, missed: after < this.dropped }
  }

  subscribe(handler: (event: LoggedEvent) => void): Promise<() => void> {
    return this.bus.subscribe(LOG_CHANNEL, (payload) => {
      const space = payload.indexOf(' ')
      handler({ id: payload.slice(0, space), body: payload.slice(space + 1) })
    })
  }
}

/** Webhook subscriptions and their deliveries, in this process. */
export class MemoryWebhooks implements WebhookStore {
  private readonly subscriptions = new Map<string, WebhookSubscription>()
  private readonly deliveries = new Map<string, WebhookDelivery>()

  async createSubscription(subscription: WebhookSubscription, maxPerTenant: number): Promise<boolean> {
    if ((await this.listSubscriptions(subscription.tenant)).length >= maxPerTenant) return false
    this.subscriptions.set(subscription.id, { ...subscription })
    return true
  }

  async listSubscriptions(tenant: string): Promise<WebhookSubscription[]> {
    return [...this.subscriptions.values()].filter((subscription) => subscription.tenant === tenant).map((subscription) => ({ ...subscription }))
  }

  async getSubscription(id: string): Promise<WebhookSubscription | null> {
    const subscription = this.subscriptions.get(id)
    return subscription ? { ...subscription } : null
  }

  async deleteSubscription(id: string): Promise<boolean> {
    if (!this.subscriptions.delete(id)) return false
    for (const delivery of [...this.deliveries.values()]) if (delivery.subscriptionId === id) this.deliveries.delete(delivery.id)
    return true
  }

  async addDelivery(delivery: WebhookDelivery, maxPerSubscription: number): Promise<boolean> {
    if (!this.subscriptions.has(delivery.subscriptionId)) return false
    let held = 0
    for (const other of this.deliveries.values()) if (other.subscriptionId === delivery.subscriptionId) held++
    if (held >= maxPerSubscription) return false
    this.deliveries.set(delivery.id, { ...delivery })
    return true
  }

  async claimDeliveries(now: number, leaseUntil: number, limit: number): Promise<WebhookDelivery[]> {
    const taken: WebhookDelivery[] = []
    for (const delivery of this.deliveries.values()) {
      if (taken.length >= limit) break
      if (delivery.deadAt !== null || delivery.dueAt > now) continue
      delivery.dueAt = leaseUntil
      taken.push({ ...delivery })
    }
    return taken
  }

  async completeDelivery(id: string): Promise<void> {
    this.deliveries.delete(id)
  }

  async failDelivery(id: string, attempts: number, lastError: string, dueAt: number | null, now: number): Promise<void> {
    const delivery = this.deliveries.get(id)
    if (!delivery) return
    Object.assign(delivery, { attempts, lastError, dueAt: dueAt ?? now, deadAt: dueAt === null ? now : null })
  }

  async deadLetters(subscriptionId: string): Promise<WebhookDelivery[]> {
    return [...this.deliveries.values()]
      .filter((delivery) => delivery.subscriptionId === subscriptionId && delivery.deadAt !== null)
      .sort((a, b) => a.deadAt! - b.deadAt!)
      .map((delivery) => ({ ...delivery }))
  }

  async redeliver(subscriptionId: string, id: string, now: number): Promise<boolean> {
    const delivery = this.deliveries.get(id)
    if (!delivery || delivery.subscriptionId !== subscriptionId || delivery.deadAt === null) return false
    Object.assign(delivery, { attempts: 0, dueAt: now, deadAt: null })
    return true
  }

  async dropDeadLetter(subscriptionId: string, id: string): Promise<boolean> {
    const delivery = this.deliveries.get(id)
    if (!delivery || delivery.subscriptionId !== subscriptionId || delivery.deadAt === null) return false
    return this.deliveries.delete(id)
  }
}
