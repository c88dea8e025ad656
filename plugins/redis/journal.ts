/** The event log as a Redis stream (trimmed in the append script), and webhook deliveries, each change one Lua script. */
import type { EventLogStore, EventPage, LoggedEvent, WebhookDelivery, WebhookStore, WebhookSubscription } from '../../src/backend/journal'
import { compareEventIds } from '../../src/backend/journal'
import { script, storeError, type RedisConnection } from './connection'
import type { RedisEventBus } from './events'
import type { RedisKeys } from './keys'
import * as lua from './scripts/journal'

const SCRIPTS = {
  append: script(lua.APPEND_EVENT),
  createSubscription: script(lua.CREATE_SUBSCRIPTION),
  deleteSubscription: script(lua.DELETE_SUBSCRIPTION),
  addDelivery: script(lua.ADD_DELIVERY),
  claim: script(lua.CLAIM_DELIVERIES),
  complete: script(lua.COMPLETE_DELIVERY),
  fail: script(lua.FAIL_DELIVERY),
  redeliver: script(lua.REDELIVER),
  drop: script(lua.DROP_DEAD_LETTER),
}

/** The bus channel the append script publishes on. */
const LOG_CHANNEL = 'event-log'

async function command<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (error) {
    throw storeError(error)
  }
}

/** The retained log shared by every instance: ids are the stream's. */
export class RedisEventLog implements EventLogStore {
  constructor(
    private readonly connection: RedisConnection,
    private readonly keys: RedisKeys,
    private readonly bus: RedisEventBus,
    private readonly bounds: { maxEvents: number; maxBytes: number },
  ) {}

  async append(body: string): Promise<string> {
    const keys = [this.keys.eventLog(), this.keys.eventLogState(), this.keys.eventChannel(LOG_CHANNEL)]
    return String(await this.connection.run(SCRIPTS.append, keys, [body, this.bounds.maxEvents, this.bounds.maxBytes]))
  }

  async read(afterId: string, limit: number): Promise<EventPage> {
    const [entries, dropped] = await command(() =>
      Promise.all([this.connection.command.xrange(this.keys.eventLog(), `(${afterId}`, '+', 'COUNT', limit), this.connection.command.hget(this.keys.eventLogState(), 'dropped')]),
    )
    const events: LoggedEvent[] = entries.map(([id, fields]) => ({ id, body: fields[1] ?? '' }))
    return { events, missed: dropped !== null && compareEventIds(afterId, dropped) < 0 }
  }

  subscribe(handler: (event: LoggedEvent) => void): Promise<() => void> {
    return this.bus.subscribe(LOG_CHANNEL, (payload) => {
      const space = payload.indexOf(' ')
      handler({ id: payload.slice(0, space), body: payload.slice(space + 1) })
    })
  }
}

/** Webhook subscriptions and deliveries shared by every instance; a claim leases a delivery to one of them. */
export class RedisWebhooks implements WebhookStore {
  constructor(
    private readonly connection: RedisConnection,
    private readonly keys: RedisKeys,
  ) {}

  private async subscriptionsIn(index: string): Promise<WebhookSubscription[]> {
    const ids = await command(() => this.connection.command.zrange(index, '0', '-1'))
    if (ids.length === 0) return []
    const records = await command(() => this.connection.command.hmget(this.keys.webhookSubscriptions(), ...ids))
    return records.filter((record): record is string => record !== null).map((record) => JSON.parse(record) as WebhookSubscription)
  }

  async createSubscription(subscription: WebhookSubscription, maxPerTenant: number): Promise<boolean> {
    const keys = [this.keys.webhookSubscriptions(), this.keys.webhookTenantPrefix() + subscription.tenant, this.keys.sequence()]
    return (await this.connection.run(SCRIPTS.createSubscription, keys, [subscription.id, JSON.stringify(subscription), maxPerTenant])) === 1
  }

  listSubscriptions(tenant: string): Promise<WebhookSubscription[]> {
    return this.subscriptionsIn(this.keys.webhookTenantPrefix() + tenant)
  }

  async getSubscription(id: string): Promise<WebhookSubscription | null> {
    const record = await command(() => this.connection.command.hget(this.keys.webhookSubscriptions(), id))
    return record === null ? null : (JSON.parse(record) as WebhookSubscription)
  }

  async deleteSubscription(id: string): Promise<boolean> {
    const keys = [this.keys.webhookSubscriptions(), this.keys.webhookDeliveries(), this.keys.webhookDue()]
    return (await this.connection.run(SCRIPTS.deleteSubscription, keys, [id, this.keys.webhookTenantPrefix(), this.keys.webhookHeldPrefix(), this.keys.webhookDeadPrefix()])) === 1
  }

  async addDelivery(delivery: WebhookDelivery, maxPerSubscription: number): Promise<boolean> {
    const keys = [this.keys.webhookSubscriptions(), this.keys.webhookHeldPrefix() + delivery.subscriptionId, this.keys.webhookDeliveries(), this.keys.webhookDue()]
    return (await this.connection.run(SCRIPTS.addDelivery, keys, [delivery.subscriptionId, delivery.id, JSON.stringify(delivery), delivery.dueAt, maxPerSubscription])) === 1
  }

  async claimDeliveries(now: number, leaseUntil: number, limit: number): Promise<WebhookDelivery[]> {
    const records = (await this.connection.run(SCRIPTS.claim, [this.keys.webhookDue(), this.keys.webhookDeliveries()], [now, leaseUntil, limit])) as string[]
    return records.map((record) => JSON.parse(record) as WebhookDelivery)
  }

  async completeDelivery(id: string): Promise<void> {
    await this.connection.run(SCRIPTS.complete, [this.keys.webhookDeliveries(), this.keys.webhookDue()], [id, this.keys.webhookHeldPrefix()])
  }

  async failDelivery(id: string, attempts: number, lastError: string, dueAt: number | null, now: number): Promise<void> {
    await this.connection.run(SCRIPTS.fail, [this.keys.webhookDeliveries(), this.keys.webhookDue()], [id, attempts, lastError, dueAt ?? '', now, this.keys.webhookDeadPrefix()])
  }

  async deadLetters(subscriptionId: string): Promise<WebhookDelivery[]> {
    const ids = await command(() => this.connection.command.zrange(this.keys.webhookDeadPrefix() + subscriptionId, '0', '-1'))
    if (ids.length === 0) return []
    const records = await command(() => this.connection.command.hmget(this.keys.webhookDeliveries(), ...ids))
    return records.filter((record): record is string => record !== null).map((record) => JSON.parse(record) as WebhookDelivery)
  }

  async redeliver(subscriptionId: string, id: string, now: number): Promise<boolean> {
    const keys = [this.keys.webhookDeliveries(), this.keys.webhookDue(), this.keys.webhookDeadPrefix() + subscriptionId]
    return (await this.connection.run(SCRIPTS.redeliver, keys, [id, now])) === 1
  }

  async dropDeadLetter(subscriptionId: string, id: string): Promise<boolean> {
    const keys = [this.keys.webhookDeliveries(), this.keys.webhookDeadPrefix() + subscriptionId, this.keys.webhookHeldPrefix() + subscriptionId]
    return (await this.connection.run(SCRIPTS.drop, keys, [id])) === 1
  }
}
