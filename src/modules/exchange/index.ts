/**
 * The exchange's routes: Academy's HTTP wire protocol. Bodies are read from
 * every method (Academy sends JSON on GET and DELETE); errors are text/plain
 * with the status and words of Academy's own server. Each route is a plain
 * route (src/plain.ts): the serving layer calls it directly, and the Elysia
 * route that wraps it documents it and answers `app.handle`.
 */
import { Elysia } from 'elysia'
import type * as v from 'valibot'
import type { Authenticator } from '../../auth'
import type { Client, EntityId } from '../../backend/mailboxes'
import { AppError, TooManyRequestsError } from '../../errors'
import { documentedBody, parseJsonText } from '../../http'
import type { Logger } from '../../logger'
import { jsonReply, plainHandler, toResponse, type PlainReply, type PlainRequest, type PlainRoute, type PlainRoutes, type PlainStream } from '../../plain'
import * as model from './model'
import type { ExchangeService } from './service'

export interface ExchangeModuleOptions {
  service: ExchangeService
  auth: Authenticator
  logger: Logger
  /** Largest request body, in bytes. */
  bodyLimitBytes: number
  /** Seconds between keep-alive comments on an idle listen stream. */
  pingSeconds: number
  /** Admits one more long-poll or listen stream for the caller: a release function, or null when it holds too many. */
  admitWaiting?: (request: PlainRequest) => (() => void) | null
  /** Counts open long-polls and listen streams (for metrics and shutdown). */
  onWaiting?: (kind: 'poll' | 'stream', delta: 1 | -1) => void
  /** Filled with the module's plain routes, for the serving layer to call directly (src/plain.ts). */
  plainRoutes?: PlainRoutes
}

const FIELD = 'Missing or invalid field: '
const TEXT = { 'content-type': 'text/plain; charset=utf-8' }
const EVENT_STREAM = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' }

/** Renders an error as Academy's server does: text/plain, its status, its words. */
function academyError(error: unknown, logger: Logger): PlainReply {
  if (error instanceof TooManyRequestsError) return { status: 429, headers: { ...TEXT, 'retry-after': String(Math.ceil(error.retryAfterSeconds)) }, body: error.message }
  if (error instanceof AppError) return { status: error.status, headers: TEXT, body: error.message }
  logger.error('unexpected error in exchange route', { error: String((error as Error)?.stack ?? error) })
  return { status: 500, headers: TEXT, body: 'Internal Server Error' }
}

/**
 * One SSE event carrying `message`. JSON may hold raw line breaks between
 * tokens; each line gets its own `data:` field, so a line break can neither
 * end the event early nor start a field of its own (the client joins the
 * lines back with \n, which JSON reads as the same whitespace).
 */
function sseEvent(message: string): string {
  return `${message
    .split(/\r\n|\r|\n/)
    .map((line) => `data: ${line}`)
    .join('\r\n')}\r\n\r\n`
}

const errorResponses = {
  400: model.ErrorText,
  401: model.ErrorText,
  403: model.ErrorText,
  404: model.ErrorText,
}

/**
 * An SSE stream of one mailbox's messages, for the serving layer to write
 * (src/plain.ts); a message whose write is not confirmed goes back to the
 * head of its queue. A class, not closures: one lives per listener, and
 * thousands listen at once.
 */
class ListenStream implements PlainStream {
  private readonly stop = new AbortController()
  private unconfirmed: string | null = null
  private idleDeadline: number
  private started = false
  private open = true

  constructor(
    private readonly service: ExchangeService,
    private readonly logger: Logger,
    private readonly options: Pick<ExchangeModuleOptions, 'pingSeconds' | 'onWaiting'>,
    private readonly caller: Client,
    private readonly id: EntityId,
    private readonly timeoutSeconds: number,
    private readonly release: () => void,
  ) {
    this.idleDeadline = Date.now() + timeoutSeconds * 1000
    options.onWaiting?.('stream', 1)
  }

  async next(): Promise<string | null> {
    // Being asked for more means the previous chunk was written.
    this.unconfirmed = null
    if (!this.started) {
      this.started = true
      return 'retry: 0\r\n\r\n'
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
        this.unconfirmed = message
        this.idleDeadline = Date.now() + this.timeoutSeconds * 1000
        return sseEvent(message)
      }
      if (Date.now() < this.idleDeadline) return ': ping\r\n\r\n'
    }
  }

  async cancel(): Promise<void> {
    this.stop.abort()
    this.finish()
    if (this.unconfirmed !== null) {
      const message = this.unconfirmed
      this.unconfirmed = null
      await this.giveBack(message)
    }
  }

  private finish(): void {
    if (!this.open) return
    this.open = false
    this.release()
    this.options.onWaiting?.('stream', -1)
  }

  private giveBack(message: string): Promise<void> {
    return this.service.giveBack(this.id, message).catch((error) => this.logger.error('could not return an undelivered message', { error: String(error) }))
  }
}

