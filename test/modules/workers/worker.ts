/**
 * A test worker speaking VideoSDK's worker protocol over a real WebSocket,
 * as `BackendConnection` does: it registers first and takes the next frame as
 * the reply, and it builds dataclasses from availability_request,
 * job_assignment, job_termination and pong, so a frame with a key those
 * dataclasses lack is a protocol error that drops its connection.
 */
import WebSocket from 'ws'

/** The fields of the client's dataclasses; any other key makes `Cls(**data)` throw. */
const DATACLASS_FIELDS: Record<string, readonly string[]> = {
  availability_request: ['type', 'job_id', 'job_type', 'room_id', 'room_name', 'agent_name', 'namespace'],
  job_assignment: ['type', 'job_id', 'job_type', 'room_id', 'room_name', 'agent_name', 'namespace', 'token', 'url', 'room_options', 'metadata'],
  job_termination: ['type', 'job_id', 'reason'],
  pong: ['type', 'timestamp'],
}

export type Frame = Record<string, unknown> & { type: string }

/** How the worker answers availability requests. */
export type AvailabilityPolicy = 'accept' | 'decline' | 'ignore'

export interface TestWorkerOptions {
  agentName?: string
  /** Proposed worker id ("" asks the server for one). */
  workerId?: string
  /** Bearer token at the upgrade and in the register frame. */
  token?: string
  maxProcesses?: number
  loadThreshold?: number
  availability?: AvailabilityPolicy
  /** Send `running` right after an assignment, as the real worker does. */
  autoRun?: boolean
  /** Loopback address to connect from ('' lets the system choose). */
  localAddress?: string
}

export class TestWorker {
  readonly frames: Frame[] = []
  /** Frames the real client could not have parsed (and that would have dropped it). */
  readonly protocolErrors: string[] = []
  readonly assignments: Frame[] = []
  workerId = ''
  availability: AvailabilityPolicy
  private readonly listeners = new Set<() => void>()
  private closedFlag = false
  readonly closed: Promise<{ code: number; reason: string }>

  private constructor(
    readonly ws: WebSocket,
    readonly options: Required<TestWorkerOptions>,
  ) {
    this.availability = options.availability
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closedFlag = true
        this.notify()
        resolve({ code, reason: reason.toString() })
      }),
    )
    ws.on('message', (raw) => this.onFrame(raw.toString()))
  }

  /** Connects to `<baseUrl>/agent`, registers, and resolves once the register reply came. */
  static async connect(baseUrl: string, options: TestWorkerOptions = {}): Promise<TestWorker> {
    const worker = await TestWorker.open(baseUrl, options)
    const reply = await worker.waitFor((frame) => frame.type === 'register')
    if (worker.frames[0] !== reply) throw new Error(`the first frame was ${JSON.stringify(worker.frames[0])}, not the register reply`)
    if (reply.success !== true) throw new Error(`registration failed: ${JSON.stringify(reply)}`)
    worker.workerId = String(reply.worker_id)
    return worker
  }

  /** Opens the socket and sends `register` without waiting for the reply. */
  static async open(baseUrl: string, options: TestWorkerOptions = {}, register = true): Promise<TestWorker> {
    const full: Required<TestWorkerOptions> = {
      agentName: 'voice-agent',
      workerId: '',
      token: 'worker-token',
      maxProcesses: 10,
      loadThreshold: 0.75,
      availability: 'accept',
      autoRun: true,
      localAddress: '',
      ...options,
    }
    const url = baseUrl.replace(/^http/, 'ws').replace(/\/$/, '') + '/agent'
    const ws = new WebSocket(url, { headers: { Authorization: `Bearer ${full.token}` }, ...(full.localAddress ? { localAddress: full.localAddress } : {}) })
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
      ws.once('unexpected-response', (_request, response) => reject(new Error(`upgrade refused with ${response.statusCode}`)))
    })
    const worker = new TestWorker(ws, full)
    if (register) worker.sendRegister()
    return worker
  }

  /** The register frame exactly as BackendConnection builds it (None fields dropped). */
  sendRegister(): void {
    this.send({
      type: 'register',
      worker_id: this.options.workerId,
      agent_name: this.options.agentName,
      namespace: 'default',
      version: '1.0.0',
      capabilities: ['room', 'voice', 'stt', 'tts'],
      registry_uuid: 'default',
      token: this.options.token,
      load_threshold: this.options.loadThreshold,
      max_processes: this.options.maxProcesses,
    })
  }

  send(frame: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(frame))
  }

  sendRaw(text: string): void {
    this.ws.send(text)
  }

  /** Reports a job's status, as the worker's job_update. */
  update(jobId: string, status: 'running' | 'completed' | 'failed', error?: string): void {
    this.send({ type: 'job_update', job_id: jobId, status, ...(error ? { error } : {}) })
  }

  get isOpen(): boolean {
    return !this.closedFlag && this.ws.readyState === WebSocket.OPEN
  }

  /** Resolves with the first received frame matching `match` (past or future). */
  waitFor(match: (frame: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const found = () => this.frames.find(match)
    const now = found()
    if (now) return Promise.resolve(now)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(check)
        reject(new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames.map((frame) => frame.type))}`))
      }, timeoutMs)
      const check = () => {
        const frame = found()
        if (!frame) return
        clearTimeout(timer)
        this.listeners.delete(check)
        resolve(frame)
      }
      this.listeners.add(check)
    })
  }

  waitForAssignment(jobId?: string, timeoutMs?: number): Promise<Frame> {
    return this.waitFor((frame) => frame.type === 'job_assignment' && (jobId === undefined || frame.job_id === jobId), timeoutMs)
  }

  /** Closes the socket cleanly and waits for the close. */
  async close(): Promise<void> {
    if (!this.closedFlag) this.ws.close()
    await this.closed
  }

  /** Drops the connection without a close handshake (a crashed or cut-off worker). */
  async kill(): Promise<void> {
    if (!this.closedFlag) this.ws.terminate()
    await this.closed
  }

  private onFrame(text: string): void {
    let frame: Frame
    try {
      frame = JSON.parse(text) as Frame
    } catch {
      this.protocolErrors.push(`not JSON: ${text}`)
      this.ws.terminate()
      return
    }
    const allowed = DATACLASS_FIELDS[frame.type]
    const extra = allowed ? Object.keys(frame).filter((key) => !allowed.includes(key)) : []
    if (extra.length > 0) {
      // BackendConnection's receive loop dies on the TypeError and the socket is dropped.
      this.protocolErrors.push(`${frame.type} has unexpected keys ${extra.join(', ')}`)
      this.ws.terminate()
      return
    }
    this.frames.push(frame)
    if (frame.type === 'availability_request' && this.availability !== 'ignore') {
      const available = this.availability === 'accept'
      this.send({ type: 'availability_response', job_id: frame.job_id, available, ...(available ? { token: this.options.token } : { error: 'busy' }) })
    }
    if (frame.type === 'job_assignment') {
      this.assignments.push(frame)
      if (this.options.autoRun) this.update(String(frame.job_id), 'running')
    }
    this.notify()
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener()
  }
}
