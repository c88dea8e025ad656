/** Valibot schemas of the agent registry: Molecule's wire shapes plus the admin API. */
import * as v from 'valibot'
import { Uuid } from '../ids'
import { JsonObject } from '../fields'

/** A workspace id: a UUID (surrounding spaces ignored), in its canonical form. */
export const WorkspaceId = v.pipe(v.string(), v.trim(), Uuid)

const Name = v.pipe(v.string(), v.trim(), v.minLength(1, 'must not be empty'), v.maxLength(200, 'must be at most 200 characters'))
const AgentCard = JsonObject('The agent\'s A2A agent card (v0.3 or v1.0), at most max_field_kb of JSON')
const AgentUrl = v.pipe(v.string(), v.minLength(1, 'must not be empty'), v.maxLength(2048, 'must be at most 2048 characters'), v.description('Where the agent answers A2A JSON-RPC calls'))

export const CreateWorkspaceBody = v.pipe(
  v.object({
    name: Name,
    role: v.optional(v.nullable(v.pipe(v.string(), v.maxLength(200, 'must be at most 200 characters')))),
    parent_id: v.optional(v.nullable(WorkspaceId)),
    id: v.optional(v.pipe(WorkspaceId, v.description('Choose the id (default: a new UUID)'))),
  }),
  v.examples([{ name: 'planner', role: 'lead' }]),
)

export const RegisterBody = v.pipe(
  v.object({
    id: WorkspaceId,
    url: AgentUrl,
    agent_card: v.optional(v.nullable(AgentCard)),
    delivery_mode: v.optional(v.picklist(['push', 'poll'], 'must be "push" or "poll"')),
  }),
  v.examples([{ id: '3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a', url: 'https://agents.example.com/planner/a2a', agent_card: { name: 'planner', version: '1.0.0' } }]),
)

const Count = v.pipe(v.number(), v.integer(), v.minValue(0))

export const HeartbeatBody = v.pipe(
  v.object({
    workspace_id: WorkspaceId,
    error_rate: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(1)))),
    active_tasks: v.optional(v.nullable(Count)),
    current_task: v.optional(v.nullable(v.pipe(v.string(), v.maxLength(1000)))),
    uptime_seconds: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0)))),
  }),
  v.examples([{ workspace_id: '3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a', error_rate: 0, active_tasks: 1 }]),
)

export const UpdateCardBody = v.pipe(
  v.object({ workspace_id: WorkspaceId, agent_card: AgentCard }),
  v.examples([{ workspace_id: '3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a', agent_card: { name: 'planner', version: '1.0.1' } }]),
)

export const ActivityQuery = v.object({
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d+$/, 'must be a whole number'), v.transform(Number), v.minValue(1), v.maxValue(500)), '50'),
  cursor: v.optional(v.pipe(v.string(), v.maxLength(100))),
})

export const PeersQuery = v.object({ q: v.optional(v.pipe(v.string(), v.maxLength(200), v.description('Filter by name or role'))) })

export const WorkspaceStatusSchema = v.picklist(['provisioning', 'online', 'degraded', 'offline', 'removed'])

/** What peers and discovery show of a workspace. */
export const PeerInfo = v.object({
  id: v.string(),
  name: v.string(),
  role: v.nullable(v.string()),
  status: WorkspaceStatusSchema,
  url: v.nullable(v.string()),
  proxy_url: v.pipe(v.string(), v.description('Where peers call this agent through Switchboard')),
  parent_id: v.nullable(v.string()),
  agent_card: v.nullable(AgentCard),
  delivery_mode: v.picklist(['push', 'poll']),
  last_heartbeat_at: v.nullable(v.string()),
  active_tasks: v.number(),
  current_task: v.nullable(v.string()),
})

/** What a workspace sees of itself and admins see of any workspace. */
export const WorkspaceInfo = v.object({
  ...PeerInfo.entries,
  created_at: v.string(),
  error_rate: v.number(),
  uptime_seconds: v.nullable(v.number()),
  card_signature: v.pipe(
    v.nullable(
      v.object({
        status: v.picklist(['verified', 'unsigned', 'invalid']),
        kid: v.nullable(v.string()),
        jku: v.nullable(v.string()),
        reason: v.nullable(v.string()),
        checked_at: v.string(),
      }),
    ),
    v.description("How the agent card's signature checked out when it was registered: verified (by kid from the key set at jku), unsigned, or invalid (taken with allow_unverified_cards; the card is served unsigned). Null before a card is registered"),
  ),
  inbound_secret: v.optional(v.pipe(v.string(), v.description('Sent to the agent as X-Switchboard-Secret on every proxied call (shown to the workspace itself and admins)'))),
})

export const CreatedWorkspace = v.object({
  ...WorkspaceInfo.entries,
  auth_token: v.pipe(v.string(), v.description('Bearer token of the workspace; shown only once')),
  inbound_secret: v.string(),
})

export const RegisterResponse = v.object({
  status: v.literal('registered'),
  id: v.string(),
  auth_token: v.optional(v.pipe(v.string(), v.description('Returned once, when the registration created the workspace'))),
  inbound_secret: v.optional(v.string()),
})

export const RemovedBody = v.object({ error: v.literal('workspace removed'), id: v.string(), removed_at: v.string(), hint: v.string() })
export const OkBody = v.object({ status: v.string() })
export const TokenBody = v.object({ id: v.string(), auth_token: v.string() })

export const ActivityItem = v.object({
  id: v.string(),
  source_id: v.nullable(v.string()),
  target_id: v.string(),
  method: v.nullable(v.string()),
  status: v.number(),
  duration_ms: v.number(),
  request_bytes: v.number(),
  response_bytes: v.number(),
  error: v.nullable(v.string()),
  at: v.string(),
  traceparent: v.pipe(v.nullable(v.string()), v.description('W3C traceparent the call was forwarded with: the caller\'s, or a new one')),
  task_id: v.pipe(v.nullable(v.string()), v.description('The task the call concerned (from the answer, else the request)')),
  context_id: v.nullable(v.string()),
  task_state: v.pipe(v.nullable(v.string()), v.description("The task's last known state, as the agent wrote it (a stream: its last status event)")),
})
export const ActivityResponse = v.object({ items: v.array(ActivityItem), next_cursor: v.nullable(v.string()) })
