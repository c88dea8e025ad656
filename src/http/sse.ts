/** The event-stream wire format shared by every SSE route (mailbox listen streams, GET /events). */

/** Headers of every event stream: not cached, not buffered by a proxy in front. */
export const EVENT_STREAM = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' }

/**
 * One SSE event carrying `data`. JSON may hold raw line breaks between
 * tokens; each line gets its own `data:` field, so a line break can neither
 * end the event early nor start a field of its own (the client joins the
 * lines back with \n, which JSON reads as the same whitespace).
 */
export function sseEvent(id: number | string | null, data: string, event?: string): string {
  const head = `${id === null ? '' : `id: ${id}\r\n`}${event === undefined ? '' : `event: ${event}\r\n`}`
  return `${head}${data
    .split(/\r\n|\r|\n/)
    .map((line) => `data: ${line}`)
    .join('\r\n')}\r\n\r\n`
}
