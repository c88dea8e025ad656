/**
 * The events routes: GET /events (an SSE stream, resumable by Last-Event-ID)
 * and the webhook subscriptions with their dead letters. Native surface. The
 * caller is whoever its token names: a tokens-file client, the operator or
 * a workspace (model.ts Viewer says what each sees).
 */
import * as v from 'valibot'
import type { WebhookDelivery, WebhookSubscription } from '../../backend/journal'
import { BadRequestError, TooManyRequestsError } from '../../errors'
import { empty, json } from '../../http/reply'
import { route, type AnyRoute, type ChannelDoc, type Credentials, type RouteRequest } from '../../http/route'
import { EVENT_STREAM } from '../../http/sse'
import * as model from './model'
import type { EventService } from './service'
import type { WebhookService } from './webhooks'

export interface EventsRoutesOptions {
  service: EventService
  webhooks: WebhookService
  /** Who the request's credentials name (throws 401/403 when they name nobody). */
  viewerOf: (credentials: Credentials) => Promise<model.Viewer>
  /** Admits one more open stream for the caller: a release function, or null when it holds too many. */
  admitWaiting: (request: RouteRequest<unknown, unknown, unknown, unknown>) => (() => void) | null
}

/** `Last-Event-ID` as the event log writes ids, or null (absent or malformed: the stream starts from now). */
function lastEventIdOf(header: string | undefined): string | null {
  const value = header?.trim()
  return value !== undefined && /^\d{1,20}(-\d{1,20})?$/.test(value) ? value : null
}

const iso = (ms: number) => new Date(ms).toISOString()

const webhookView = (subscription: WebhookSubscription, withSecret = false) => ({
  id: subscription.id,
  url: subscription.url,
  types: subscription.types,
  created_at: iso(subscription.createdAt),
  ...(withSecret ? { secret: subscription.secret } : {}),
})

const deadLetterView = (delivery: WebhookDelivery) => ({
  id: delivery.id,
  event_id: delivery.eventId,
  attempts: delivery.attempts,
  last_error: delivery.lastError,
  dead_at: iso(delivery.deadAt ?? delivery.dueAt),
  event: JSON.parse(delivery.body) as unknown,
})

const errors = {
  400: { description: 'Invalid input (the message names it)' },
  401: { description: 'No or unknown bearer token' },
}
const notFound = { 404: { description: 'No such webhook (or dead letter) of this caller' } }

/** The AsyncAPI channel of GET /events. */
export const eventsStreamChannel: ChannelDoc = {
  id: 'events',
  address: '/events',
  protocol: 'sse',
  description:
    'Everything that happens to the caller\'s jobs, workers, mailboxes and workspaces. Each event\'s SSE `id` is its id in the retained log and its `event` field its type; reconnect with `Last-Event-ID` to resume after it. A stream resumed from an id older than the retained log starts with an `events.missed` event; a reader that falls `event_stream_buffer` events behind gets `events.overflow` and the stream ends.',
  messages: [
    { name: 'event', direction: 'send', summary: 'One event (SSE event name: its type, e.g. job.completed)', schema: model.EventSchema },
    { name: 'events.missed', direction: 'send', summary: 'First event of a stream resumed from an id the retained log no longer holds: some events are missing', schema: model.MissedSchema },
    { name: 'events.overflow', direction: 'send', summary: 'Last event of a stream whose reader fell too far behind; reconnect with Last-Event-ID', schema: v.object({ message: v.string() }) },
  ],
}

