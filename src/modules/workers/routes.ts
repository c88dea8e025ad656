/**
 * The workers module's routes and WebSocket endpoint: VideoSDK's worker
 * protocol at `/agent`, its dispatch API under `/v2/agent` (the `videosdk`
 * surface), and the native REST surface (`/workers`, `/jobs`).
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import * as v from 'valibot'
import { WebSocket, WebSocketServer } from 'ws'
import { credentialOf, type Authenticator } from '../../http/auth'
import type { Client } from '../../backend/mailboxes'
import type { JobCursor, JobRecord, WorkerRecord } from '../../backend/workers'
import { AppError, BadRequestError, ConflictError } from '../../errors'
import { describeIssue } from '../../http/input'
import { JSON_TYPE, json } from '../../http/reply'
import { route, type AnyRoute, type ChannelDoc, type UpgradeHandler } from '../../http/route'
import { throttled, type Logger } from '../../ops/logger'
import { checkFieldSize } from '../fields'
import * as model from './model'
import type { IgnoredFrame, WorkerService, WorkerSession } from './service'

export interface WorkersRoutesOptions {
  service: WorkerService
  /** Takes over an upgrade of `/agent` (the worker sockets). */
  upgrade: UpgradeHandler
  /** URL clients reach this server at; by default taken from the request. */
  publicUrl?: string
  /** Largest JSON of a job's metadata and of its room options, in bytes (max_field_kb). */
  maxFieldBytes: number
}

const iso = (at: number) => new Date(at).toISOString()

/** The caller's idempotency key: the `Idempotency-Key` header or the body's `request_id` (the same when both are given). */
function idempotencyKeyOf(header: string | undefined, requestId: string | undefined): string | undefined {
  if (header === undefined) return requestId
  if (!model.IDEMPOTENCY_KEY.test(header)) throw new BadRequestError('Idempotency-Key must be 1 to 256 printable ASCII characters without spaces')
  if (requestId !== undefined && requestId !== header) throw new BadRequestError('Idempotency-Key and request_id differ; send one of them')
  return header
}

/** The `next_cursor` that continues after `job`. */
const cursorAfter = (job: JobRecord) => Buffer.from(JSON.stringify([job.createdAt, job.id])).toString('base64url')

/**
 * Bytes of jobs one page of GET /jobs holds at most (a page always holds one): with metadata and room options of up
 * to max_field_kb each, `limit` jobs alone could make a page of gigabytes. Jobs are read from the store in chunks of
 * JOB_PAGE_CHUNK, so what one page holds in memory is bounded too.
 */
export const JOB_PAGE_MAX_BYTES = 8 * 1024 * 1024
const JOB_PAGE_CHUNK = 100

/** One page of GET /jobs as JSON text: up to `limit` jobs and JOB_PAGE_MAX_BYTES, and the cursor of the next page when there may be one. */
async function jobPage(read: (after: JobCursor | undefined, limit: number) => Promise<JobRecord[]>, after: JobCursor | undefined, limit: number): Promise<string> {
  const views: string[] = []
  let bytes = 0
  let last: JobRecord | undefined
  let full = false
  while (!full && views.length < limit) {
    const asked = Math.min(JOB_PAGE_CHUNK, limit - views.length)
    const chunk = await read(last ?? after, asked)
    for (const job of chunk) {
      const view = JSON.stringify(jobView(job))
      const size = Buffer.byteLength(view)
      if (views.length > 0 && bytes + size > JOB_PAGE_MAX_BYTES) {
        full = true
        break
      }
      views.push(view)
      bytes += size
      last = job
    }
    if (chunk.length < asked) break
  }
  const more = last !== undefined && (full || views.length === limit)
  return `{"jobs":[${views.join(',')}],"next_cursor":${more ? JSON.stringify(cursorAfter(last!)) : 'null'}}`
}

