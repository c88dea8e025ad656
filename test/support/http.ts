/**
 * HTTP helpers for tests. `fetch` refuses bodies on GET, so requests that
 * carry one (as Academy's client does) go through node:http here.
 */
import http from 'node:http'

export interface RawResponse {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
  /** The body as it came on the wire (not decoded, not decompressed). */
  bytes: Buffer
}

/**
 * Sends one request with any method and an optional body; resolves with the
 * full response. `path`, when given, is sent as written (a URL would have its
 * dot segments resolved first).
 */
export function rawRequest(url: string, options: { method?: string; body?: string | Buffer; headers?: Record<string, string>; path?: string } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : Buffer.from(options.body)
    const request = http.request(
      url,
      {
        ...(options.path === undefined ? {} : { path: options.path }),
        method: options.method ?? 'GET',
        headers: { ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}), ...options.headers },
      },
      (response) => {
        const chunks: Buffer[] = []
        response.on('data', (chunk: Buffer) => chunks.push(chunk))
        response.on('end', () => {
          const bytes = Buffer.concat(chunks)
          resolve({ status: response.statusCode ?? 0, headers: response.headers, text: bytes.toString(), bytes })
        })
        response.on('error', reject)
      },
    )
    request.on('error', reject)
    request.end(body)
  })
}

/** An open event stream: read events as they come, or close it from the client side. */
export interface EventStream {
  status: number
  headers: http.IncomingHttpHeaders
  /** Raw text received so far. */
  received(): string
  /** Resolves once the received text contains `needle` (or rejects after `timeoutMs`). */
  waitFor(needle: string | RegExp, timeoutMs?: number): Promise<string>
  /** Resolves when the server ends the stream. */
  ended: Promise<void>
  /** Drop the connection from the client side. */
  close(): void
}

/** Opens a streaming request (SSE) with an optional body, as Academy's listener does. */
export function openStream(url: string, options: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : Buffer.from(options.body)
    const request = http.request(url, {
      method: options.method ?? 'GET',
      headers: { accept: 'text/event-stream', ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}), ...options.headers },
    })
    request.on('error', reject)
    request.on('response', (response) => {
      let text = ''
      const listeners = new Set<() => void>()
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        text += chunk
        for (const listener of [...listeners]) listener()
      })
      const ended = new Promise<void>((done) => {
        response.on('end', () => done())
        response.on('close', () => done())
      })
      resolve({
        status: response.statusCode ?? 0,
        headers: response.headers,
        received: () => text,
        ended,
        close: () => {
          request.destroy()
          response.destroy()
        },
        waitFor(needle, timeoutMs = 5000) {
          const found = () => (typeof needle === 'string' ? text.includes(needle) : needle.test(text))
          if (found()) return Promise.resolve(text)
          return new Promise((done, fail) => {
            const timer = setTimeout(() => {
              listeners.delete(check)
              fail(new Error(`stream did not contain ${needle} within ${timeoutMs} ms; got: ${text.slice(-500)}`))
            }, timeoutMs)
            const check = () => {
              if (!found()) return
              clearTimeout(timer)
              listeners.delete(check)
              done(text)
            }
            listeners.add(check)
          })
        },
      })
    })
    request.end(body)
  })
}

export interface SseEvent {
  id: number | null
  data: string
  /** The `id:` field as sent (event-log ids may be `<ms>-<seq>`), or null. */
  idText: string | null
  /** The `event:` field, or null. */
  event: string | null
}

/** The complete SSE events in `text` as Switchboard writes them (CRLF), each with its id (as an integer, and as sent) and event name. */
export function sseEvents(text: string): SseEvent[] {
  const events: SseEvent[] = []
  for (const block of text.split('\r\n\r\n').slice(0, -1)) {
    const lines = block.split('\r\n')
    const data = lines.filter((line) => line.startsWith('data: ')).map((line) => line.slice(6))
    if (data.length === 0) continue
    const id = lines.find((line) => line.startsWith('id: '))
    const event = lines.find((line) => line.startsWith('event: '))
    events.push({ id: id === undefined ? null : Number(id.slice(4)), data: data.join('\n'), idText: id === undefined ? null : id.slice(4), event: event === undefined ? null : event.slice(7) })
  }
  return events
}

/** The `data:` payloads of SSE text, one per event (multi-line data joined with \n, as Academy's client does). */
export function sseData(text: string): string[] {
  const events: string[] = []
  for (const block of text.split(/\r?\n\r?\n/)) {
    const lines = block.split(/\r?\n/).filter((line) => line.startsWith('data:'))
    if (lines.length > 0) events.push(lines.map((line) => line.slice(5).replace(/^ /, '')).join('\n'))
  }
  return events
}

export interface ListenOptions {
  headers?: Record<string, string>
  /** The loopback address to send from (the bench spreads callers over several). */
  localAddress?: string
  /** How long to wait, in ms (default 20 s). */
  timeoutMs?: number
}

const listenRequest = (url: string, body: string, options: ListenOptions) =>
  http.request(url, {
    method: 'GET',
    localAddress: options.localAddress,
    headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...options.headers },
  })

/** A listen stream (`url` is the full /mailbox/listen URL) that reads until it holds `readAtLeast` events, then stops reading; `reset` drops its connection. */
export function stallingListener(url: string, body: string, readAtLeast: number, options: ListenOptions = {}) {
  let text = ''
  let request!: http.ClientRequest
  const stalled = new Promise<void>((resolve, reject) => {
    request = listenRequest(url, body, options)
    request.on('error', () => {})
    request.on('response', (response) => {
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        text += chunk
        if (sseEvents(text).length >= readAtLeast) {
          response.pause()
          resolve()
        }
      })
      response.on('error', () => {})
    })
    setTimeout(() => reject(new Error(`fewer than ${readAtLeast} events arrived`)), options.timeoutMs ?? 20_000).unref()
    request.end(body)
  })
  stalled.catch(() => {})
  return {
    stalled,
    /** The events it read before stalling (all it ever processes). */
    processed: () => sseEvents(text),
    reset: () => request.destroy(),
  }
}

/** Reads a listen stream until `count` events arrived, it ended, or the timeout passed (then what arrived). */
export function readEvents(url: string, body: string, count: number, options: ListenOptions = {}): Promise<SseEvent[]> {
  return new Promise((resolve, reject) => {
    let text = ''
    const request = listenRequest(url, body, options)
    const done = () => {
      clearTimeout(timer)
      resolve(sseEvents(text))
    }
    const timer = setTimeout(() => {
      request.destroy()
      done()
    }, options.timeoutMs ?? 20_000)
    request.on('error', reject)
    request.on('response', (response) => {
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        text += chunk
        if (sseEvents(text).length >= count) {
          request.destroy()
          done()
        }
      })
      response.on('end', done)
    })
    request.end(body)
  })
}
