/** Valibot schemas of the exchange: Academy's wire shapes. */
import * as v from 'valibot'
import type { EntityId } from '../../backend/mailboxes'
import { isCanonicalUuid, Uuid } from '../ids'

/** Academy's EntityId; unknown keys are refused, a missing role means agent. */
export const EntityIdSchema = v.strictObject({
  uid: Uuid,
  name: v.optional(v.nullable(v.string()), null),
  role: v.optional(v.picklist(['agent', 'user']), 'agent'),
})

export const HeaderSchema = v.object({
  src: EntityIdSchema,
  dest: EntityIdSchema,
  tag: Uuid,
  label: v.optional(v.nullable(Uuid), null),
  kind: v.picklist(['request', 'response']),
  protocol_version: v.optional(v.nullable(v.string())),
})

/**
 * Academy's Message as its server reads it: the header is validated (unknown
 * header fields ignored), the body may be any JSON value but must be there.
 * Switchboard never reads the body (it relays the sender's text), so peers on
 * a newer protocol can still reach older ones through it, as through Academy's.
 */
export const MessageSchema = v.object({
  header: HeaderSchema,
  body: v.unknown(),
})

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * An EntityId exactly as Academy writes it (lower-case uid, name and role
 * present, no other key), or null for anything else. For such a value
 * EntityIdSchema gives back the same fields, so callers try this first and
 * leave every other value (and its error message) to the schema: every
 * exchange call names mailboxes, and this check costs a fraction of the
 * schema's.
 */
export function canonicalEntityId(data: unknown): EntityId | null {
  if (!isObject(data)) return null
  const { uid, name, role } = data
  if (!isCanonicalUuid(uid) || (name !== null && typeof name !== 'string') || (role !== 'agent' && role !== 'user')) return null
  let keys = 0
  for (const _ in data) keys++
  return keys === 3 ? { uid, name, role } : null
}

/** The header MessageSchema would give a Message exactly as Academy writes it (see canonicalEntityId), or null for anything else. */
export function canonicalMessageHeader(data: unknown): v.InferOutput<typeof HeaderSchema> | null {
  if (!isObject(data) || !('body' in data) || !isObject(data.header)) return null
  const { src, dest, tag, label, kind, protocol_version } = data.header
  if (!isCanonicalUuid(tag) || (label !== null && !isCanonicalUuid(label)) || (kind !== 'request' && kind !== 'response')) return null
  if (protocol_version !== undefined && protocol_version !== null && typeof protocol_version !== 'string') return null
  const source = canonicalEntityId(src)
  const destination = source && canonicalEntityId(dest)
  if (!destination) return null
  return protocol_version === undefined ? { src: source, dest: destination, tag, label, kind } : { src: source, dest: destination, tag, label, kind, protocol_version }
}

const MailboxField = v.pipe(v.string(), v.description('JSON of an EntityId: {"uid": "<uuid>", "name": null, "role": "agent" | "user"}'))
const Timeout = v.pipe(v.nullable(v.number()), v.description('Seconds to wait, 0 < timeout <= listen_timeout (default: listen_timeout)'))

/*
 * Examples for the docs: an agent and a user as Academy encodes them, and a
 * message from the user to the agent. Try-it-out with these creates and
 * uses real mailboxes.
 */
const EXAMPLE_AGENT = '{"uid":"6f1c2a0e-3b4d-4e5f-8a9b-0c1d2e3f4a5b","name":null,"role":"agent"}'
const EXAMPLE_USER = '{"uid":"7a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d","name":null,"role":"user"}'
const EXAMPLE_MESSAGE = `{"header":{"src":${EXAMPLE_USER},"dest":${EXAMPLE_AGENT},"tag":"1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e","label":null,"kind":"request","protocol_version":"1"},"body":{"kind":"ping-request"}}`

export const CreateMailboxBody = v.pipe(
  v.object({
    mailbox: MailboxField,
    agent: v.optional(v.nullable(v.pipe(v.string(), v.description('Comma-joined MRO of the agent class, most derived first')))),
  }),
  v.examples([{ mailbox: EXAMPLE_AGENT, agent: 'example.Echo,academy.agent.Agent' }]),
)
export const MailboxBody = v.pipe(v.object({ mailbox: MailboxField }), v.examples([{ mailbox: EXAMPLE_AGENT }]))
export const SendBody = v.pipe(v.object({ message: v.pipe(v.string(), v.description('JSON of an Academy Message')) }), v.examples([{ message: EXAMPLE_MESSAGE }]))
export const ReceiveBody = v.pipe(v.object({ mailbox: MailboxField, timeout: v.optional(Timeout) }), v.examples([{ mailbox: EXAMPLE_AGENT, timeout: 5 }]))

/*
 * What SendBody, MailboxBody and ReceiveBody give for a body of the shape
 * Academy sends, or null for anything else, which the schema then reads: the
 * bodies of every send and receive, checked for a fraction of the schema's
 * cost (as canonicalEntityId is).
 */
export const quickSendBody = (data: unknown): v.InferOutput<typeof SendBody> | null => (isObject(data) && typeof data.message === 'string' ? { message: data.message } : null)
export const quickMailboxBody = (data: unknown): v.InferOutput<typeof MailboxBody> | null => (isObject(data) && typeof data.mailbox === 'string' ? { mailbox: data.mailbox } : null)
export function quickReceiveBody(data: unknown): v.InferOutput<typeof ReceiveBody> | null {
  if (!isObject(data) || typeof data.mailbox !== 'string') return null
  const { mailbox, timeout } = data
  if (timeout === undefined) return { mailbox }
  return timeout === null || typeof timeout === 'number' ? { mailbox, timeout } : null
}
export const DiscoverBody = v.pipe(
  v.object({ agent: v.pipe(v.string(), v.description('Fully qualified agent class')), allow_subclasses: v.boolean() }),
  v.examples([{ agent: 'academy.agent.Agent', allow_subclasses: true }]),
)
export const ShareBody = v.pipe(v.object({ mailbox: MailboxField, group_id: v.pipe(v.string(), v.minLength(1)) }), v.examples([{ mailbox: EXAMPLE_AGENT, group_id: 'lab' }]))

export const StatusResponse = v.object({ status: v.picklist(['ACTIVE', 'TERMINATED', 'MISSING']) })
export const MessageResponse = v.object({ message: v.pipe(v.string(), v.description('JSON of an Academy Message, as sent')) })
export const DiscoverResponse = v.object({ agent_ids: v.pipe(v.string(), v.description('Comma-joined agent uids')) })
export const HeartbeatResponse = v.object({ heartbeat: v.nullable(v.number()) })
export const StatsResponse = v.object({
  incoming: v.number(),
  outgoing: v.number(),
  completed: v.number(),
  in_progress: v.number(),
  queued: v.number(),
})
export const GroupsResponse = v.object({ group_ids: v.array(v.string()) })
export const EventStreamText = v.pipe(v.string(), v.description('text/event-stream: `retry: 0`, then one `data:` event per message, `: ping` comments while idle'))
