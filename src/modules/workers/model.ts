/**
 * Valibot schemas of the workers module: the WebSocket frames of VideoSDK's
 * worker protocol, its dispatch API, and the native REST shapes.
 */
import * as v from 'valibot'
import { JsonObject } from '../fields'

/** Worker ids we keep when a worker proposes one: printable, no separators that could confuse logs or keys. */
export const WORKER_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/

const JobId = v.pipe(v.string(), v.minLength(1), v.maxLength(256))
const OptionalText = v.optional(v.nullable(v.string()))

// Frames a worker sends. Extra keys are tolerated: older and newer clients add fields.

export const RegisterFrame = v.object({
  type: v.literal('register'),
  worker_id: OptionalText,
  agent_name: v.pipe(v.string(), v.minLength(1, 'agent_name must not be empty'), v.maxLength(256)),
  // Kept on the worker's record for as long as it is registered: bounded so that one socket holds little.
  capabilities: v.optional(v.nullable(v.pipe(v.array(v.pipe(v.string(), v.maxLength(256, 'a capability is at most 256 characters'))), v.maxLength(64, 'capabilities holds at most 64 entries')))),
  registry_uuid: OptionalText,
  token: OptionalText,
  load_threshold: v.optional(v.nullable(v.pipe(v.number(), v.gtValue(0), v.maxValue(1)))),
  max_processes: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100000)))),
  namespace: OptionalText,
  version: OptionalText,
})

export const AvailabilityResponseFrame = v.object({
  type: v.literal('availability_response'),
  job_id: JobId,
  available: v.boolean(),
  token: OptionalText,
  error: OptionalText,
})

export const JobUpdateFrame = v.object({
  type: v.literal('job_update'),
  job_id: JobId,
  status: v.picklist(['running', 'completed', 'failed']),
  error: OptionalText,
  participant_identity: v.optional(v.nullable(v.pipe(v.string(), v.maxLength(256)))),
})

export const StatusUpdateFrame = v.object({
  type: v.literal('status_update'),
  worker_id: OptionalText,
  agent_name: OptionalText,
  status: v.picklist(['available', 'draining', 'offline']),
  load: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0)))),
  job_count: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0)))),
})

export const PingFrame = v.object({
  type: v.literal('ping'),
  timestamp: v.optional(v.nullable(v.number())),
})

/** Every frame a registered worker may send, by its `type`. */
export const WorkerFrame = v.variant('type', [AvailabilityResponseFrame, JobUpdateFrame, StatusUpdateFrame, PingFrame, RegisterFrame])

/** The `type` of every frame a worker may send. */
export const WORKER_FRAME_TYPES: ReadonlySet<string> = new Set(WorkerFrame.options.map((option) => option.entries.type.literal))

export type RegisterFrame = v.InferOutput<typeof RegisterFrame>
export type WorkerFrame = v.InferOutput<typeof WorkerFrame>

// Frames the server sends. Built only by these functions, so no key can slip in:
// the client builds dataclasses from availability_request, job_assignment and
// job_termination, and an unexpected key throws and drops its connection.

export const RegisteredFrame = v.pipe(v.object({ type: v.literal('register'), success: v.literal(true), worker_id: v.string() }), v.description('Registration accepted: the worker id to reconnect with'))
export const RegistrationRefusedFrame = v.pipe(v.object({ type: v.literal('register'), success: v.literal(false), message: v.string() }), v.description('Registration refused (the socket is then closed with 1008)'))
export const AvailabilityRequestFrame = v.pipe(
  v.object({ type: v.literal('availability_request'), job_id: v.string(), room_id: v.string(), agent_name: v.string() }),
  v.description('Will the worker take this job? Answered with availability_response within availability_timeout_ms'),
)
export const JobAssignmentFrame = v.pipe(
  v.object({
    type: v.literal('job_assignment'),
    job_id: v.string(),
    room_id: v.string(),
    agent_name: v.string(),
    token: v.string(),
    url: v.string(),
    metadata: v.optional(v.record(v.string(), v.unknown())),
    room_options: v.optional(v.record(v.string(), v.unknown())),
  }),
  v.description('The job is the worker\'s: it joins the room'),
)
export const JobTerminationFrame = v.pipe(v.object({ type: v.literal('job_termination'), job_id: v.string(), reason: v.string() }), v.description('The job was terminated; the worker leaves the room'))
export const PongFrame = v.pipe(v.object({ type: v.literal('pong'), timestamp: v.number() }), v.description('Answer to ping'))

