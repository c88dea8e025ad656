/**
 * Webhooks: subscriptions a tenant creates through the API, and the
 * deliveries of its events to them. The instance that appends an event
 * queues one delivery per subscription that wants it; every instance takes
 * due deliveries from the store under a lease, so each is made by one
 * instance at a time, and one whose instance died is taken again when its
 * lease ends (at-least-once: the event id is the receiver's dedupe key).
 * Each POST is signed: HMAC-SHA256 of `<timestamp>.<body>` with the
 * subscription's secret. A failure is retried with exponential backoff;
 * after `attempts` failures the delivery is dead-lettered, listed by the API
 * until it is retried or dropped.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import type { EventBus } from '../../backend/events'
import type { WebhookDelivery, WebhookStore, WebhookSubscription } from '../../backend/journal'
import { AppError, ConflictError, ForbiddenError, NotFoundError } from '../../errors'
import type { Logger } from '../../ops/logger'
import { destinationOf } from '../agents/proxy'
import type { AgentUrlGuard } from '../agents/ssrf'
import { EVENT_TYPES, parseTypes, viewerKey, type Viewer } from './model'
import type { EventService, HeardEvent } from './service'

export interface WebhookOptions {
  /** Subscriptions one tenant may hold (0: webhooks off). */
  perTenant: number
  /** Deliveries one subscription may hold, pending and dead. */
  backlog: number
  /** Attempts before a delivery is dead-lettered. */
  attempts: number
  /** Wait before the second attempt; doubled for each one after. */
  backoffMs: number
  /** Longest one attempt may take. */
  timeoutMs: number
  /** How often this instance looks for due deliveries (it also looks at once when it queues one). */
  pollMs?: number
  /** Told how each attempt ended, and of each delivery dropped (metrics). */
  onOutcome?: (outcome: DeliveryOutcome) => void
}

export type DeliveryOutcome = 'delivered' | 'retried' | 'dead_lettered' | 'dropped'

/** Bytes of a receiver's answer read at most (for the error a dead letter shows); the rest is not read. */
export const RESPONSE_READ_BYTES = 1024
/** Deliveries one instance makes at once. */
const CONCURRENCY = 32
/** Longest wait between two attempts. */
const MAX_BACKOFF_MS = 3_600_000
/** How long a tenant's subscriptions are reused to match events without asking the store (a change on any instance clears them at once). */
const SUBSCRIPTIONS_CACHE_MS = 5000
/** Tenants whose subscriptions are kept at most; past it the cache starts over. */
const SUBSCRIPTIONS_CACHED = 10_000
/** Bus channel telling every instance whose subscriptions changed. */
const CHANGED_CHANNEL = 'webhooks:changed'

/** The headers of a signed delivery: `Switchboard-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`. */
export function signatureHeaders(secret: string, body: string, timestamp: number): Record<string, string> {
  const signature = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')
  return { 'switchboard-timestamp': String(timestamp), 'switchboard-signature': `v1=${signature}` }
}

const newSecret = () => `whsec_${randomBytes(24).toString('base64url')}`

export class WebhookService {
  private readonly timer: ReturnType<typeof setInterval>
  private pumping: Promise<void> | null = null
  private again = false
  private stopped = false
  private readonly inFlight = new Set<AbortController>()
  /** Each tenant's subscriptions, to match events without a store round trip per event and tenant. */
  private readonly cached = new Map<string, { until: number; subscriptions: Promise<WebhookSubscription[]> }>()
  private readonly changes: Promise<() => void>

  constructor(
    private readonly store: WebhookStore,
    events: EventService,
    private readonly bus: EventBus,
    private readonly urls: AgentUrlGuard,
    private readonly options: WebhookOptions,
    private readonly logger: Logger,
  ) {
    this.changes = bus.subscribe(CHANGED_CHANNEL, (tenant) => this.cached.delete(tenant))
    this.changes.catch((error) => logger.error('webhooks: cannot subscribe to the event bus', { error: String(error) }))
    events.onAppended((event) => this.enqueue(event))
    this.timer = setInterval(() => this.pump(), options.pollMs ?? 1000)
    this.timer.unref?.()
  }

