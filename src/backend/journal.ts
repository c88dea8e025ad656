/**
 * The events module's part of the backend contract: the retained event log
 * (SSE resume by Last-Event-ID reads it) and webhook subscriptions with their
 * pending and dead-lettered deliveries.
 */
/** One event as the log keeps it: the id the log gave it and its JSON (which does not hold the id). */
export interface LoggedEvent {
  id: string
  body: string
}

/** What `read` found after an id. */
export interface EventPage {
  /** Oldest first. */
  events: LoggedEvent[]
  /** Events after the id asked for were dropped from the log before this read (the caller missed some). */
  missed: boolean
}

/**
 * The retained log, bounded in count and bytes (the oldest go first). Ids
 * are decimal integers or `<integer>-<integer>` (a Redis stream id) that
 * grow with every append; compareEventIds orders them.
 */
export interface EventLogStore {
  /** Appends one event and hands it, with its id, to every subscriber on every instance, in id order. */
  append(body: string): Promise<string>
  /** Up to `limit` events after `afterId`, oldest first. */
  read(afterId: string, limit: number): Promise<EventPage>
  /** Receives every event appended from now on, on any instance; resolves once live. Returns the function that stops it. */
  subscribe(handler: (event: LoggedEvent) => void): Promise<() => void>
}

/** Orders two event ids (negative: `a` is older). */
export function compareEventIds(a: string, b: string): number {
  const [a1 = 0, a2 = 0] = a.split('-').map(Number)
  const [b1 = 0, b2 = 0] = b.split('-').map(Number)
  return a1 !== b1 ? a1 - b1 : a2 - b2
}

/** A webhook subscription: where a tenant's events of some types are posted, signed with its secret. */
export interface WebhookSubscription {
  id: string
  /** Whose events it receives (a viewer key: `client:<id>`, `workspace:<id>` or `admin`). */
  tenant: string
  url: string
  /** Event types delivered; empty: every type. */
  types: string[]
  secret: string
  createdAt: number
}

/** One event to post to one subscription; dead-lettered once its attempts ran out. */
export interface WebhookDelivery {
  id: string
  subscriptionId: string
  eventId: string
  /** The event's JSON as posted. */
  body: string
  /** Attempts made so far. */
  attempts: number
  /** When it may next be taken (epoch ms); a taken delivery is due again when its lease ends. */
  dueAt: number
  lastError: string | null
  /** When it was dead-lettered, or null while it is pending. */
  deadAt: number | null
}

/** Webhook subscriptions and deliveries; a delivery taken by one instance is not taken by another before its lease ends. */
export interface WebhookStore {
  /** Stores a subscription; false (nothing stored) when its tenant already has `maxPerTenant`. */
  createSubscription(subscription: WebhookSubscription, maxPerTenant: number): Promise<boolean>
  /** A tenant's subscriptions, oldest first. */
  listSubscriptions(tenant: string): Promise<WebhookSubscription[]>
  getSubscription(id: string): Promise<WebhookSubscription | null>
  /** Removes a subscription with its deliveries; false when it does not exist. */
  deleteSubscription(id: string): Promise<boolean>
  /** Queues a delivery; false (nothing stored) when its subscription is gone or holds `maxPerSubscription` deliveries, pending and dead. */
  addDelivery(delivery: WebhookDelivery, maxPerSubscription: number): Promise<boolean>
  /** Takes up to `limit` pending deliveries due by `now`, each leased until `leaseUntil` (then due again). */
  claimDeliveries(now: number, leaseUntil: number, limit: number): Promise<WebhookDelivery[]>
  /** A delivery that was made: forgotten. */
  completeDelivery(id: string): Promise<void>
  /** A failed attempt: due again at `dueAt`, or dead-lettered at `now` when `dueAt` is null. */
  failDelivery(id: string, attempts: number, lastError: string, dueAt: number | null, now: number): Promise<void>
  /** A subscription's dead letters, oldest first. */
  deadLetters(subscriptionId: string): Promise<WebhookDelivery[]>
  /** Queues a dead letter again, due `now` with its attempts reset; false when there is no such dead letter. */
  redeliver(subscriptionId: string, id: string, now: number): Promise<boolean>
  /** Forgets a dead letter; false when there is no such dead letter. */
  dropDeadLetter(subscriptionId: string, id: string): Promise<boolean>
}