export type ServerFrame =
  | v.InferOutput<typeof RegisteredFrame>
  | v.InferOutput<typeof RegistrationRefusedFrame>
  | v.InferOutput<typeof AvailabilityRequestFrame>
  | v.InferOutput<typeof JobAssignmentFrame>
  | v.InferOutput<typeof JobTerminationFrame>
  | v.InferOutput<typeof PongFrame>

/** The fields of a job assignment, as relayed to the instance holding the worker's socket. */
export interface Assignment {
  jobId: string
  roomId: string
  agentName: string
  /** The token the worker gave when accepting; the holder falls back to the worker's registration token. */
  token: string | null
  url: string
  metadata: Record<string, unknown> | null
  roomOptions: Record<string, unknown> | null
}

export const frames = {
  registered: (workerId: string): ServerFrame => ({ type: 'register', success: true, worker_id: workerId }),
  registrationRefused: (message: string): ServerFrame => ({ type: 'register', success: false, message }),
  availabilityRequest: (jobId: string, roomId: string, agentName: string): ServerFrame => ({ type: 'availability_request', job_id: jobId, room_id: roomId, agent_name: agentName }),
  jobAssignment: (assignment: Assignment, token: string): ServerFrame => ({
    type: 'job_assignment',
    job_id: assignment.jobId,
    room_id: assignment.roomId,
    agent_name: assignment.agentName,
    token,
    url: assignment.url,
    ...(assignment.metadata !== null ? { metadata: assignment.metadata } : {}),
    ...(assignment.roomOptions !== null ? { room_options: assignment.roomOptions } : {}),
  }),
  jobTermination: (jobId: string, reason: string): ServerFrame => ({ type: 'job_termination', job_id: jobId, reason }),
  pong: (timestamp: number): ServerFrame => ({ type: 'pong', timestamp }),
}

// VideoSDK's HTTP API.

/** An idempotency key, as the `Idempotency-Key` header or the `request_id` field. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,256}$/
const RequestId = v.pipe(
  v.string(),
  v.regex(IDEMPOTENCY_KEY, 'request_id must be 1 to 256 printable ASCII characters without spaces'),
  v.description('Idempotency key (as the Idempotency-Key header): the same key and body within 24 h give the same job'),
)

const Metadata = JsonObject('Free-form object handed to the worker in job_assignment.metadata (at most max_field_kb of JSON)')
const RoomOptions = JsonObject('Free-form object handed to the worker in job_assignment.room_options (at most max_field_kb of JSON)')

export const DispatchBody = v.pipe(
  v.object({
    meetingId: v.pipe(v.string(), v.minLength(1, 'meetingId must not be empty'), v.maxLength(256), v.description('Room the agent joins')),
    agentId: v.pipe(v.string(), v.minLength(1, 'agentId must not be empty'), v.maxLength(256), v.description('agent_name the workers registered with')),
    metadata: v.optional(v.nullable(Metadata)),
    roomOptions: v.optional(v.nullable(RoomOptions)),
    wait: v.optional(v.nullable(v.pipe(v.boolean(), v.description('Accepted for compatibility; the reply always comes once a worker has accepted')))),
    request_id: v.optional(RequestId),
  }),
  v.examples([{ meetingId: 'room-1', agentId: 'support-agent', metadata: { topic: 'billing' } }]),
)

export const DispatchResponse = v.object({
  message: v.literal('Agent dispatch requested successfully.'),
  data: v.object({
    success: v.literal(true),
    status: v.pipe(v.picklist(['assigned', 'pending']), v.description('pending: no worker took the job within the deadline; it waits in the backlog (job_queue_max)')),
    roomId: v.string(),
    agentId: v.string(),
    jobId: v.string(),
  }),
})

export const InitConfigResponse = v.object({
  success: v.literal(true),
  data: v.object({ registryUrl: v.pipe(v.string(), v.description('ws:// or wss:// base URL; the worker connects to <registryUrl>/agent')) }),
})

// Native REST.

const JobStates = ['pending', 'assigned', 'running', 'completed', 'failed', 'cancelled', 'reassigning'] as const

export const CreateJobBody = v.pipe(
  v.object({
    agent_name: v.pipe(v.string(), v.minLength(1, 'agent_name must not be empty'), v.maxLength(256)),
    room_id: v.pipe(v.string(), v.minLength(1, 'room_id must not be empty'), v.maxLength(256)),
    metadata: v.optional(v.nullable(Metadata)),
    room_options: v.optional(v.nullable(RoomOptions)),
    timeout_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(600000), v.description('Longest the dispatch may take (default and ceiling: dispatch_timeout_ms)'))),
    request_id: v.optional(RequestId),
  }),
  v.examples([{ agent_name: 'support-agent', room_id: 'room-1', metadata: { topic: 'billing' } }]),
)

const EpochTime = (name: string, what: string) =>
  v.pipe(
    v.string(),
    v.transform((text) => (/^[0-9]{1,15}$/.test(text) ? Number(text) : Date.parse(text))),
    v.check((at) => Number.isFinite(at), `${name} must be an ISO 8601 time or epoch milliseconds`),
    v.description(what),
  )

/** A page's `next_cursor`: the last job's `createdAt` and id, base64url JSON. */
export const JobCursorParam = v.pipe(
  v.string(),
  v.maxLength(512),
  v.transform((text) => {
    try {
      const [createdAt, id] = JSON.parse(Buffer.from(text, 'base64url').toString('utf8')) as unknown[]
      return typeof createdAt === 'number' && typeof id === 'string' ? { createdAt, id } : null
    } catch {
      return null
    }
  }),
  v.check((cursor) => cursor !== null, 'cursor must be a next_cursor this server gave'),
  v.transform((cursor) => cursor!),
  v.description('The next_cursor of the previous page'),
)