/** The native view of a job. */
export function jobView(job: JobRecord): v.InferOutput<typeof model.JobView> {
  return {
    id: job.id,
    agent_name: job.agentName,
    room_id: job.roomId,
    state: job.state,
    worker_id: job.workerId,
    metadata: job.metadata,
    room_options: job.roomOptions,
    participant_identity: job.participantIdentity ?? null,
    created_at: iso(job.createdAt),
    updated_at: iso(job.updatedAt),
    history: job.history.map((event) => ({
      state: event.state,
      at: iso(event.at),
      ...(event.workerId !== undefined ? { worker_id: event.workerId } : {}),
      ...(event.reason !== undefined ? { reason: event.reason } : {}),
    })),
  }
}

/** The native view of a worker. */
export function workerView(worker: WorkerRecord): v.InferOutput<typeof model.WorkerView> {
  return {
    id: worker.id,
    agent_name: worker.agentName,
    status: worker.status,
    connected: worker.connection !== null,
    draining: worker.draining,
    load: (worker.jobs.length + worker.reserved.length) / worker.maxProcesses,
    reported_load: worker.reportedLoad,
    max_processes: worker.maxProcesses,
    load_threshold: worker.loadThreshold,
    jobs: worker.jobs,
    reserved: worker.reserved.length,
    capabilities: worker.capabilities,
    registered_at: iso(worker.registeredAt),
    disconnected_at: worker.disconnectedAt === null ? null : iso(worker.disconnectedAt),
  }
}

/** The ws:// URL workers connect to, from the configured public URL or the request's own origin. */
function registryUrl(origin: string, publicUrl?: string): string {
  const base = new URL(publicUrl || origin)
  const scheme = base.protocol === 'https:' || base.protocol === 'wss:' ? 'wss' : 'ws'
  return `${scheme}://${base.host}${publicUrl ? base.pathname.replace(/\/$/, '') : ''}`
}

const videoSdkErrors = {
  400: { description: 'Invalid body (the message names the field)' },
  401: { description: 'No Authorization header (auth token)' },
  403: { description: 'Unknown token' },
  409: { description: 'The idempotency key was used for a different dispatch, or the job ended before a worker took it' },
  503: { description: 'No worker registered for the agent, or none available in time, or its backlog is full (Retry-After)' },
}
const nativeErrors = {
  400: { description: 'Invalid parameter or body (the message names it)' },
  401: { description: 'No bearer token (auth token)' },
  403: { description: 'Unknown token' },
  404: { description: 'No such worker or job of this client' },
}

