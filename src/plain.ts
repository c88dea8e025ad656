/**
 * Plain routes: a route written as a function of the request's headers and
 * body text that answers a status, headers and a body (or, for a stream, a
 * web Response). The serving layer calls it straight from node:http, with no
 * web Request built, no router run and no web Response read back: for a
 * small exchange call that bridge costs more than the call's own work.
 * `app.handle` reaches the same function through the Elysia route that wraps
 * it (`plainHandler`) and documents it, so both ways in answer alike.
 *
 * A plain route skips the app's global hooks, so the app offers its plain
 * routes to the serving layer only when it has none (rate limiting off).
 */
import { BadRequestError } from './errors'
import { callerSignal, remoteAddressOf } from './served'

export interface PlainRequest {
  /** A request header by its lower-case name (repeated ones joined with ", "). */
  header(name: string): string | undefined
  /** The route template's path parameters (`/workspaces/:id/a2a` → `params.id`); null where not valid percent-encoded UTF-8, as Elysia hands it over. */
  readonly params: Readonly<Record<string, string | null>>
  /** The body as sent (empty when there is none). */
  readonly bytes: Uint8Array
  /** The body as UTF-8 text, decoded as Request.text() does (a leading byte order mark kept). */
  readonly body: string
  /** Aborted when the caller goes away or shutdown ends the request; read it only to wait. */
  readonly signal: AbortSignal
  readonly remoteAddress: string | undefined
}

export interface PlainReply {
  status: number
  /** Header names in lower case. */
  headers?: Record<string, string>
  body?: string | Uint8Array<ArrayBuffer>
}

export type PlainRoute = (request: PlainRequest) => Promise<PlainReply | Response>

/** Plain routes by `METHOD /route/template`, as the app's route list names them. */
export type PlainRoutes = Map<string, PlainRoute>

const utf8 = new TextDecoder('utf-8', { ignoreBOM: true })

/** Decodes a body as Request.text() does. */
export const bodyText = (bytes: Uint8Array): string => (bytes.length === 0 ? '' : utf8.decode(bytes))

/** The values of a template's `:name` segments in a path that matched it, percent-decoded (null when not valid). */
export function paramsOf(template: string, path: string): Record<string, string | null> {
  const params: Record<string, string | null> = {}
  if (!template.includes(':')) return params
  const names = template.split('/')
  const values = path.split('/')
  names.forEach((name, index) => {
    if (!name.startsWith(':')) return
    try {
      params[name.slice(1)] = decodeURIComponent(values[index] ?? '')
    } catch {
      params[name.slice(1)] = null
    }
  })
  return params
}

/** The content type Elysia gives a returned object, which plain replies use as well. */
export const JSON_TYPE = 'application/json;charset=utf-8'

/** A 200 with a JSON body. */
export const jsonReply = (value: unknown): PlainReply => ({ status: 200, headers: { 'content-type': JSON_TYPE }, body: JSON.stringify(value) })

/** A reply as a web Response (for `app.handle`). */
export function toResponse(reply: PlainReply | Response): Response {
  if (reply instanceof Response) return reply
  return new Response(reply.body ?? null, { status: reply.status, headers: reply.headers })
}

/** Wraps a plain route as an Elysia handler: the same function answers in-process requests. */
export function plainHandler(route: PlainRoute) {
  return async ({ request, params }: { request: Request; params?: Record<string, string | null> }): Promise<Response> => {
    let bytes: Uint8Array
    try {
      bytes = await request.bytes()
    } catch {
      throw new BadRequestError('request body could not be read')
    }
    let text: string | null = null
    return toResponse(
      await route({
        header: (name) => request.headers.get(name) ?? undefined,
        params: params ?? {},
        bytes,
        get body() {
          text ??= bodyText(bytes)
          return text
        },
        get signal() {
          return callerSignal(request)
        },
        remoteAddress: remoteAddressOf(request),
      }),
    )
  }
}