export const JobListQuery = v.object({
  agent_name: v.optional(v.string()),
  state: v.optional(v.picklist(JobStates)),
  worker_id: v.optional(v.string()),
  room_id: v.optional(v.string()),
  created_from: v.optional(EpochTime('created_from', 'Only jobs created at or after this time (ISO 8601 or epoch ms)')),
  created_before: v.optional(EpochTime('created_before', 'Only jobs created before this time (ISO 8601 or epoch ms)')),
  cursor: v.optional(JobCursorParam),
  limit: v.optional(v.pipe(v.string(), v.regex(/^[1-9][0-9]{0,3}$/, 'limit must be an integer from 1 to 9999'), v.transform(Number), v.description('Page size (default 100, at most 9999)'))),
})

export const WorkerListQuery = v.object({ agent_name: v.optional(v.string()) })

export const IdParams = v.object({ id: v.pipe(v.string(), v.minLength(1), v.maxLength(256)) })

export const JobEventView = v.object({
  state: v.picklist(JobStates),
  at: v.pipe(v.string(), v.description('ISO 8601 time')),
  worker_id: v.optional(v.string()),
  reason: v.optional(v.string()),
})

export const JobView = v.object({
  id: v.string(),
  agent_name: v.string(),
  room_id: v.string(),
  state: v.picklist(JobStates),
  worker_id: v.nullable(v.string()),
  metadata: v.nullable(v.record(v.string(), v.unknown())),
  room_options: v.nullable(v.record(v.string(), v.unknown())),
  participant_identity: v.pipe(v.nullable(v.string()), v.description('The identity the worker joined the room as (from its job updates)')),
  created_at: v.string(),
  updated_at: v.string(),
  history: v.array(JobEventView),
})

export const JobList = v.object({
  jobs: v.array(JobView),
  next_cursor: v.pipe(v.nullable(v.string()), v.description('Pass as `cursor` for the next page; null on the last page')),
})

export const WorkerView = v.object({
  id: v.string(),
  agent_name: v.string(),
  status: v.picklist(['available', 'draining', 'offline']),
  connected: v.boolean(),
  draining: v.pipe(v.boolean(), v.description('Drained by an operator: no new jobs, running ones finish')),
  load: v.pipe(v.number(), v.description('(jobs + reserved slots) / max_processes, by Switchboard\'s own count')),
  reported_load: v.pipe(v.number(), v.description('The worker\'s own last reported load')),
  max_processes: v.number(),
  load_threshold: v.number(),
  jobs: v.array(v.string()),
  reserved: v.number(),
  capabilities: v.array(v.string()),
  registered_at: v.string(),
  disconnected_at: v.nullable(v.string()),
})

export const WorkerList = v.object({ workers: v.array(WorkerView) })