  /** Creates a subscription for the viewer; the URL must pass the agent URL guard. Answers it with its secret. */
  async create(viewer: Viewer, input: { url: string; types?: string[]; secret?: string }): Promise<WebhookSubscription> {
    if (this.options.perTenant === 0) throw new ForbiddenError('webhooks are off (webhooks_per_tenant is 0)')
    await this.urls.target(input.url, 'webhook url')
    const types = parseTypes(input.types?.join(','))
    const subscription: WebhookSubscription = {
      id: randomUUID(),
      tenant: viewerKey(viewer),
      url: input.url,
      types: types === null ? [] : EVENT_TYPES.filter((type) => types.has(type)),
      secret: input.secret ?? newSecret(),
      createdAt: Date.now(),
    }
    if (!(await this.store.createSubscription(subscription, this.options.perTenant))) {
      throw new ConflictError(`this tenant already has ${this.options.perTenant} webhook subscriptions (webhooks_per_tenant); delete one first`)
    }
    await this.changed(subscription.tenant)
    return subscription
  }

  /** The viewer's subscriptions, oldest first. */
  list(viewer: Viewer): Promise<WebhookSubscription[]> {
    return this.store.listSubscriptions(viewerKey(viewer))
  }

  /** One of the viewer's subscriptions, or 404. */
  async get(viewer: Viewer, id: string): Promise<WebhookSubscription> {
    const subscription = await this.store.getSubscription(id)
    if (subscription === null || subscription.tenant !== viewerKey(viewer)) throw new NotFoundError(`webhook ${id} not found`)
    return subscription
  }

  /** Deletes one of the viewer's subscriptions with its deliveries. */
  async delete(viewer: Viewer, id: string): Promise<void> {
    const subscription = await this.get(viewer, id)
    await this.store.deleteSubscription(id)
    await this.changed(subscription.tenant)
  }

  /** Clears a tenant's cached subscriptions here and on every instance. */
  private async changed(tenant: string): Promise<void> {
    this.cached.delete(tenant)
    await this.bus.publish(CHANGED_CHANNEL, tenant)
  }

  /** A tenant's subscriptions, from the cache while it is fresh. */
  private subscriptionsOf(tenant: string): Promise<WebhookSubscription[]> {
    const now = Date.now()
    const hit = this.cached.get(tenant)
    if (hit !== undefined && hit.until > now) return hit.subscriptions
    if (this.cached.size >= SUBSCRIPTIONS_CACHED) this.cached.clear()
    const subscriptions = this.store.listSubscriptions(tenant)
    this.cached.set(tenant, { until: now + SUBSCRIPTIONS_CACHE_MS, subscriptions })
    // A failed read is not kept.
    subscriptions.catch(() => {
      if (this.cached.get(tenant)?.subscriptions === subscriptions) this.cached.delete(tenant)
    })
    return subscriptions
  }

  /** The dead letters of one of the viewer's subscriptions, oldest first. */
  async deadLetters(viewer: Viewer, id: string): Promise<WebhookDelivery[]> {
    await this.get(viewer, id)
    return this.store.deadLetters(id)
  }

  /** Queues a dead letter again (its attempts start over). */
  async redeliver(viewer: Viewer, id: string, deliveryId: string): Promise<void> {
    await this.get(viewer, id)
    if (!(await this.store.redeliver(id, deliveryId, Date.now()))) throw new NotFoundError(`dead letter ${deliveryId} not found`)
    this.pump()
  }

  /** Forgets a dead letter of one of the viewer's subscriptions. */
  async drop(viewer: Viewer, id: string, deliveryId: string): Promise<void> {
    await this.get(viewer, id)
    if (!(await this.store.dropDeadLetter(id, deliveryId))) throw new NotFoundError(`dead letter ${deliveryId} not found`)
  }

