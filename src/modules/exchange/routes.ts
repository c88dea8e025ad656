/**
 * The exchange's routes: Academy's HTTP wire protocol. Bodies are read from
 * every method (Academy sends JSON on GET and DELETE); errors are text/plain
 * with the status and words of Academy's own server (the `academy` surface).
 */
import type { Client, EntityId } from '../../backend/mailboxes'
import { AppError, MailboxTerminatedError, TooManyRequestsError, UnknownMailboxError } from '../../errors'
import { empty, json, type Chunks } from '../../http/reply'
import { route, type AnyRoute, type ChannelDoc, type RouteRequest } from '../../http/route'
import { EVENT_STREAM, sseEvent } from '../../http/sse'
import type { MetricsRegistry } from '../../ops/metrics'
import type { Logger } from '../../ops/logger'
import * as model from './model'
import { ReplayLog, type ReplayOptions } from './replay'
import type { ExchangeService } from './service'

export interface ExchangeRoutesOptions {
  service: ExchangeService
  logger: Logger
  /** Seconds between keep-alive comments on an idle listen stream. */
  pingSeconds: number
  /** Admits one more long-poll or listen stream for the caller: a release function, or null when it holds too many. */
  admitWaiting: (request: RouteRequest<unknown, unknown, unknown, unknown>) => (() => void) | null
  /** Where the module's gauge of open long-polls and listen streams is registered. */
  metrics: MetricsRegistry
  /** How long, and how many bytes of, delivered messages stay replayable to a listener that reconnects with Last-Event-ID. */
  replay: ReplayOptions
}

/** `Last-Event-ID` as this exchange writes ids (an integer), or null. */
function lastEventIdOf(header: string | undefined): number | null {
  if (header === undefined || !/^\d{1,16}$/.test(header.trim())) return null
  return Number(header.trim())
}

/**
 * An SSE stream of one mailbox's messages, for the serving layer to write
 * (src/http/reply.ts); a message whose write is not confirmed goes back to the
 * head of its queue. A class, not closures: one lives per listener, and
 * thousands listen at once.
 */
class ListenStream implements Chunks {
  private readonly stop = new AbortController()
  /** The event last handed out, until the ask for the next confirms it was written; a replayed one is not given back. */
  private unconfirmed: { id: number; message: string; replayed: boolean } | null = null
  private idleDeadline: number
  private started = false
  private open = true

  constructor(
    private readonly service: ExchangeService,
    private readonly logger: Logger,
    private readonly options: { pingSeconds: number; onWaiting: (kind: 'poll' | 'stream', delta: 1 | -1) => void; replay: ReplayLog },
    private readonly caller: Client,
    private readonly id: EntityId,
    private readonly timeoutSeconds: number,
    private readonly release: () => void,
    /** Events written to an earlier connection after its Last-Event-ID, sent again first. */
    private readonly missed: { id: number; message: string }[],
  ) {
    this.idleDeadline = Date.now() + timeoutSeconds * 1000
    options.onWaiting('stream', 1)
  }

  async next(): Promise<string | null> {
    // Being asked for more means the previous chunk was written: a new message is kept for replay from then on.
    const written = this.unconfirmed
    this.unconfirmed = null
    if (written !== null && !written.replayed) this.options.replay.keep(this.id, written.id, written.message)
    if (!this.started) {
      this.started = true
      return 'retry: 0\r\n\r\n'
    }
    const missed = this.missed.shift()
    if (missed !== undefined) {
      this.unconfirmed = { ...missed, replayed: true }
      return sseEvent(missed.id, missed.message)
    }
    const signal = this.stop.signal
    for (;;) {
      const now = Date.now()
      if (signal.aborted) return null
      if (now >= this.idleDeadline) {
        this.finish()
        return null
      }
      let message: string | null
      try {
        message = await this.service.next(this.caller, this.id, Math.min(this.idleDeadline, now + this.options.pingSeconds * 1000), signal)
      } catch (error) {
        // Terminated (or gone) while listening: the stream just ends, as upstream's does.
        if (!(error instanceof AppError)) this.logger.error('listen stream failed', { error: String(error) })
        this.finish()
        return null
      }
      if (signal.aborted) {
        if (message !== null) await this.giveBack(message)
        return null
      }
      if (message !== null) {
        const id = this.options.replay.nextId()
        this.unconfirmed = { id, message, replayed: false }
        this.idleDeadline = Date.now() + this.timeoutSeconds * 1000
        return sseEvent(id, message)
      }
      if (Date.now() < this.idleDeadline) return ': ping\r\n\r\n'
    }
  }

  async cancel(): Promise<void> {
    this.stop.abort()
    this.finish()
    const unwritten = this.unconfirmed
    this.unconfirmed = null
    // A replayed event is still kept for replay; a new message goes back to the head of its mailbox.
    if (unwritten !== null && !unwritten.replayed) await this.giveBack(unwritten.message)
  }

