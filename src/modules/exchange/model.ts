/** Valibot schemas of the exchange: Academy's wire shapes. */
import * as v from 'valibot'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** A UUID in its canonical lower-case form. */
export const Uuid = v.pipe(v.string(), v.regex(UUID, 'must be a UUID'), v.toLowerCase())

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
  protocol_version: v.optional(v.string()),
})

export const MessageSchema = v.object({
  header: HeaderSchema,
  // Only `kind` is checked; the message is stored as sent, so the rest of the body is not copied.
  body: v.object({ kind: v.string() }),
})

const MailboxField = v.pipe(v.string(), v.description('JSON of an EntityId: {"uid": "<uuid>", "name": null, "role": "agent" | "user"}'))
const Timeout = v.pipe(v.nullable(v.number()), v.description('Seconds to wait, 0 < timeout <= listen_timeout (default: listen_timeout)'))

export const CreateMailboxBody = v.object({
  mailbox: MailboxField,
  agent: v.optional(v.nullable(v.pipe(v.string(), v.description('Comma-joined MRO of the agent class, most derived first')))),
})
export const MailboxBody = v.object({ mailbox: MailboxField })
export const SendBody = v.object({ message: v.pipe(v.string(), v.description('JSON of an Academy Message')) })
export const ReceiveBody = v.object({ mailbox: MailboxField, timeout: v.optional(Timeout) })
export const DiscoverBody = v.object({ agent: v.pipe(v.string(), v.description('Fully qualified agent class')), allow_subclasses: v.boolean() })
export const ShareBody = v.object({ mailbox: MailboxField, group_id: v.pipe(v.string(), v.minLength(1)) })

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
export const ErrorText = v.pipe(v.string(), v.description('text/plain error, as Academy\'s server words it'))
