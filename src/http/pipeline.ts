/**
 * The one request pipeline: match → limits → auth → read and validate input
 * → handler → render. Both adapters (node.ts for sockets, elysia.ts for
 * `app.handle`) hand every request to `handle`, so no step can be skipped by
 * coming in one way rather than the other.
 *
 * Order within "limits": the rate limit, then the path parameters, then the
 * body's size. A request that fails a step gets the error of the first step
 * it fails, rendered in its route's surface (surfaces.ts).
 */
import * as v from 'valibot'
import { BadRequestError, NotFoundError, PayloadTooLargeError } from '../errors'
import type { Logger } from '../ops/logger'
import { credentialOf, type Authenticator, type Credential } from './auth'
import type { CorsPolicy } from './cors'
import { describeIssue, fieldTypesOf, parseJsonBody, parseWith, queryAsFields } from './input'
import { callerKey, rateLimitHeaders, tooManyRequests, type RateDecision, type RateLimiter } from './limits'
import type { Chunks, Reply } from './reply'
import type { Access, AnyRoute, Callers, Credentials, RouteRequest, UpgradeHandler } from './route'
import type { InFlight } from './served'
import { INPUT_ERROR_PREFIX, renderError } from './surfaces'

/** A request as an adapter hands it over. */
export interface Incoming {
  method: string
  /** The request target's path, as sent (not decoded). */
  path: string
  /** The query string without its '?' ('' when there is none). */
  search: string
  /** A header by its lower-case name (repeated ones joined with ", "). */
  header(name: string): string | undefined
  /** The body as sent (empty when there is none), or null once it passes `limit` bytes. */
  body(limit: number): Promise<Uint8Array | null>
  served: InFlight
  scheme: 'http' | 'https'
}

/** How each access kind is checked: the caller it resolves to, or an error. */
export type Resolvers = { [A in Exclude<Access, 'none'>]: (credential: Credential, workspaceId: string | null) => Callers[A] | Promise<Callers[A]> }

export interface PipelineOptions {
  routes: readonly AnyRoute[]
  logger: Logger
  /** Largest body of a route that sets no limit of its own (max_body_kb). */
  bodyLimitBytes: number
  resolvers: Resolvers
  auth: Authenticator
  rateLimiter: RateLimiter | null
  cors: CorsPolicy | null
  /** True once shutdown has begun: waits end at once, except calls that outlive the drain. */
  draining(): boolean
}

/** The label of a request that matched no route (raw paths would make label sets unbounded). */
export const UNMATCHED_ROUTE = 'unmatched'

/** The route template a match stands for, or UNMATCHED_ROUTE (for metrics and logs). */
export const routeLabel = (matched: Matched | null): string => matched?.route.path ?? UNMATCHED_ROUTE

const NO_PARAMS: Readonly<Record<string, string | null>> = Object.freeze({})
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true })

export interface Matched {
  route: AnyRoute
  params: Readonly<Record<string, string | null>>
}

/**
 * One segment of a route's path: literal text, or a parameter (`:name`) that
 * may end in literal text (`:id:cancel`, as A2A's HTTP+JSON binding writes
 * `tasks/{id}:cancel`).
 */
type Segment = { literal: string } | { param: string; suffix: string }

const PARAM_SEGMENT = /^:([A-Za-z_][A-Za-z0-9_]*)(.*)$/

function segmentOf(text: string): Segment {
  const param = PARAM_SEGMENT.exec(text)
  return param === null ? { literal: text } : { param: param[1]!, suffix: param[2]! }
}

/** The route table's router: static paths by one map lookup, parametric ones segment by segment, in the table's order. */
class Router {
  private readonly exact = new Map<string, AnyRoute>()
  /**
   * Parametric routes by method and number of segments, each list in the table's order: a path is tried only
   * against the routes that could match it (a route of another method or length never does).
   */
  private readonly patterns = new Map<string, { route: AnyRoute; segments: Segment[] }[]>()

  constructor(routes: readonly AnyRoute[]) {
    const keys = new Set<string>()
    for (const route of routes) {
      const key = `${route.method} ${route.path}`
      if (keys.has(key)) throw new Error(`route ${key} is defined twice`)
      keys.add(key)
      const segments = route.path.split('/').map(segmentOf)
      if (!segments.some((segment) => 'param' in segment)) {
        this.exact.set(key, route)
        continue
      }
      const shape = `${route.method} ${segments.length}`
      let list = this.patterns.get(shape)
      if (list === undefined) this.patterns.set(shape, (list = []))
      list.push({ route, segments })
    }
  }