  private finish(): void {
    if (!this.open) return
    this.open = false
    this.release()
    this.options.onWaiting('stream', -1)
  }

  private giveBack(message: string): Promise<void> {
    return this.service.giveBack(this.id, message).catch((error) => this.logger.error('could not return an undelivered message', { error: String(error) }))
  }
}

const ok = { 200: { description: 'Done (empty body)' } }
const errors = {
  400: { description: 'Missing or invalid field (the text names it)' },
  401: { description: 'No bearer token (auth token)' },
  403: { description: 'Not the owner, or not in a group the mailbox is shared with; or an unknown token' },
  404: { description: 'Unknown mailbox ID' },
}
const tooLarge = { 413: { description: 'Request body or message larger than its limit' } }
const closed = { 419: { description: 'Mailbox was closed' } }

export function exchangeRoutes(options: ExchangeRoutesOptions): AnyRoute[] {
  const { service, logger } = options
  const mailboxOf = (raw: string): EntityId => service.parseEntityId('mailbox', raw)
  // Open long-polls and listen streams on this instance, for metrics and shutdown.
  const waiting = { poll: 0, stream: 0 }
  const gauge = options.metrics.gauge('switchboard_waiting_receivers', 'Receivers waiting on this instance: long-polls (poll) and event streams (stream).', ['kind'])
  options.metrics.collect([gauge], () => {
    gauge.set({ kind: 'poll' }, waiting.poll)
    gauge.set({ kind: 'stream' }, waiting.stream)
  })
  const onWaiting = (kind: 'poll' | 'stream', delta: 1 | -1) => {
    waiting[kind] += delta
  }
  const replay = new ReplayLog(options.replay)
  /** Takes a waiting slot for the caller, or refuses with 429. */
  const admit = (request: RouteRequest<unknown, unknown, unknown, unknown>): (() => void) => {
    const release = options.admitWaiting(request)
    if (release === null) throw new TooManyRequestsError('Too many open long-polls and listen streams for this client (max_waiting_per_client)', 1)
    return release
  }
  const exchange = { surface: 'academy', access: 'client', tag: 'exchange', queryForm: true } as const

  return [
    route({
      ...exchange,
      method: 'POST',
      path: '/mailbox',
      summary: 'Create a mailbox (idempotent)',
      body: model.CreateMailboxBody,
      responses: { ...ok, ...errors, ...tooLarge },
      handle: async ({ caller, body }) => {
        await service.createMailbox(caller, mailboxOf(body.mailbox), body.agent)
        return empty()
      },
    }),
    route({
      ...exchange,
      method: 'DELETE',
      path: '/mailbox',
      summary: 'Terminate a mailbox: gravestone, waiters woken, pending requests answered',
      body: model.MailboxBody,
      quickBody: model.quickMailboxBody,
      responses: { ...ok, ...errors },
      handle: async ({ caller, body }) => {
        await service.terminate(caller, mailboxOf(body.mailbox))
        return empty()
      },
    }),
    route({
      ...exchange,
      method: 'GET',
      path: '/mailbox',
      summary: 'Mailbox status',
      body: model.MailboxBody,
      quickBody: model.quickMailboxBody,
      responses: { 200: { description: 'ACTIVE, TERMINATED or MISSING', schema: model.StatusResponse }, ...errors },
      handle: async ({ caller, body }) => json({ status: await service.status(caller, mailboxOf(body.mailbox)) }),
    }),
    route({
      ...exchange,
      method: 'PUT',
      path: '/message',
      summary: 'Send a message to its destination mailbox',
      body: model.SendBody,
      quickBody: model.quickSendBody,
      responses: { ...ok, ...errors, ...tooLarge, ...closed, 507: { description: 'The store holds as many queued messages as it may' } },
      handle: async ({ caller, body }) => {
        await service.send(caller, service.parseMessage(body.message))
        return empty()
      },
    }),
    route({
      ...exchange,
      method: 'GET',
      path: '/message',
      summary: 'Receive the next message (long-poll)',
      body: model.ReceiveBody,
      quickBody: model.quickReceiveBody,
      responses: { 200: { description: 'The next message', schema: model.MessageResponse }, ...errors, 408: { description: 'No message within the timeout' }, ...closed, 429: { description: 'Too many open long-polls and listen streams for this client' } },
      handle: async (request) => {
        const { caller, body } = request
        const id = mailboxOf(body.mailbox)
        const timeout = service.timeoutSeconds(body.timeout)
        const release = admit(request)
        onWaiting('poll', 1)
        try {
          return json({ message: await service.receive(caller, id, timeout, request.signal) })
        } finally {
          onWaiting('poll', -1)
          release()
        }
      },
    }),
    route({
      ...exchange,
      method: 'GET',
      path: '/mailbox/listen',
      summary: 'Listen for messages as server-sent events',
      description:
        'Each message is one event: `id: <integer>` then its `data:` lines. The stream ends after `timeout` seconds without a message, or when the mailbox is terminated. A listener that reconnects with `Last-Event-ID` first gets again what was written to its earlier connection after that event (messages delivered by this instance within sse_replay_s).',
      body: model.ReceiveBody,
      quickBody: model.quickReceiveBody,
      responses: { 200: { description: 'text/event-stream of messages', schema: model.EventStreamText, contentType: 'text/event-stream' }, ...errors, ...closed, 429: { description: 'Too many open long-polls and listen streams for this client' } },
      handle: async (request) => {
        const { caller, body } = request
        const id = mailboxOf(body.mailbox)
        const timeout = service.timeoutSeconds(body.timeout)
        const status = await service.status(caller, id)
        if (status === 'MISSING') throw new UnknownMailboxError()
        if (status === 'TERMINATED') throw new MailboxTerminatedError()
        const lastEventId = lastEventIdOf(request.header('last-event-id'))
        const missed = lastEventId === null ? [] : replay.after(id, lastEventId)
        const stream = new ListenStream(service, logger, { pingSeconds: options.pingSeconds, onWaiting, replay }, caller, id, timeout, admit(request), missed)
        return { status: 200, headers: EVENT_STREAM, stream }
      },
    }),
    route({
      ...exchange,
      method: 'GET',
      path: '/discover',
      summary: 'Find agent mailboxes by class',
      body: model.DiscoverBody,
      responses: { 200: { description: 'Comma-joined agent uids', schema: model.DiscoverResponse }, ...errors },
      handle: async ({ caller, body }) => json({ agent_ids: (await service.discover(caller, body.agent, body.allow_subclasses)).join(',') }),
    }),
    route({
      ...exchange,
      method: 'GET',
      path: '/mailbox/heartbeat',
      summary: 'Seconds since the mailbox was last active',
      body: model.MailboxBody,
      quickBody: model.quickMailboxBody,
      responses: { 200: { description: 'Seconds, or null', schema: model.HeartbeatResponse }, ...errors },
      handle: async ({ caller, body }) => json({ heartbeat: await service.heartbeat(caller, mailboxOf(body.mailbox)) }),
    }),
    route({
      ...exchange,
      method: 'GET',
      path: '/mailbox/stats',
      summary: 'Request counters of a mailbox',
      body: model.MailboxBody,
      quickBody: model.quickMailboxBody,
      responses: { 200: { description: 'Counters', schema: model.StatsResponse }, ...errors },
      handle: async ({ caller, body }) => json(await service.stats(caller, mailboxOf(body.mailbox))),
    }),
    route({
      ...exchange,
      method: 'POST',
      path: '/mailbox/share',
      summary: 'Share a mailbox with a group the owner is in',
      body: model.ShareBody,
      responses: { ...ok, ...errors, ...closed },
      handle: async ({ caller, body }) => {
        await service.share(caller, mailboxOf(body.mailbox), body.group_id)
        return empty()
      },
    }),
    route({
      ...exchange,
      method: 'GET',
      path: '/mailbox/share',
      summary: 'Groups a mailbox is shared with',
      body: model.MailboxBody,
      quickBody: model.quickMailboxBody,
      responses: { 200: { description: 'Group ids', schema: model.GroupsResponse }, ...errors, ...closed },
      handle: async ({ caller, body }) => json({ group_ids: await service.shares(caller, mailboxOf(body.mailbox)) }),
    }),
    route({
      ...exchange,
      method: 'DELETE',
      path: '/mailbox/share',
      summary: 'Stop sharing a mailbox with a group',
      body: model.ShareBody,
      responses: { ...ok, ...errors, ...closed },
      handle: async ({ caller, body }) => {
        await service.unshare(caller, mailboxOf(body.mailbox), body.group_id)
        return empty()
      },
    }),
  ]
}

/** The listen stream's events, for the AsyncAPI document. */
export const listenStreamChannel: ChannelDoc = {
  id: 'listenStream',
  address: '/mailbox/listen',
  protocol: 'sse',
  description:
    'Server-sent events of one mailbox (GET /mailbox/listen): `retry: 0` first, then one event per message (`id: <integer>`, then the message JSON on `data:` lines, split only between JSON tokens), `: ping` comments while idle. Reconnect with `Last-Event-ID` to get again what an earlier connection was sent after that event. Try it: `curl -N -H "Authorization: Bearer <token>" "http://127.0.0.1:8700/mailbox/listen?mailbox=<url-encoded EntityId JSON>&timeout=30"`.',
  messages: [{ name: 'mailboxMessage', direction: 'send', summary: 'One message, as its sender wrote it (an Academy Message)', schema: model.EventStreamText, contentType: 'text/event-stream' }],
}
