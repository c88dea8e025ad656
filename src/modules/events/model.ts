/**
 * The one event model: what happened to a job, worker, workspace or mailbox,
 * with its id (given by the retained log), time, tenant and resource. Every
 * event is emitted where its transition is made (the services), and read by
 * GET /events and the webhooks.
 */
import * as v from 'valibot'
import { BadRequestError } from '../../errors'

export const EVENT_TYPES = [
  'job.created',
  'job.pending',
  'job.assigned',
  'job.running',
  'job.completed',
  'job.failed',
  'job.cancelled',
  'job.expired',
  'worker.registered',
  'worker.lost',
  'worker.drained',
  'workspace.registered',
  'workspace.online',
  'workspace.offline',
  'workspace.removed',
  'mailbox.created',
  'mailbox.terminated',
] as const

export type EventType = (typeof EVENT_TYPES)[number]

export type ResourceKind = 'job' | 'worker' | 'workspace' | 'mailbox'

/** An event as a service emits it; the log gives it its id. */
export interface NewEvent {
  type: EventType
  /** The tokens-file client the job, worker or mailbox belongs to; for a workspace, the root of its tree. */
  tenant: string
  resource: { kind: ResourceKind; id: string }
  /** Workspace events: the workspace and its ancestors, nearest first (who may see it). */
  workspaces?: string[]
  /** What changed, by type (a job's state and reason, a worker's agent name, ...). */
  data: Record<string, unknown>
}

/** Where services hand their events; never throws, never waits. */
export type EmitEvent = (event: NewEvent) => void

/**
 * Who reads events: a tokens-file client sees its own jobs, workers and
 * mailboxes; the operator (admin token) sees every workspace; a workspace
 * sees itself and its descendants.
 */
export type Viewer = { kind: 'client'; id: string } | { kind: 'admin' } | { kind: 'workspace'; id: string }

/** A viewer as one string: the tenant a webhook subscription belongs to. */
export function viewerKey(viewer: Viewer): string {
  return viewer.kind === 'admin' ? 'admin' : `${viewer.kind}:${viewer.id}`
}

/** The viewer keys that may see an event. */
export function audienceOf(event: Pick<NewEvent, 'tenant' | 'resource' | 'workspaces'>): string[] {
  if (event.resource.kind !== 'workspace') return [`client:${event.tenant}`]
  return ['admin', ...(event.workspaces ?? [event.resource.id]).map((id) => `workspace:${id}`)]
}

const EventTypeSchema = v.pipe(v.picklist(EVENT_TYPES), v.description('The event type.'))

/** An event as GET /events and the webhooks send it. */
export const EventSchema = v.pipe(
  v.object({
    id: v.pipe(v.string(), v.description('Its id in the retained log: send it back as Last-Event-ID; the same id on a redelivered webhook (dedupe on it).')),
    type: EventTypeSchema,
    time: v.pipe(v.string(), v.description('When it happened (RFC 3339, UTC).')),
    tenant: v.pipe(v.string(), v.description('The tokens-file client the resource belongs to; for a workspace, the root of its tree.')),
    resource: v.object({ kind: v.picklist(['job', 'worker', 'workspace', 'mailbox']), id: v.string() }),
    workspaces: v.optional(v.pipe(v.array(v.string()), v.description('Workspace events: the workspace and its ancestors, nearest first.'))),
    data: v.pipe(v.record(v.string(), v.unknown()), v.description('What changed: a job\'s state, agent name, room and reason; a worker\'s agent name; a workspace\'s name and URL; a mailbox\'s id.')),
  }),
  v.metadata({
    examples: [
      {
        id: '42',
        type: 'job.assigned',
        time: '2026-01-05T10:00:00.000Z',
        tenant: 'acme',
        resource: { kind: 'job', id: '3f1c2a9e-8d2b-4c51-9a1e-2b7d6c0e4f11' },
        data: { state: 'assigned', agent_name: 'support-agent', room_id: 'room-1', worker_id: 'w-1' },
      },
    ],
  }),
)

/** The first event of a resumed stream whose Last-Event-ID is older than the retained log. */
export const MissedSchema = v.object({
  last_event_id: v.string(),
  message: v.string(),
})

const TYPES_TEXT = EVENT_TYPES.join(', ')

export const EventsQuery = v.object({
  types: v.optional(
    v.pipe(
      v.string(),
      v.maxLength(1000),
      v.description(`Comma-separated event types to receive (default: all): ${TYPES_TEXT}; \`job.*\` takes every type of a kind.`),
      v.metadata({ examples: ['job.completed,job.failed'] }),
    ),
  ),
  resource: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(256), v.description('Only events of this resource id (a job, worker, workspace or mailbox id).'))),
  timeout: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\d{1,7}(\.\d{1,3})?$/, 'timeout must be a number of seconds'),
      v.transform(Number),
      v.description('Seconds after which the stream ends (default: it stays open until the reader leaves); resume with Last-Event-ID.'),
    ),
  ),
})

/** The types a `types` parameter names: null for all; throws naming an unknown one. */
export function parseTypes(raw: string | undefined): Set<EventType> | null {
  if (raw === undefined || raw.trim() === '') return null
  const wanted = new Set<EventType>()
  for (const item of raw.split(',').map((part) => part.trim()).filter((part) => part !== '')) {
    const matching = item.endsWith('.*') ? EVENT_TYPES.filter((type) => type.startsWith(item.slice(0, -1))) : EVENT_TYPES.filter((type) => type === item)
    if (matching.length === 0) throw new BadRequestError(`unknown event type "${item.slice(0, 60)}" (known: ${TYPES_TEXT})`)
    for (const type of matching) wanted.add(type)
  }
  return wanted
}

const Secret = v.pipe(v.string(), v.minLength(16), v.maxLength(256), v.description('The signing secret (16 to 256 characters); generated and answered once when left out.'))

export const CreateWebhookBody = v.pipe(
  v.object({
    url: v.pipe(v.string(), v.minLength(1), v.maxLength(2048), v.description('Where deliveries are POSTed: http or https; held to the same rules as agent URLs (no private ranges unless allow_private_agent_urls).')),
    types: v.optional(v.pipe(v.array(v.pipe(v.string(), v.maxLength(64))), v.maxLength(EVENT_TYPES.length), v.description('Event types delivered (default: all); `job.*` takes every type of a kind.'))),
    secret: v.optional(Secret),
  }),
  v.metadata({ examples: [{ url: 'https://hooks.example.com/switchboard', types: ['job.completed', 'job.failed'] }] }),
)

export const WebhookSchema = v.object({
  id: v.string(),
  url: v.string(),
  types: v.array(v.string()),
  created_at: v.string(),
  secret: v.optional(v.pipe(v.string(), v.description('Only in the answer to its creation.'))),
})

export const DeadLetterSchema = v.object({
  id: v.pipe(v.string(), v.description('The delivery id.')),
  event_id: v.string(),
  attempts: v.number(),
  last_error: v.nullable(v.string()),
  dead_at: v.string(),
  event: v.pipe(v.unknown(), v.description('The event that was not delivered.')),
})

export const WebhookParams = v.object({ id: v.pipe(v.string(), v.uuid('webhook id must be a UUID')) })
export const DeadLetterParams = v.object({
  id: v.pipe(v.string(), v.uuid('webhook id must be a UUID')),
  delivery_id: v.pipe(v.string(), v.uuid('delivery id must be a UUID')),
})