export function workersRoutes(options: WorkersRoutesOptions): AnyRoute[] {
  const { service } = options
  const videoSdk = { surface: 'videosdk', access: 'worker', tag: 'workers' } as const
  const native = { surface: 'native', access: 'client', tag: 'workers' } as const
  return [
    route({
      surface: 'native',
      access: 'client',
      tag: 'workers',
      method: 'GET',
      path: '/agent',
      summary: "The workers' WebSocket (VideoSDK's worker protocol): upgrade with a bearer token",
      description: 'Frames both ways are in the AsyncAPI document (/swagger/asyncapi.json). A request without `Upgrade: websocket` is answered 426.',
      upgrade: options.upgrade,
      responses: { 101: { description: 'Switching to the WebSocket' }, 401: { description: 'No bearer token (auth token)' }, 403: { description: 'Unknown token' }, 426: { description: 'Not a WebSocket upgrade' }, 429: { description: 'Over the rate limit (Retry-After)' } },
      handle: () => {
        throw new AppError(426, 'UPGRADE_REQUIRED', 'GET /agent takes a WebSocket upgrade (Upgrade: websocket)')
      },
    }),
    route({
      ...videoSdk,
      method: 'POST',
      path: '/v2/agent/init-config',
      summary: 'Where workers connect (VideoSDK discovery): ws:// URL of the registry',
      responses: { 200: { description: 'The registry URL', schema: model.InitConfigResponse }, ...videoSdkErrors },
      handle: ({ origin }) => json({ success: true, data: { registryUrl: registryUrl(origin, options.publicUrl) } }),
    }),
    route({
      ...videoSdk,
      method: 'POST',
      path: '/v2/agent/dispatch',
      summary: 'Dispatch an agent to a room (VideoSDK); answers once a worker has accepted, or with the backlog at the deadline that the job waits',
      description:
        'With `Idempotency-Key` (or `request_id`), a retry with the same key and body within 24 h answers for the same job; the same key with another body is 409.',
      body: model.DispatchBody,
      responses: {
        200: { description: 'A worker accepted the job', schema: model.DispatchResponse },
        202: { description: 'No worker took the job within dispatch_timeout_ms; it waits in the backlog (job_queue_max > 0)', schema: model.DispatchResponse },
        ...videoSdkErrors,
        413: { description: 'Request body larger than max_body_kb, or metadata or roomOptions larger than max_field_kb' },
      },
      handle: async ({ caller, body, header }) => {
        checkFieldSize('metadata', body.metadata, options.maxFieldBytes)
        checkFieldSize('roomOptions', body.roomOptions, options.maxFieldBytes)
        const job = await service.createJob(
          caller.id,
          { agentName: body.agentId, roomId: body.meetingId, metadata: body.metadata ?? null, roomOptions: body.roomOptions ?? null },
          { idempotencyKey: idempotencyKeyOf(header('idempotency-key'), body.request_id) },
        )
        if (job.state === 'failed' || job.state === 'cancelled') throw new ConflictError(`job ${job.id} was ${job.state} before a worker took it: ${job.history.at(-1)?.reason ?? ''}`)
        const status = job.state === 'pending' ? 'pending' : 'assigned'
        return json(
          { message: 'Agent dispatch requested successfully.', data: { success: true, status, roomId: job.roomId, agentId: job.agentName, jobId: job.id } },
          status === 'pending' ? 202 : 200,
        )
      },
    }),
    route({
      ...native,
      method: 'GET',
      path: '/workers',
      summary: 'List workers with their status, load, capacity and jobs',
      query: model.WorkerListQuery,
      responses: { 200: { description: 'Workers of this client', schema: model.WorkerList }, ...nativeErrors },
      handle: async ({ caller, query }) => json({ workers: (await service.listWorkers(caller.id, query.agent_name)).map(workerView) }),
    }),
    route({
      ...native,
      method: 'GET',
      path: '/workers/:id',
      summary: 'Get one worker',
      params: model.IdParams,
      responses: { 200: { description: 'The worker', schema: model.WorkerView }, ...nativeErrors },
      handle: async ({ caller, params }) => json(workerView(await service.getWorker(caller.id, params.id))),
    }),
    route({
      ...native,
      method: 'POST',
      path: '/workers/:id/drain',
      summary: 'Drain a worker: no new jobs, its jobs run to their end',
      params: model.IdParams,
      responses: { 200: { description: 'The worker, draining', schema: model.WorkerView }, ...nativeErrors },
      handle: async ({ caller, params }) => json(workerView(await service.drainWorker(caller.id, params.id))),
    }),
    route({
      ...native,
      method: 'POST',
      path: '/jobs',
      summary: 'Create a job and dispatch it; answers once a worker has accepted (503 when none can), or with the backlog 202 once it waits',
      description:
        'With `Idempotency-Key` (or `request_id`), a retry with the same key and body within 24 h answers with the same job as it is now; the same key with another body is 409.',
      body: model.CreateJobBody,
      responses: {
        201: { description: 'The job, taken by a worker (or, for a retried key, as it is now)', schema: model.JobView },
        202: { description: 'The job, pending: no worker has room, it waits in the backlog (job_queue_max > 0)', schema: model.JobView },
        ...nativeErrors,
        409: { description: 'The idempotency key was used for a different dispatch, or the job was cancelled while being dispatched' },
        413: { description: 'Request body larger than max_body_kb, or metadata or room_options larger than max_field_kb' },
        503: { description: 'No worker registered for the agent, or none available in time, or its backlog is full (Retry-After)' },
      },
      handle: async ({ caller, body, header }) => {
        checkFieldSize('metadata', body.metadata, options.maxFieldBytes)
        checkFieldSize('room_options', body.room_options, options.maxFieldBytes)
        const job = await service.createJob(
          caller.id,
          { agentName: body.agent_name, roomId: body.room_id, metadata: body.metadata ?? null, roomOptions: body.room_options ?? null },
          { timeoutMs: body.timeout_ms, returnWhenQueued: true, idempotencyKey: idempotencyKeyOf(header('idempotency-key'), body.request_id) },
        )
        return json(jobView(job), job.state === 'pending' ? 202 : 201)
      },
    }),
    route({
      ...native,
      method: 'GET',
      path: '/jobs',
      summary: 'List jobs, newest first, filtered by agent name, state, worker, room and creation time; paged by cursor (default limit 100)',
      description: 'A page holds at most `limit` jobs and 8 MiB of JSON (always at least one job); pass its `next_cursor` as `cursor` (with the same filters) for the next. Jobs created meanwhile do not shift the pages.',
      query: model.JobListQuery,
      responses: { 200: { description: 'Jobs of this client', schema: model.JobList }, ...nativeErrors },
      handle: async ({ caller, query }) => {
        const filter = { agentName: query.agent_name, state: query.state, workerId: query.worker_id, roomId: query.room_id, createdFrom: query.created_from, createdBefore: query.created_before }
        const page = await jobPage((after, limit) => service.listJobs(caller.id, { ...filter, after, limit }), query.cursor, query.limit ?? 100)
        return { status: 200, headers: { 'content-type': JSON_TYPE }, body: page }
      },
    }),
    route({
      ...native,
      method: 'GET',
      path: '/jobs/:id',
      summary: 'Get a job with its history',
      params: model.IdParams,
      responses: { 200: { description: 'The job', schema: model.JobView }, ...nativeErrors },
      handle: async ({ caller, params }) => json(jobView(await service.getJob(caller.id, params.id))),
    }),
    route({
      ...native,
      method: 'DELETE',
      path: '/jobs/:id',
      summary: 'Terminate a job: cancelled at once, its worker receives job_termination',
      params: model.IdParams,
      responses: { 200: { description: 'The job, cancelled', schema: model.JobView }, ...nativeErrors, 409: { description: 'The job has already ended' } },
      handle: async ({ caller, params }) => json(jobView(await service.terminateJob(caller.id, params.id))),
    }),
  ]
}

