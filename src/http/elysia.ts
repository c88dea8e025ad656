/**
 * The Elysia adapter: Switchboard as an Elysia app, for `app.handle` (tests,
 * hosts that embed it in their own Bun process). Every route of the table is
 * registered under its own method and path, so a host sees them, and each
 * hands the web Request to the same pipeline the node:http adapter uses; so
 * does a request that matches none (the pipeline answers it natively).
 */
import { Elysia } from 'elysia'
import type { SwitchboardRuntime } from './runtime'
import { observeRequests, requestIdOf } from '../ops/observability'
import { routeLabel, type Incoming } from './pipeline'
import { toResponse } from './reply'
import { InFlight } from './served'
import { BadRequestError, RequestTimeoutError } from '../errors'

/**
 * Reads a web Request's body as the node:http adapter reads a socket's: null once it is over `limit` bytes (reading
 * stops there, so a host's request is never held whole first), and a 408 when it has not arrived whole within
 * `timeoutMs` (0: no deadline).
 */
async function boundedBody(request: Request, limit: number, timeoutMs: number): Promise<Uint8Array | null> {
  if (request.body === null) return new Uint8Array(0)
  const reader = request.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  let timedOut = false
  const deadline = timeoutMs > 0 ? setTimeout(() => ((timedOut = true), void reader.cancel()), timeoutMs) : undefined
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (timedOut) throw new RequestTimeoutError(`request body did not arrive whole within ${timeoutMs / 1000} s (request_body_timeout_s)`)
      if (done) break
      size += value.length
      if (size > limit) {
        void reader.cancel()
        return null
      }
      chunks.push(value)
    }
  } catch (error) {
    if (timedOut) throw new RequestTimeoutError(`request body did not arrive whole within ${timeoutMs / 1000} s (request_body_timeout_s)`)
    if (error instanceof RequestTimeoutError) throw error
    throw new BadRequestError('request body could not be read')
  } finally {
    clearTimeout(deadline)
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
}

/** A web Request as the pipeline reads it. */
function incomingOf(request: Request, bodyTimeoutMs: number): Incoming {
  const url = new URL(request.url)
  let read: Promise<Uint8Array | null> | null = null
  return {
    method: request.method,
    path: url.pathname,
    search: url.search.slice(1),
    header: (name) => request.headers.get(name) ?? undefined,
    body(limit) {
      read ??= boundedBody(request, limit, bodyTimeoutMs)
      return read
    },
    served: InFlight.of(request, requestIdOf(request.headers.get('x-request-id') ?? undefined)),
    scheme: url.protocol === 'https:' ? 'https' : 'http',
  }
}

/**
 * A route's path as Elysia's router can hold it. That router reads every
 * colon as the start of a parameter and takes no literal text after one, so
 * A2A's `message:send` and `tasks/:taskId:cancel` become `message:action`
 * and `tasks/:taskId`: routes that then share a path are told apart by the
 * pipeline, which every request reaches whatever Elysia matched.
 */
export function elysiaPath(path: string): string {
  return path
    .split('/')
    .map((segment) => {
      if (segment.startsWith(':')) return /^:[A-Za-z_][A-Za-z0-9_]*/.exec(segment)![0]
      const colon = segment.indexOf(':')
      return colon === -1 ? segment : `${segment.slice(0, colon)}:action`
    })
    .join('/')
}

export function elysiaApp(runtime: SwitchboardRuntime) {
  const observer = observeRequests(runtime)
  const handle = async ({ request }: { request: Request }): Promise<Response> => {
    const startedAt = performance.now()
    const incoming = incomingOf(request, runtime.config.request_body_timeout_s * 1000)
    const matched = runtime.pipeline.match(incoming.method, incoming.path)
    const reply = await runtime.pipeline.handle(incoming, matched)
    observer.finish({
      method: incoming.method,
      route: routeLabel(matched),
      status: reply.status,
      startedAt,
      requestId: incoming.served.requestId,
      authorization: incoming.header('authorization'),
      traceparent: reply.headers?.traceparent,
    })
    return toResponse(reply)
  }
  const app = new Elysia({ name: 'switchboard' }).decorate('switchboard', runtime)
  // Several routes may share one Elysia path (elysiaPath): each is registered once, and the pipeline's own match tells them apart.
  const registered = new Set<string>()
  for (const definition of runtime.pipeline.routes) {
    const path = elysiaPath(definition.path)
    if (registered.has(`${definition.method} ${path}`)) continue
    registered.add(`${definition.method} ${path}`)
    app.route(definition.method, path, handle, { parse: 'none' } as never)
  }
  // A path no route matches, or a method a path does not take: the pipeline answers it (404, or a CORS preflight).
  return app.onError(({ code, request }) => (code === 'NOT_FOUND' ? handle({ request }) : undefined))
}
