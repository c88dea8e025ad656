/** The exchange's logic: Academy's mailbox semantics over a MailboxStore. Knows no HTTP. */
import type { Client, EntityId, Envelope, MailboxStats, MailboxStatus, MailboxStore, PendingRequest } from '../../backend/mailboxes'
import type { EmitEvent } from '../events/model'
import { BadRequestError, MailboxTerminatedError, PayloadTooLargeError, RequestTimeoutError, UnknownMailboxError } from '../../errors'
import { parseWith } from '../../http/input'
import type { Logger } from '../../ops/logger'
import { canonicalEntityId, canonicalMessageHeader, EntityIdSchema, MessageSchema } from './model'

const FIELD = 'Missing or invalid field: '

export type ExchangeEvent = 'created' | 'terminated' | 'sent' | 'delivered' | 'returned'

export interface ExchangeOptions {
  /** Longest wait a receiver may ask for, in seconds. */
  listenTimeout: number
  messageSizeLimitBytes: number
  /** Told of each exchange event (metrics). */
  onEvent?: (event: ExchangeEvent) => void
  /** Where mailbox.created and mailbox.terminated go (GET /events, webhooks). */
  emit?: EmitEvent
}

/** Serialises an EntityId the way Academy (pydantic) does: uid, name, role. */
export function entityJson(id: EntityId): string {
  return `{"uid":${JSON.stringify(id.uid)},"name":${JSON.stringify(id.name)},"role":${JSON.stringify(id.role)}}`
}

/** The response Academy expects for a request whose destination was terminated. */
export function terminatedReply(request: PendingRequest): Envelope {
  const src = entityJson(request.dest)
  const dest = entityJson(request.src)
  const raw =
    `{"header":{"src":${src},"dest":${dest},"tag":${JSON.stringify(request.tag)},"label":${JSON.stringify(request.label)},` +
    `"kind":"response","protocol_version":"1"},"body":{"error_code":0,"mailbox_id":${src},"kind":"academy-error-response"}}`
  // Only into the mailbox the request came from: one of the same owner (a request stored before owners were kept: any).
  return { raw, src: request.dest, dest: request.src, tag: request.tag, label: request.label, kind: 'response', ...(request.srcOwner !== undefined ? { destOwner: request.srcOwner } : {}) }
}

export class ExchangeService {
  constructor(
    private readonly store: MailboxStore,
    private readonly options: ExchangeOptions,
    private readonly logger: Logger,
  ) {}

  /** Parses a double-encoded EntityId field. */
  parseEntityId(field: string, raw: string): EntityId {
    let data: unknown
    try {
      data = JSON.parse(raw)
    } catch {
      throw new BadRequestError(`${FIELD}${field} is not a JSON-encoded EntityId`)
    }
    return canonicalEntityId(data) ?? parseWith(EntityIdSchema, data, `${FIELD}${field}.`)
  }

  /** Parses a double-encoded message, keeping its exact text. */
  parseMessage(raw: string): Envelope {
    const limit = this.options.messageSizeLimitBytes
    // Counting bytes scans the text: only one that could be over the limit is counted (≤ 3 bytes per UTF-16 unit).
    if (raw.length * 3 > limit) {
      const size = Buffer.byteLength(raw)
      if (size > limit) throw new PayloadTooLargeError(`Message of size ${size} larger than limit ${limit}.`)
    }
    let data: unknown
    try {
      data = JSON.parse(raw)
    } catch {
      throw new BadRequestError(`${FIELD}message is not a JSON-encoded Message`)
    }
    const header = canonicalMessageHeader(data) ?? parseWith(MessageSchema, data, `${FIELD}message.`).header
    return { raw, src: header.src, dest: header.dest, tag: header.tag, label: header.label, kind: header.kind }
  }

  /** Checks a receive timeout: 0 < timeout <= listen timeout; absent means the listen timeout. */
  timeoutSeconds(timeout: number | null | undefined): number {
    const limit = this.options.listenTimeout
    if (timeout === undefined) return limit
    if (timeout === null || !Number.isFinite(timeout) || timeout <= 0 || timeout > limit) {
      throw new BadRequestError(`Invalid timeout (must be less than ${limit} and greater than 0)`)
    }
    return timeout
  }

  async createMailbox(client: Client, id: EntityId, agent: string | null | undefined): Promise<void> {
    // Only an absent or null agent means no class, as in Academy: an empty one is the class '' (''.split(',') is ['']).
    const mro = agent === undefined || agent === null ? null : agent.split(',')
    await this.store.create(client, id, mro)
    this.options.onEvent?.('created')
    this.emitMailbox('mailbox.created', client, id)
  }

  private emitMailbox(type: 'mailbox.created' | 'mailbox.terminated', client: Client, id: EntityId): void {
    this.options.emit?.({ type, tenant: client.id, resource: { kind: 'mailbox', id: id.uid }, data: { uid: id.uid, role: id.role, name: id.name } })
  }

  status(client: Client, id: EntityId): Promise<MailboxStatus> {
    return this.store.status(client, id)
  }

  /** Terminates a mailbox and answers every request still pending to it. */
  async terminate(client: Client, id: EntityId): Promise<void> {
    const pending = await this.store.terminate(client, id)
    this.options.onEvent?.('terminated')
    this.emitMailbox('mailbox.terminated', client, id)
    for (const request of pending) {
      // Sent from a key with no mailbox: there is nobody to answer, and a mailbox created there later is someone else's.
      if (request.srcOwner === null) continue
      try {
        await this.store.put(null, terminatedReply(request))
      } catch (error) {
        if (error instanceof MailboxTerminatedError || error instanceof UnknownMailboxError) continue
        throw error
      }
    }
    if (pending.length > 0) this.logger.debug('answered pending requests of a terminated mailbox', { mailbox: id.uid, count: pending.length })
  }

  async send(client: Client, message: Envelope): Promise<void> {
    await this.store.put(client, message)
    this.options.onEvent?.('sent')
  }

  /** Long-poll receive: the next message, or RequestTimeoutError when none came in time. */
  async receive(client: Client, id: EntityId, timeoutSeconds: number, signal?: AbortSignal): Promise<string> {
    const message = await this.store.take(client, id, { deadline: Date.now() + timeoutSeconds * 1000, signal })
    if (message === null) throw new RequestTimeoutError()
    this.options.onEvent?.('delivered')
    return message
  }

  /** One step of a listen stream: a message, or null when `deadline` or `signal` came first. */
  async next(client: Client, id: EntityId, deadline: number, signal: AbortSignal): Promise<string | null> {
    const message = await this.store.take(client, id, { deadline, signal })
    if (message !== null) this.options.onEvent?.('delivered')
    return message
  }

  /** Returns a message whose delivery failed to the head of its mailbox. */
  async giveBack(id: EntityId, message: string): Promise<void> {
    await this.store.restore(id, message)
    this.options.onEvent?.('returned')
  }

  discover(client: Client, agent: string, allowSubclasses: boolean): Promise<string[]> {
    return this.store.discover(client, agent, allowSubclasses)
  }

  heartbeat(client: Client, id: EntityId): Promise<number | null> {
    return this.store.heartbeat(client, id)
  }

  stats(client: Client, id: EntityId): Promise<MailboxStats> {
    return this.store.stats(client, id)
  }

  share(client: Client, id: EntityId, group: string): Promise<void> {
    return this.store.share(client, id, group)
  }

  unshare(client: Client, id: EntityId, group: string): Promise<void> {
    return this.store.unshare(client, id, group)
  }

  shares(client: Client, id: EntityId): Promise<string[]> {
    return this.store.shares(client, id)
  }
}