export function eventsRoutes(options: EventsRoutesOptions): AnyRoute[] {
  const { service, webhooks, viewerOf } = options
  const common = { surface: 'native', access: 'client', verify: 'handler', tag: 'events' } as const
  const viewer = (request: { credentials: Credentials }) => viewerOf(request.credentials)

  return [
    route({
      ...common,
      method: 'GET',
      path: '/events',
      summary: 'Stream events (SSE), resumable with Last-Event-ID',
      description:
        'Bearer token: a tokens-file client sees its jobs, workers and mailboxes; the admin token sees every workspace; a workspace token sees that workspace and its descendants. Send `Last-Event-ID` to resume after an event from the retained log (`events_retained`).',
      query: model.EventsQuery,
      responses: { 200: { description: 'An event stream (see the AsyncAPI document, channel events)', schema: model.EventSchema, contentType: 'text/event-stream' }, ...errors, 429: { description: 'Too many open streams for this client (max_waiting_per_client)' } },
      handle: async (request) => {
        const who = await viewer(request)
        const filter = { types: model.parseTypes(request.query.types), resource: request.query.resource ?? null }
        const raw = request.header('last-event-id')
        const lastEventId = lastEventIdOf(raw)
        if (raw !== undefined && raw.trim() !== '' && lastEventId === null) throw new BadRequestError('Last-Event-ID must be an event id as this stream sends them (digits, or digits-digits)')
        const release = options.admitWaiting(request)
        if (release === null) throw new TooManyRequestsError('Too many open event streams and long-polls for this client (max_waiting_per_client)', 1)
        try {
          const endsAt = request.query.timeout === undefined ? null : Date.now() + request.query.timeout * 1000
          const stream = await service.open(who, filter, lastEventId, { endsAt }, release)
          return { status: 200, headers: EVENT_STREAM, stream }
        } catch (error) {
          release()
          throw error
        }
      },
    }),
    route({
      ...common,
      method: 'POST',
      path: '/webhooks',
      summary: 'Subscribe a URL to events (signed deliveries)',
      description:
        'Each delivery is a POST of one event (the JSON GET /events sends) with `Switchboard-Event-Id`, `Switchboard-Timestamp` and `Switchboard-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>`; see docs/events.md to verify it. Retried with exponential backoff; dead-lettered after `webhook_attempts` failures.',
      body: model.CreateWebhookBody,
      responses: { 201: { description: 'The subscription, with its secret (shown only here)', schema: model.WebhookSchema }, ...errors, 403: { description: 'Webhooks are off' }, 409: { description: 'This tenant holds webhooks_per_tenant subscriptions already' } },
      handle: async (request) => json(webhookView(await webhooks.create(await viewer(request), request.body), true), 201),
    }),
    route({
      ...common,
      method: 'GET',
      path: '/webhooks',
      summary: "The caller's webhook subscriptions",
      responses: { 200: { description: 'Oldest first; secrets are not shown', schema: v.object({ webhooks: v.array(model.WebhookSchema) }) }, ...errors },
      handle: async (request) => json({ webhooks: (await webhooks.list(await viewer(request))).map((subscription) => webhookView(subscription)) }),
    }),
    route({
      ...common,
      method: 'GET',
      path: '/webhooks/:id',
      summary: 'One webhook subscription',
      params: model.WebhookParams,
      responses: { 200: { description: 'The subscription (its secret is not shown)', schema: model.WebhookSchema }, ...errors, ...notFound },
      handle: async (request) => json(webhookView(await webhooks.get(await viewer(request), request.params.id))),
    }),
    route({
      ...common,
      method: 'DELETE',
      path: '/webhooks/:id',
      summary: 'Delete a webhook subscription with its pending deliveries and dead letters',
      params: model.WebhookParams,
      responses: { 204: { description: 'Deleted' }, ...errors, ...notFound },
      handle: async (request) => {
        await webhooks.delete(await viewer(request), request.params.id)
        return empty(204)
      },
    }),
    route({
      ...common,
      method: 'GET',
      path: '/webhooks/:id/dead-letters',
      summary: 'Deliveries that failed webhook_attempts times, with their last error',
      params: model.WebhookParams,
      responses: { 200: { description: 'Oldest first', schema: v.object({ dead_letters: v.array(model.DeadLetterSchema) }) }, ...errors, ...notFound },
      handle: async (request) => json({ dead_letters: (await webhooks.deadLetters(await viewer(request), request.params.id)).map(deadLetterView) }),
    }),
    route({
      ...common,
      method: 'POST',
      path: '/webhooks/:id/dead-letters/:delivery_id/retry',
      summary: 'Queue a dead letter again (its attempts start over)',
      params: model.DeadLetterParams,
      responses: { 202: { description: 'Queued' }, ...errors, ...notFound },
      handle: async (request) => {
        await webhooks.redeliver(await viewer(request), request.params.id, request.params.delivery_id)
        return empty(202)
      },
    }),
    route({
      ...common,
      method: 'DELETE',
      path: '/webhooks/:id/dead-letters/:delivery_id',
      summary: 'Drop a dead letter',
      params: model.DeadLetterParams,
      responses: { 204: { description: 'Dropped' }, ...errors, ...notFound },
      handle: async (request) => {
        await webhooks.drop(await viewer(request), request.params.id, request.params.delivery_id)
        return empty(204)
      },
    }),
  ]
}