  /** Stops taking deliveries and cuts the attempts in flight (their leases bring them back). */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    ;(await this.changes.catch(() => null))?.()
    for (const attempt of this.inFlight) attempt.abort()
    await this.pumping
  }

  /** Queues a delivery of `event` for each subscription of its audience that wants its type. */
  private async enqueue(event: HeardEvent): Promise<void> {
    if (this.options.perTenant === 0) return
    const subscriptions = (await Promise.all(event.audience.map((tenant) => this.subscriptionsOf(tenant)))).flat()
    let queued = false
    for (const subscription of subscriptions) {
      if (subscription.types.length > 0 && !subscription.types.includes(event.type)) continue
      const delivery: WebhookDelivery = { id: randomUUID(), subscriptionId: subscription.id, eventId: event.id, body: event.json, attempts: 0, dueAt: Date.now(), lastError: null, deadAt: null }
      if (await this.store.addDelivery(delivery, this.options.backlog)) queued = true
      else this.dropped(subscription, event)
    }
    if (queued) this.pump()
  }

  private dropped(subscription: WebhookSubscription, event: HeardEvent): void {
    this.options.onOutcome?.('dropped')
    this.logger.warn('webhook delivery dropped: the subscription holds webhook_backlog deliveries', { webhook: subscription.id, event: event.id })
  }

  /** Makes the due deliveries, CONCURRENCY at a time, until none is due; one pass at a time on this instance. */
  private pump(): void {
    if (this.stopped) return
    if (this.pumping) {
      this.again = true
      return
    }
    this.pumping = (async () => {
      try {
        do {
          this.again = false
          for (;;) {
            const now = Date.now()
            const taken = await this.store.claimDeliveries(now, now + this.options.timeoutMs + 5000, CONCURRENCY)
            await Promise.all(taken.map((delivery) => this.attempt(delivery)))
            if (taken.length < CONCURRENCY || this.stopped) break
          }
        } while (this.again && !this.stopped)
      } catch (error) {
        this.logger.error('webhooks: could not take deliveries', { error: String(error) })
      } finally {
        this.pumping = null
      }
    })()
  }

  /** One attempt at a delivery: done, due again after its backoff, or dead-lettered. */
  private async attempt(delivery: WebhookDelivery): Promise<void> {
    const subscription = await this.store.getSubscription(delivery.subscriptionId)
    if (subscription === null) return // deleted meanwhile, with its deliveries
    const failure = await this.post(subscription, delivery)
    if (this.stopped && failure !== null) return // cut by shutdown: the lease brings it back
    if (failure === null) {
      this.options.onOutcome?.('delivered')
      return this.store.completeDelivery(delivery.id)
    }
    const attempts = delivery.attempts + 1
    const now = Date.now()
    const dueAt = attempts >= this.options.attempts ? null : now + Math.min(MAX_BACKOFF_MS, this.options.backoffMs * 2 ** (attempts - 1))
    this.options.onOutcome?.(dueAt === null ? 'dead_lettered' : 'retried')
    if (dueAt === null) this.logger.warn('webhook delivery dead-lettered', { webhook: subscription.id, event: delivery.eventId, attempts, error: failure })
    await this.store.failDelivery(delivery.id, attempts, failure, dueAt, now)
    // Tried again here when due, without waiting for the next poll.
    if (dueAt !== null && !this.stopped) setTimeout(() => this.pump(), dueAt - now + 5).unref?.()
  }

  /** POSTs the signed event to the checked address of the URL: null when it answered 2xx, else why not. */
  private async post(subscription: WebhookSubscription, delivery: WebhookDelivery): Promise<string | null> {
    const control = new AbortController()
    const timer = setTimeout(() => control.abort(), this.options.timeoutMs)
    this.inFlight.add(control)
    try {
      const { url, address } = await this.urls.target(subscription.url, 'webhook url')
      const destination = destinationOf(url, address)
      const event = JSON.parse(delivery.body) as { type: string }
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'Switchboard-Webhooks',
        'accept-encoding': 'identity',
        'switchboard-event-id': delivery.eventId,
        'switchboard-event-type': event.type,
        'switchboard-delivery-id': delivery.id,
        'switchboard-attempt': String(delivery.attempts + 1),
        ...signatureHeaders(subscription.secret, delivery.body, Math.floor(Date.now() / 1000)),
      }
      if (destination.host !== undefined) headers.host = destination.host
      const response = await fetch(destination.href, {
        method: 'POST',
        headers,
        body: delivery.body,
        signal: control.signal,
        redirect: 'manual',
        tls: destination.serverName === undefined ? undefined : { serverName: destination.serverName },
      })
      const text = await readSome(response, RESPONSE_READ_BYTES)
      if (response.status >= 200 && response.status < 300) return null
      return `HTTP ${response.status}${text === '' ? '' : `: ${text}`}`
    } catch (error) {
      if (control.signal.aborted) return `no answer within ${this.options.timeoutMs} ms (webhook_timeout_ms)`
      return error instanceof AppError ? error.message : String((error as Error)?.message ?? error).slice(0, 300)
    } finally {
      clearTimeout(timer)
      this.inFlight.delete(control)
    }
  }
}

/** At most `limit` bytes of an answer's body, as text; the rest is not read (the connection is closed). */
async function readSome(response: Response, limit: number): Promise<string> {
  if (response.body === null) return ''
  const reader = response.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    while (size < limit) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      size += value.byteLength
    }
  } finally {
    await reader.cancel().catch(() => {})
  }
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8').trim()
}
