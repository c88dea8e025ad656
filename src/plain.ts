/**
 * Plain routes: a route written as a function of the request's headers, path
 * parameters and body that answers a status, headers and a body: whole, as a
 * `PlainStream` written chunk by chunk (an event stream), or as a web
 * Response (an agent's answer relayed as it comes). The serving layer calls
 * it straight from node:http, with no web Request built, no router run and
 * no web Response read back: for an exchange call or a proxied A2A call that
 * bridge costs a large share of the call. `app.handle` reaches the same
 * function through the Elysia route that wraps it (`plainHandler`) and
 * documents it, so both ways in answer alike.
 *
 * A plain route skips the app's global hooks, so the app offers its plain
 * routes to the serving layer only when it has none (rate limiting off).
 */
import { BadRequestError } from './errors'
import { servedOf, type GoneReason, type ServedRequest } from './served'

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
  /** Calls `listener` once, with the reason, when the caller goes away or shutdown ends the request; cheaper than `signal`. Returns the function that stops listening. */
  onGone(listener: (reason: GoneReason) => void): () => void
  readonly remoteAddress: string | undefined
}

export interface PlainReply {
  status: number
  /** Header names in lower case. */
  headers?: Record<string, string>
  body?: string | Uint8Array<ArrayBuffer>
  /** A body written chunk by chunk as it comes (an event stream); `body` is then not read. */
  stream?: PlainStream
}

/**
 * A body a plain route writes as it comes: the serving layer asks for a
 * chunk, writes it straight to the socket, and asks for the next only once
 * that write went through, so a stream knows what reached its caller.
 */
export interface PlainStream {
  /** The next chunk, or null when the stream ends. */
  next(): Promise<string | null>
  /**
   * The caller went away, shutdown ended the stream, or a chunk could not
   * be written. A pending `next` must then settle; what it yields is not
   * written, so the stream keeps anything it took for that chunk.
   */
  cancel(): Promise<void>
}

export type PlainRoute = (request: PlainRequest) => Promise<PlainReply | Response>

/** Plain routes by `METHOD /route/template`, as the app's route list names them. */
export type PlainRoutes = Map<string, PlainRoute>

const utf8 = new TextDecoder('utf-8', { ignoreBOM: true })

/** A request as a plain route sees it, over what the caller sent and what serving it knows (signal, address); the body is decoded once, when read. */
export class ReceivedRequest implements PlainRequest {
  private text: string | null = null

  constructor(
    readonly header: (name: string) => string | undefined,
    readonly params: Readonly<Record<string, string | null>>,
    readonly bytes: Uint8Array,
    private readonly served: ServedRequest,
  ) {}

  get body(): string {
    // Decoded as Request.text() does: UTF-8, a leading byte order mark kept.
    this.text ??= this.bytes.length === 0 ? '' : utf8.decode(this.bytes)
    return this.text
  }

  get signal(): AbortSignal {
    return this.served.signal
  }

  onGone(listener: (reason: GoneReason) => void): () => void {
    return this.served.onGone(listener)
  }

  get remoteAddress(): string | undefined {
    return this.served.remoteAddress
  }
}

const NO_PARAMS: Readonly<Record<string, string | null>> = Object.freeze({})

/** The values of a template's `:name` segments in a path that matched it, percent-decoded (null when not valid). */
export function paramsOf(template: string, path: string): Readonly<Record<string, string | null>> {
  if (!template.includes(':')) return NO_PARAMS
  const params: Record<string, string | null> = {}
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

const utf8Encoder = new TextEncoder()

/** A plain stream as a web stream: pulled one chunk at a time, so a chunk is asked for once the one before was read. */
function webStream(stream: PlainStream): ReadableStream<Uint8Array> {
  let cancelled = false
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const chunk = await stream.next()
        if (cancelled) return
        if (chunk === null) controller.close()
        else controller.enqueue(utf8Encoder.encode(chunk))
      },
      cancel() {
        cancelled = true
        return stream.cancel()
      },
    },
    { highWaterMark: 0 },
  )
}

/** A reply as a web Response (for `app.handle`). */
export function toResponse(reply: PlainReply | Response): Response {
  if (reply instanceof Response) return reply
  return new Response(reply.stream ? webStream(reply.stream) : (reply.body ?? null), { status: reply.status, headers: reply.headers })
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
    return toResponse(await route(new ReceivedRequest((name) => request.headers.get(name) ?? undefined, params ?? NO_PARAMS, bytes, servedOf(request))))
  }
}
