/**
 * What a route answers: a status, headers and a body, whole or as a stream
 * written chunk by chunk. Both adapters write the same Reply: node:http
 * straight to the socket, the Elysia adapter as a web Response.
 */

/**
 * A body written as it comes: the adapter asks for a chunk, writes it, and
 * asks for the next only once that write went through, so a stream knows
 * what reached its caller.
 */
export interface Chunks {
  /** The next chunk, or null when the stream ends. */
  next(): Promise<string | Uint8Array | null>
  /**
   * The caller went away, shutdown ended the stream, or a chunk could not be
   * written. A pending `next` must then settle; what it yields is not
   * written, so the stream keeps anything it took for that chunk.
   */
  cancel(): Promise<void>
}

export interface Reply {
  status: number
  /** Header names in lower case. */
  headers?: Record<string, string>
  body?: string | Uint8Array
  /** A body written chunk by chunk (an event stream); `body` is then not read. */
  stream?: Chunks
}

/** The content type of every JSON answer. */
export const JSON_TYPE = 'application/json;charset=utf-8'

/** A JSON answer. */
export const json = (value: unknown, status = 200): Reply => ({ status, headers: { 'content-type': JSON_TYPE }, body: JSON.stringify(value) })

/** An answer with no body. */
export const empty = (status = 200): Reply => ({ status })

/** A web stream's chunks, read one at a time. */
export function webChunks(body: ReadableStream<Uint8Array>): Chunks {
  const reader = body.getReader()
  return {
    next: async () => {
      const { done, value } = await reader.read()
      return done ? null : value
    },
    cancel: () => reader.cancel().catch(() => {}),
  }
}

const encoder = new TextEncoder()

/** A reply as a web Response; a stream is pulled one chunk at a time, so a chunk is asked for once the one before was read. */
export function toResponse(reply: Reply): Response {
  if (!reply.stream) return new Response((reply.body ?? null) as BodyInit | null, { status: reply.status, headers: reply.headers })
  const stream = reply.stream
  let cancelled = false
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const chunk = await stream.next()
        if (cancelled) return
        if (chunk === null) controller.close()
        else controller.enqueue(typeof chunk === 'string' ? encoder.encode(chunk) : chunk)
      },
      cancel() {
        cancelled = true
        return stream.cancel()
      },
    },
    { highWaterMark: 0 },
  )
  return new Response(body, { status: reply.status, headers: reply.headers })
}
