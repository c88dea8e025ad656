/**
 * Events, without HTTP: services emit them here; each is appended to the
 * backend's retained log (which hands it to every instance in id order), then
 * fanned out to the event streams open on this instance and queued for the
 * webhooks that want it.
 */
import { compareEventIds, type EventLogStore, type LoggedEvent } from '../../backend/journal'
import type { Chunks } from '../../http/reply'
import { sseEvent } from '../../http/sse'
import type { Logger } from '../../ops/logger'
import { audienceOf, viewerKey, type EventType, type NewEvent, type Viewer } from './model'

export interface EventServiceOptions {
  /** Seconds between keep-alive comments on an idle stream. */
  pingSeconds: number
  /** Events waiting to be written to one stream; past it the stream ends (its reader resumes with Last-Event-ID). */
  streamBuffer: number
  /** Most events a resumed stream reads from the log (the log holds no more). */
  retained: number
}

/** What a stream wants: types (null: all) and one resource id (null: any). */
export interface EventFilter {
  types: ReadonlySet<EventType> | null
  resource: string | null
}

/** A stream's own bounds: when it ends (epoch ms; null: when its reader leaves). */
export interface StreamOptions {
  endsAt: number | null
}

/** An event as this instance heard it: parsed once, its SSE frame written once for every stream. */
export interface HeardEvent {
  id: string
  type: EventType
  resourceId: string
  audience: string[]
  /** The event's JSON as sent, its id first. */
  json: string
  frame: string
}

/** Events read from the log at a time when a stream resumes. */
const PAGE = 500

/** The event's JSON as sent: the stored body with its id put first. */
const withId = (event: LoggedEvent): string => `{"id":${JSON.stringify(event.id)},${event.body.slice(1)}`

/** An event read from the log, or (`parsed`) one this instance has just appended, which needs no parsing. */
function heard(event: LoggedEvent, parsed = JSON.parse(event.body) as NewEvent): HeardEvent {
  const json = withId(event)
  return { id: event.id, type: parsed.type, resourceId: parsed.resource.id, audience: audienceOf(parsed), json, frame: sseEvent(event.id, json, parsed.type) }
}

export class EventService {
  private readonly streams = new Set<EventStream>()
  private readonly subscription: Promise<() => void>
  private readonly background = new Set<Promise<unknown>>()
  /** Told of every event appended here (webhooks queue their deliveries). */
  private readonly appended: ((event: HeardEvent) => Promise<void>)[] = []

  constructor(
    private readonly log: EventLogStore,
    private readonly options: EventServiceOptions,
    private readonly logger: Logger,
  ) {
    this.subscription = log.subscribe((event) => this.hear(event))
    this.subscription.catch((error) => logger.error('events: cannot subscribe to the event log', { error: String(error) }))
  }

  /** Appends an event in the background; a failure is logged, never the emitter's. */
  readonly emit = (event: NewEvent): void => {
    const body = JSON.stringify({ type: event.type, time: new Date().toISOString(), tenant: event.tenant, resource: event.resource, ...(event.workspaces ? { workspaces: event.workspaces } : {}), data: event.data })
    this.track(
      this.log.append(body).then(async (id) => {
        const appended = heard({ id, body }, event)
        for (const listener of this.appended) await listener(appended)
      }),
    )
  }

  /** Calls `listener` with each event appended on this instance (once per event across instances). */
  onAppended(listener: (event: HeardEvent) => Promise<void>): void {
    this.appended.push(listener)
  }

  /** A stream of the events `viewer` may see that pass `filter`, after `lastEventId` when given. */
  async open(viewer: Viewer, filter: EventFilter, lastEventId: string | null, bounds: StreamOptions, onClose: () => void): Promise<EventStream> {
    await this.subscription
    const stream = new EventStream(this, viewerKey(viewer), filter, this.options, bounds.endsAt, onClose)
    this.streams.add(stream)
    if (lastEventId !== null) await stream.replay(this.log, lastEventId)
    stream.goLive()
    return stream
  }

  /** A stream that ended is no longer fed. */
  closed(stream: EventStream): void {
    this.streams.delete(stream)
  }

  /** Ends every stream and stops listening. */
  async stop(): Promise<void> {
    for (const stream of [...this.streams]) await stream.cancel()
    await Promise.allSettled([...this.background])
    ;(await this.subscription.catch(() => null))?.()
  }