export interface WorkerSocketsOptions {
  service: WorkerService
  auth: Authenticator
  logger: Logger
  /** Seconds between WebSocket pings; a worker that misses two is dropped. */
  pingSeconds: number
  /** Largest frame a worker may send, in bytes; a larger one closes its socket with 1009. */
  maxFrameBytes: number
  /** Seconds a socket has to register after its upgrade; past it, it gets a refused register reply and close 1008. */
  registerTimeoutSeconds: number
}

/** Refuses an upgrade with a plain HTTP status. */
function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  socket.end(`HTTP/1.1 ${status} ${text}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
}

/** Jobs whose frames one worker socket may have handled at once. */
const MAX_JOB_LANES = 64
/** Frames one worker socket may have waiting to be handled before it is no longer read; reading resumes at half. */
const MAX_WAITING_FRAMES = 256
/** One line per socket per this many ms at most about the frames it sent that were ignored. */
const IGNORED_LOG_INTERVAL_MS = 10_000
/** A frame that did not parse as JSON. */
const NOT_JSON = Symbol('not JSON')
/** The job a worker's frame is about (a job update or an availability answer), or null. */
function jobOf(data: unknown): string | null {
  if (typeof data !== 'object' || data === null) return null
  const { type, job_id: jobId } = data as { type?: unknown; job_id?: unknown }
  return (type === 'job_update' || type === 'availability_response') && typeof jobId === 'string' ? jobId : null
}

/** The `/agent` WebSocket endpoint: bearer auth at the upgrade, `register` first, then each job's frames in order, per socket. */
export function workerSockets(options: WorkerSocketsOptions) {
  const { service, auth, logger } = options
  const server = new WebSocketServer({ noServer: true, maxPayload: options.maxFrameBytes })

  const attach = (ws: WebSocket, owner: Client, headerToken: string) => {
    let session: WorkerSession | null = null
    let missedPings = 0
    // A frame about one job waits for the frames before it about that job (so a worker's `running` is applied before
    // its `completed`) and for the socket's other frames before it; any other frame (register, status, ping) waits for
    // every frame before it. Frames about different jobs do not wait for each other, so the store writes of one job's
    // updates do not hold up a busy worker's answers about the next.
    const jobLanes = new Map<string, Promise<void>>()
    let waiting = 0
    let paused = false
    let socketLane: Promise<void> = Promise.resolve()
    const failed = (error: unknown) => logger.error('worker frame failed', { worker: session?.workerId ?? null, error: String((error as Error)?.stack ?? error) })
    const enqueue = (jobId: string | null, work: () => Promise<void>) => {
      // Past MAX_JOB_LANES jobs in flight on one socket, a frame waits for all before it: a worker's frames never
      // hold more than that many store operations at once.
      if (jobId === null || (jobLanes.size >= MAX_JOB_LANES && !jobLanes.has(jobId))) {
        socketLane = Promise.all([socketLane, ...jobLanes.values()]).then(work).catch(failed)
        jobLanes.clear()
        return
      }
      const tail = (jobLanes.get(jobId) ?? socketLane).then(work).catch(failed)
      jobLanes.set(jobId, tail)
      void tail.then(() => {
        if (jobLanes.get(jobId) === tail) jobLanes.delete(jobId)
      })
    }
    const socket = {
      send: (frame: model.ServerFrame) => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame))
      },
      close: (code: number, reason: string) => ws.close(code, reason),
    }

    // A worker can send bad frames as fast as it likes: they are told at warn level, one line per socket per
    // interval counting the rest, and in the protocol's words only (the caller's own text is never logged).
    const ignoredFrames = throttled((fields) => logger.warn('worker sent frames that were ignored', fields), IGNORED_LOG_INTERVAL_MS)
    const ignored = (why: IgnoredFrame) => ignoredFrames.note({ worker: session?.workerId ?? null, ...why })

    const handle = async (data: unknown) => {
      if (data === NOT_JSON) {
        if (session === null) refuseRegistration('the first frame must be a JSON register message')
        else ignored({ problem: 'not JSON' })
        return
      }
      if (session !== null) {
        const why = await service.receive(session, data)
        if (why !== null) ignored(why)
        return
      }
      const register = v.safeParse(model.RegisterFrame, data)
      if (!register.success) {
        refuseRegistration(`invalid register message: ${describeIssue(register.issues)}`)
        return
      }
      session = await service.register(socket, owner.id, headerToken, register.output)
      clearTimeout(registerDeadline)
    }

    const refuseRegistration = (message: string, reason = 'registration refused') => {
      logger.warn('worker registration refused', { reason: message })
      socket.send(model.frames.registrationRefused(message))
      ws.close(1008, reason)
    }

    // A socket that never registers would be held forever: it gets the refused register reply VideoSDK's client
    // reads during registration (it then reconnects with backoff), and close 1008 (policy violation).
    const registerDeadline = setTimeout(() => {
      if (session === null && ws.readyState === WebSocket.OPEN) {
        refuseRegistration(`no register message within ${options.registerTimeoutSeconds} s (worker_register_timeout_s)`, 'registration timeout')
      }
    }, options.registerTimeoutSeconds * 1000)

    const pinger = setInterval(() => {
      if (missedPings >= 2) {
        logger.warn('worker missed two pings; dropping it', { worker: session?.workerId ?? null })
        ws.terminate()
        return
      }
      missedPings++
      ws.ping()
    }, options.pingSeconds * 1000)

    ws.on('pong', () => {
      missedPings = 0
    })
    ws.on('message', (raw, isBinary) => {
      let data: unknown
      try {
        data = JSON.parse(isBinary ? '' : raw.toString())
      } catch {
        data = NOT_JSON
      }
      // A worker that sends faster than its frames are handled is not read until they catch up: what it sent waits
      // in its own socket buffers, not in Switchboard's memory.
      if (++waiting >= MAX_WAITING_FRAMES && !paused) {
        paused = true
        ws.pause()
      }
      const done = () => {
        if (--waiting <= MAX_WAITING_FRAMES / 2 && paused) {
          paused = false
          ws.resume()
        }
      }
      // Until the socket is registered, every frame waits for all before it (the register frame first).
      enqueue(session === null ? null : jobOf(data), () => handle(data).finally(done))
    })
    ws.on('error', (error) => logger.warn('worker socket error', { worker: session?.workerId ?? null, error: String(error) }))
    ws.on('close', () => {
      clearInterval(pinger)
      clearTimeout(registerDeadline)
      ignoredFrames.flush({ worker: session?.workerId ?? null, problem: 'more ignored frames before the socket closed' })
      // The socket's end is handled once every frame it sent has been.
      void Promise.all([socketLane, ...jobLanes.values()])
        .then(async () => {
          if (session) await service.disconnect(session)
        })
        .catch((error) => logger.error('worker disconnect failed', { worker: session?.workerId ?? null, error: String(error) }))
    })
  }

  return {
    /** Takes over an upgrade of `/agent` after checking the bearer token. */
    handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
      const credential = credentialOf(request.headers.authorization)
      let owner: Client
      try {
        owner = auth.client(credential)
      } catch (error) {
        const status = error instanceof AppError ? error.status : 401
        refuseUpgrade(socket, status, status === 403 ? 'Forbidden' : 'Unauthorized')
        return
      }
      server.handleUpgrade(request, socket, head, (ws) => attach(ws, owner, credential.kind === 'bearer' ? credential.token : ''))
    },
    /**
     * Closes every worker socket with 1001 (going away; VideoSDK has no frame
     * for shutdown, so the close code is how a worker learns to reconnect
     * elsewhere), then the endpoint. Sockets that do not finish the closing
     * handshake within a second are dropped.
     */
    async close(): Promise<void> {
      const closing = [...server.clients].map(
        (client) =>
          new Promise<void>((resolve) => {
            if (client.readyState === WebSocket.CLOSED) return resolve()
            client.once('close', () => resolve())
            if (client.readyState === WebSocket.OPEN) client.close(1001, 'server shutting down')
          }),
      )
      const timer = setTimeout(() => {
        for (const client of server.clients) client.terminate()
      }, 1000)
      await Promise.all(closing)
      clearTimeout(timer)
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** The `/agent` WebSocket's frames, for the AsyncAPI document. */
export const workerSocketChannel: ChannelDoc = {
  id: 'workerSocket',
  address: '/agent',
  protocol: 'ws',
  description:
    "VideoSDK's worker protocol: a worker connects with `Authorization: Bearer <token>`, sends `register` first, answers availability requests and reports job updates; JSON text frames both ways.",
  messages: [
    { name: 'register', direction: 'receive', summary: 'The first frame: the worker registers its agent name and capacity', schema: model.RegisterFrame },
    { name: 'availabilityResponse', direction: 'receive', summary: 'The answer to an availability request', schema: model.AvailabilityResponseFrame },
    { name: 'jobUpdate', direction: 'receive', summary: "A job's state as the worker runs it", schema: model.JobUpdateFrame },
    { name: 'statusUpdate', direction: 'receive', summary: "The worker's load and status", schema: model.StatusUpdateFrame },
    { name: 'ping', direction: 'receive', summary: 'Keep-alive', schema: model.PingFrame },
    { name: 'registered', direction: 'send', summary: 'Registration accepted', schema: model.RegisteredFrame },
    { name: 'registrationRefused', direction: 'send', summary: 'Registration refused', schema: model.RegistrationRefusedFrame },
    { name: 'availabilityRequest', direction: 'send', summary: 'Will the worker take this job?', schema: model.AvailabilityRequestFrame },
    { name: 'jobAssignment', direction: 'send', summary: 'The job is the worker\'s', schema: model.JobAssignmentFrame },
    { name: 'jobTermination', direction: 'send', summary: 'The job was terminated', schema: model.JobTerminationFrame },
    { name: 'pong', direction: 'send', summary: 'Answer to ping', schema: model.PongFrame },
  ],
}