  match(method: string, path: string): Matched | null {
    const lookup = method === 'HEAD' ? 'GET' : method
    const found = this.exact.get(`${lookup} ${path}`)
    if (found !== undefined) return { route: found, params: NO_PARAMS }
    const parts = path.split('/')
    const candidates = this.patterns.get(`${lookup} ${parts.length}`)
    if (candidates === undefined) return null
    for (const { route, segments } of candidates) {
      let params: Record<string, string | null> | null = {}
      for (let at = 0; at < segments.length && params !== null; at++) {
        const segment = segments[at]!
        const part = parts[at]!
        if ('literal' in segment) {
          if (segment.literal !== part) params = null
        } else if (part.length <= segment.suffix.length || !part.endsWith(segment.suffix)) params = null
        else params[segment.param] = decoded(part.slice(0, part.length - segment.suffix.length))
      }
      if (params !== null) return { route, params }
    }
    return null
  }
}

/** A path parameter percent-decoded, or null when it is not valid percent-encoded UTF-8. */
function decoded(part: string): string | null {
  if (!part.includes('%')) return part
  try {
    return decodeURIComponent(part)
  } catch {
    return null
  }
}

/** The query string as a record (the first value of a repeated name). */
function queryOf(search: string): Record<string, string> {
  const query: Record<string, string> = {}
  if (search === '') return query
  for (const [name, value] of new URLSearchParams(search)) if (!(name in query)) query[name] = value
  return query
}

export class Pipeline {
  private readonly router: Router
  /** The field types of each query-form route's body, worked out on first use. */
  private readonly fieldTypes = new Map<AnyRoute, Record<string, string>>()

  constructor(private readonly options: PipelineOptions) {
    this.router = new Router(options.routes)
  }

  get routes(): readonly AnyRoute[] {
    return this.options.routes
  }

  /** The route a request matches, with its raw path parameters, or null. An adapter matches once and hands the match to `handle`. */
  match(method: string, path: string): Matched | null {
    return this.router.match(method, path)
  }

  /** The WebSocket endpoint of a path (a route with an `upgrade`), or null. */
  upgradeOf(path: string): UpgradeHandler | null {
    return this.router.match('GET', path)?.route.upgrade ?? null
  }

  /**
   * Takes one token from the bucket of the caller `credential` and `remoteAddress` stand for: the one rate limit,
   * for requests and WebSocket upgrades alike. Null when rate limiting is off.
   */
  rateLimit(credential: Credential, remoteAddress: string | undefined): RateDecision | null {
    const { rateLimiter, auth } = this.options
    return rateLimiter === null ? null : rateLimiter.take(callerKey(credential, remoteAddress, auth))
  }

  /** Answers one request; never throws. */
  async handle(incoming: Incoming, matched: Matched | null = this.match(incoming.method, incoming.path)): Promise<Reply> {
    const { options } = this
    const requestId = incoming.served.requestId
    const origin = incoming.header('origin')
    const corsHeaders = options.cors !== null && origin !== undefined ? options.cors.headersFor(origin) : null
    const finish = (reply: Reply, extra?: Record<string, string> | null): Reply => {
      if (corsHeaders === null && !extra) {
        reply.headers = { ...reply.headers, 'x-request-id': requestId }
        return reply
      }
      reply.headers = { ...corsHeaders, ...extra, ...reply.headers, 'x-request-id': requestId }
      return reply
    }
    if (corsHeaders !== null && incoming.method === 'OPTIONS' && incoming.header('access-control-request-method') !== undefined) {
      return finish({ status: 204, headers: { 'content-length': '0' } })
    }
    if (matched === null) {
      // The body is still read (and bounded), so the connection stays usable; one that cannot be read closes it.
      await incoming.body(options.bodyLimitBytes).catch(() => null)
      return finish(renderError('native', new NotFoundError('No such route'), { requestId, logger: options.logger }))
    }
    const { route } = matched
    if (options.draining() && !route.outlivesDrain) incoming.served.abort('shutdown')
    let limitHeaders: Record<string, string> | null = null
    let handled = false
    try {
      const credential = credentialOf(incoming.header('authorization'))
      const decision = route.unlimited ? null : this.rateLimit(credential, incoming.served.remoteAddress)
      if (decision !== null) {
        limitHeaders = rateLimitHeaders(decision)
        if (!decision.allowed) throw tooManyRequests(decision)
      }
      const prefix = INPUT_ERROR_PREFIX[route.surface]
      const params = route.params ? this.parseParams(route, matched.params, prefix) : matched.params
      const bytes = await this.readBody(route, incoming, prefix)
      const workspaceId = incoming.header('x-workspace-id') ?? null
      const credentials: Credentials = { token: credential.kind === 'bearer' ? credential.token : null, workspaceId }
      const caller = route.access === 'none' || route.verify === 'handler' ? null : await options.resolvers[route.access](credential, workspaceId)
      const query = route.query ? parseWith(route.query, queryOf(incoming.search), `${prefix}query `) : NO_PARAMS
      const body = this.readInput(route, bytes, incoming.search, prefix)
      const request: RouteRequest<unknown, unknown, unknown, unknown> = {
        params,
        query,
        body,
        caller,
        bytes,
        header: (name) => incoming.header(name),
        path: incoming.path,
        search: incoming.search,
        get origin() {
          return originOf(incoming)
        },
        requestId,
        remoteAddress: incoming.served.remoteAddress,
        get signal() {
          return incoming.served.signal
        },
        onGone: (listener) => incoming.served.onGone(listener),
        credentials,
      }
      handled = true
      const reply = await route.handle(request as never)
      if (reply.stream) reply.stream = endedWith(reply.stream, incoming.served)
      return finish(reply, limitHeaders)
    } catch (error) {
      const reply = renderError(route.surface, error, { requestId, logger: options.logger })
      if (!handled) route.onRefused?.(reply.status)
      return finish(reply, limitHeaders)
    }
  }