  private hear(event: LoggedEvent): void {
    if (this.streams.size === 0) return
    let parsed: HeardEvent
    try {
      parsed = heard(event)
    } catch (error) {
      this.logger.error('events: unreadable event in the log', { id: event.id, error: String(error) })
      return
    }
    for (const stream of this.streams) stream.offer(parsed)
  }

  private track(work: Promise<unknown>): void {
    const tracked = work.catch((error) => this.logger.error('events: could not record an event', { error: String(error) })).finally(() => this.background.delete(tracked))
    this.background.add(tracked)
  }
}

/** Whether an event passes a filter and the viewer may see it. */
export function wanted(event: HeardEvent, viewer: string, filter: EventFilter): boolean {
  return (filter.types === null || filter.types.has(event.type)) && (filter.resource === null || filter.resource === event.resourceId) && event.audience.includes(viewer)
}

/**
 * One GET /events stream: the events replayed from the log after the
 * reader's Last-Event-ID, then the live ones, each once, in id order. A
 * class, not closures: one lives per reader, and thousands read at once.
 */
export class EventStream implements Chunks {
  private readonly queue: string[] = []
  /** Live events heard while the log was being replayed, sent after it if newer. */
  private early: HeardEvent[] | null = []
  private last: string | null = null
  private wake: (() => void) | null = null
  private started = false
  private open = true
  private overflowed = false

  constructor(
    private readonly service: EventService,
    private readonly viewer: string,
    private readonly filter: EventFilter,
    private readonly options: EventServiceOptions,
    private readonly endsAt: number | null,
    private readonly onClose: () => void,
  ) {}

  /** Queues what the log holds after `lastEventId`; says so first when some of it was already dropped. */
  async replay(log: EventLogStore, lastEventId: string): Promise<void> {
    this.last = lastEventId
    for (let read = 0; read < this.options.retained; ) {
      const page = await log.read(this.last, PAGE)
      if (read === 0 && page.missed) {
        const message = `events after ${lastEventId} were dropped from the retained log (events_retained, events_retained_kb): some are missing from this stream`
        this.queue.push(sseEvent(null, JSON.stringify({ last_event_id: lastEventId, message }), 'events.missed'))
      }
      for (const event of page.events) {
        this.last = event.id
        const parsed = heard(event)
        if (wanted(parsed, this.viewer, this.filter)) this.queue.push(parsed.frame)
      }
      read += page.events.length
      if (page.events.length < PAGE) break
    }
  }

  /** From now on events are queued as they are heard; those heard during the replay go first, if newer. */
  goLive(): void {
    const early = this.early ?? []
    this.early = null
    for (const event of early) this.offer(event)
  }

  /** Queues an event heard live (once, in id order). */
  offer(event: HeardEvent): void {
    if (!this.open) return
    if (this.early !== null) {
      this.early.push(event)
      return
    }
    if (this.last !== null && compareEventIds(event.id, this.last) <= 0) return
    this.last = event.id
    if (!wanted(event, this.viewer, this.filter)) return
    if (this.queue.length >= this.options.streamBuffer) {
      this.overflowed = true
    } else {
      this.queue.push(event.frame)
    }
    this.wake?.()
  }

  async next(): Promise<string | null> {
    if (!this.started) {
      this.started = true
      return 'retry: 1000\r\n\r\n'
    }
    for (;;) {
      if (!this.open) return null
      const chunk = this.queue.shift()
      if (chunk !== undefined) return chunk
      if (this.overflowed) {
        this.finish()
        return sseEvent(null, JSON.stringify({ message: `this reader fell ${this.options.streamBuffer} events behind (event_stream_buffer); reconnect with Last-Event-ID to resume` }), 'events.overflow')
      }
      const left = this.endsAt === null ? Infinity : this.endsAt - Date.now()
      if (left <= 0) {
        this.finish()
        return null
      }
      const pinged = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(true), Math.min(this.options.pingSeconds * 1000, left))
        this.wake = () => {
          clearTimeout(timer)
          resolve(false)
        }
      })
      this.wake = null
      if (pinged && this.queue.length === 0 && this.open && (this.endsAt === null || Date.now() < this.endsAt)) return ': ping\r\n\r\n'
    }
  }

  async cancel(): Promise<void> {
    this.finish()
    this.wake?.()
  }

  private finish(): void {
    if (!this.open) return
    this.open = false
    this.service.closed(this)
    this.onClose()
  }
}