export function exchangeModule(options: ExchangeModuleOptions) {
  const { service, auth, logger, bodyLimitBytes } = options
  const read = <S extends v.GenericSchema>(request: PlainRequest, schema: S, quick?: (data: unknown) => v.InferOutput<S> | null) =>
    parseJsonText(request.body, schema, bodyLimitBytes, FIELD, quick)
  const mailboxOf = (raw: string): EntityId => service.parseEntityId('mailbox', raw)
  const client = (request: PlainRequest): Client => auth.fromHeader(request.header('authorization'))
  /** Takes a waiting slot for the caller (a no-op release when no limit is set), or refuses with 429. */
  const admit = (request: PlainRequest): (() => void) => {
    if (!options.admitWaiting) return () => {}
    const release = options.admitWaiting(request)
    if (release === null) throw new TooManyRequestsError('Too many open long-polls and listen streams for this client (max_waiting_per_client)', 1)
    return release
  }
  const counted = async <T>(kind: 'poll' | 'stream', work: () => Promise<T>): Promise<T> => {
    options.onWaiting?.(kind, 1)
    try {
      return await work()
    } finally {
      options.onWaiting?.(kind, -1)
    }
  }

  const OK: PlainReply = { status: 200 }
  /** A route's work, with every error rendered as Academy's server renders it. */
  const route =
    (work: (request: PlainRequest) => Promise<PlainReply | Response>): PlainRoute =>
    async (request) => {
      try {
        return await work(request)
      } catch (error) {
        return academyError(error, logger)
      }
    }

  /** A route whose body names one mailbox (`{"mailbox": ...}`): `work` gets the caller and that mailbox. */
  const onMailbox = (work: (caller: Client, id: EntityId) => Promise<PlainReply>): PlainRoute =>
    route(async (request) => {
      const caller = client(request)
      return work(caller, mailboxOf(read(request, model.MailboxBody, model.quickMailboxBody).mailbox))
    })

  const routes = {
    createMailbox: route(async (request) => {
      const caller = client(request)
      const body = read(request, model.CreateMailboxBody)
      await service.createMailbox(caller, mailboxOf(body.mailbox), body.agent)
      return OK
    }),
    terminate: onMailbox(async (caller, id) => {
      await service.terminate(caller, id)
      return OK
    }),
    status: onMailbox(async (caller, id) => jsonReply({ status: await service.status(caller, id) })),
    send: route(async (request) => {
      const caller = client(request)
      const body = read(request, model.SendBody, model.quickSendBody)
      await service.send(caller, service.parseMessage(body.message))
      return OK
    }),
    receive: route(async (request) => {
      const caller = client(request)
      const body = read(request, model.ReceiveBody, model.quickReceiveBody)
      const id = mailboxOf(body.mailbox)
      const timeout = service.timeoutSeconds(body.timeout)
      const release = admit(request)
      try {
        return jsonReply({ message: await counted('poll', () => service.receive(caller, id, timeout, request.signal)) })
      } finally {
        release()
      }
    }),
    listen: route(async (request) => {
      const caller = client(request)
      const body = read(request, model.ReceiveBody, model.quickReceiveBody)
      const id = mailboxOf(body.mailbox)
      const timeout = service.timeoutSeconds(body.timeout)
      const status = await service.status(caller, id)
      if (status === 'MISSING') return { status: 404, headers: TEXT, body: 'Unknown mailbox ID' }
      if (status === 'TERMINATED') return { status: 419, headers: TEXT, body: 'Mailbox was closed' }
      return { status: 200, headers: EVENT_STREAM, stream: new ListenStream(service, logger, options, caller, id, timeout, admit(request)) }
    }),
    discover: route(async (request) => {
      const caller = client(request)
      const body = read(request, model.DiscoverBody)
      const ids = await service.discover(caller, body.agent, body.allow_subclasses)
      return jsonReply({ agent_ids: ids.join(',') })
    }),
    heartbeat: onMailbox(async (caller, id) => jsonReply({ heartbeat: await service.heartbeat(caller, id) })),
    stats: onMailbox(async (caller, id) => jsonReply(await service.stats(caller, id))),
    share: route(async (request) => {
      const caller = client(request)
      const body = read(request, model.ShareBody)
      await service.share(caller, mailboxOf(body.mailbox), body.group_id)
      return OK
    }),
    shares: onMailbox(async (caller, id) => jsonReply({ group_ids: await service.shares(caller, id) })),
    unshare: route(async (request) => {
      const caller = client(request)
      const body = read(request, model.ShareBody)
      await service.unshare(caller, mailboxOf(body.mailbox), body.group_id)
      return OK
    }),
  }
  const exchange = new Elysia({ name: 'switchboard/exchange', detail: { tags: ['exchange'] } }).onError(({ error }) => toResponse(academyError(error, logger)))
  /**
   * Adds a route: a plain route for the serving layer, wrapped as the Elysia route that documents it
   * and answers app.handle (the body is the plain route's to read, so Elysia parses none).
   */
  const offer = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, handler: PlainRoute, hook: Record<string, unknown>) => {
    options.plainRoutes?.set(`${method} ${path}`, handler)
    exchange.route(method, path, plainHandler(handler), { parse: 'none', ...hook } as never)
  }
  offer('POST', '/mailbox', routes.createMailbox, {
    detail: { summary: 'Create a mailbox (idempotent)', requestBody: documentedBody(model.CreateMailboxBody) },
    response: errorResponses,
  })
  offer('DELETE', '/mailbox', routes.terminate, {
    detail: { summary: 'Terminate a mailbox: gravestone, waiters woken, pending requests answered', requestBody: documentedBody(model.MailboxBody) },
    response: errorResponses,
  })
  offer('GET', '/mailbox', routes.status, {
    detail: { summary: 'Mailbox status', requestBody: documentedBody(model.MailboxBody) },
    response: { 200: model.StatusResponse, ...errorResponses },
  })
  offer('PUT', '/message', routes.send, {
    detail: { summary: 'Send a message to its destination mailbox', requestBody: documentedBody(model.SendBody) },
    response: { ...errorResponses, 413: model.ErrorText, 419: model.ErrorText, 507: model.ErrorText },
  })
  offer('GET', '/message', routes.receive, {
    detail: { summary: 'Receive the next message (long-poll)', requestBody: documentedBody(model.ReceiveBody) },
    response: { 200: model.MessageResponse, ...errorResponses, 408: model.ErrorText, 419: model.ErrorText },
  })
  offer('GET', '/mailbox/listen', routes.listen, {
    detail: {
      summary: 'Listen for messages as server-sent events',
      description: 'Each message is one `data:` event. The stream ends after `timeout` seconds without a message, or when the mailbox is terminated.',
      requestBody: documentedBody(model.ReceiveBody),
      responses: { 200: { description: 'text/event-stream of messages', content: { 'text/event-stream': { schema: { type: 'string' } } } } },
    },
    response: { ...errorResponses, 419: model.ErrorText },
  })
  offer('GET', '/discover', routes.discover, {
    detail: { summary: 'Find agent mailboxes by class', requestBody: documentedBody(model.DiscoverBody) },
    response: { 200: model.DiscoverResponse, ...errorResponses },
  })
  offer('GET', '/mailbox/heartbeat', routes.heartbeat, {
    detail: { summary: 'Seconds since the mailbox was last active', requestBody: documentedBody(model.MailboxBody) },
    response: { 200: model.HeartbeatResponse, ...errorResponses },
  })
  offer('GET', '/mailbox/stats', routes.stats, {
    detail: { summary: 'Request counters of a mailbox', requestBody: documentedBody(model.MailboxBody) },
    response: { 200: model.StatsResponse, ...errorResponses },
  })
  offer('POST', '/mailbox/share', routes.share, {
    detail: { summary: 'Share a mailbox with a group the owner is in', requestBody: documentedBody(model.ShareBody) },
    response: { ...errorResponses, 419: model.ErrorText },
  })
  offer('GET', '/mailbox/share', routes.shares, {
    detail: { summary: 'Groups a mailbox is shared with', requestBody: documentedBody(model.MailboxBody) },
    response: { 200: model.GroupsResponse, ...errorResponses, 419: model.ErrorText },
  })
  offer('DELETE', '/mailbox/share', routes.unshare, {
    detail: { summary: 'Stop sharing a mailbox with a group', requestBody: documentedBody(model.ShareBody) },
    response: { ...errorResponses, 419: model.ErrorText },
  })
  return exchange
}