  /** The validated body: JSON on any method, or the same fields as query parameters when the route takes that form and the body is empty. */
  private readInput(route: AnyRoute, bytes: Uint8Array, search: string, prefix: string): unknown {
    if (route.body === undefined || route.body === 'raw') return undefined
    if (bytes.length === 0 && route.queryForm && search !== '') {
      let types = this.fieldTypes.get(route)
      if (types === undefined) this.fieldTypes.set(route, (types = fieldTypesOf(route.body)))
      return parseWith(route.body, queryAsFields(queryOf(search), types), prefix)
    }
    return parseJsonBody(bytes.length === 0 ? '' : utf8.decode(bytes), route.body, prefix, route.quickBody)
  }

  private parseParams(route: AnyRoute, raw: Readonly<Record<string, string | null>>, prefix: string): unknown {
    for (const [name, value] of Object.entries(raw)) if (value === null) throw new BadRequestError(`${prefix}path parameter ${name} is not valid percent-encoded UTF-8`)
    const parsed = v.safeParse(route.params!, raw)
    if (!parsed.success) throw new BadRequestError(`${prefix}${describeIssue(parsed.issues)}`)
    return parsed.output
  }

  /** Reads the body within the route's limit (max_body_kb unless it sets its own). */
  private async readBody(route: AnyRoute, incoming: Incoming, prefix: string): Promise<Uint8Array> {
    const limit = route.bodyLimit ? Math.min(route.bodyLimit.bytes, this.options.bodyLimitBytes) : this.options.bodyLimitBytes
    const setting = route.bodyLimit && route.bodyLimit.bytes <= this.options.bodyLimitBytes ? ` (${route.bodyLimit.setting})` : ' (max_body_kb)'
    // One message whether the length was declared or counted, so both adapters word it alike.
    const tooLarge = () => new PayloadTooLargeError(`${prefix}request body is larger than the limit of ${limit} bytes${setting}`)
    if (Number(incoming.header('content-length') ?? 0) > limit) throw tooLarge()
    const bytes = await incoming.body(limit)
    if (bytes === null) throw tooLarge()
    return bytes
  }
}

/**
 * A stream that ends, and is cancelled, once its request does (the caller
 * gone, or shutdown), whichever adapter writes it.
 */
function endedWith(stream: Chunks, served: InFlight): Chunks {
  let gone = false
  let cancelled: Promise<void> | null = null
  const cancel = () => (cancelled ??= stream.cancel())
  const stopListening = served.onGone(() => {
    gone = true
    void cancel()
  })
  return {
    async next() {
      if (gone) return null
      const chunk = await stream.next()
      if (chunk === null) stopListening()
      return gone ? null : chunk
    },
    cancel() {
      stopListening()
      return cancel()
    },
  }
}

/** scheme://host the caller used: the Host header when it is a valid host, else the scheme alone with localhost. */
function originOf(incoming: Incoming): string {
  const host = incoming.header('host')
  if (host !== undefined) {
    try {
      return new URL(`${incoming.scheme}://${host}`).origin
    } catch {
      // Not a host: the fallback below.
    }
  }
  return `${incoming.scheme}://localhost`
}
