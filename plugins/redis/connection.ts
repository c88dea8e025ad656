/**
 * The redis backend's two connections per instance, however many receivers
 * wait: one for commands and scripts, one for pub/sub. The subscriber
 * re-subscribes itself after every reconnect and then tells the backend,
 * which wakes its local waiters so they re-check what they may have missed.
 */
import { createHash } from 'node:crypto'
import Redis from 'ioredis'
import { ForbiddenError, MailboxTerminatedError, StoreFullError, UnavailableError, UnknownMailboxError } from '../../src/errors'
import type { Logger } from '../../src/ops/logger'
import { redactUrl } from '../../src/config'

/** A Lua script with its SHA, so it is sent in full only when Redis does not know it yet. */
export interface Script {
  lua: string
  sha: string
}

/** Prepares a script constant for `RedisConnection.run`. */
export function script(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') }
}

const REPLY_ERRORS = new Set(['ReplyError', 'SimpleError', 'BlobError'])

/** Turns a Redis failure into the shared error it stands for. */
export function storeError(error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error)
  // Redis puts its own code ("ERR") in front of a script's error reply.
  const refusal = /SWITCHBOARD:([A-Z]+)/.exec(message)?.[1]
  if (refusal === 'FORBIDDEN') return new ForbiddenError()
  if (refusal === 'UNKNOWN') return new UnknownMailboxError()
  if (refusal === 'TERMINATED') return new MailboxTerminatedError()
  // Redis at its maxmemory (policy noeviction) refuses a script's first write, so the script stored nothing.
  if (message.startsWith('OOM ')) return new StoreFullError('Redis is out of memory (its maxmemory is reached): nothing was stored. Take messages, or raise maxmemory')
  // An error Redis replied with is a fault of ours, not an outage.
  if (error instanceof Error && REPLY_ERRORS.has(error.name)) return error
  return new UnavailableError(`Redis is unreachable: ${message}`)
}

/** Milliseconds to wait before reconnect attempt `times`: quick at first, then every 2 s. */
const reconnectDelay = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000)

export class RedisConnection {
  readonly command: Redis
  private readonly subscriber: Redis
  /** Redis channel → what to do with a message on it. */
  private readonly channels = new Map<string, (payload: string) => void>()
  private subscribed = false
  private closing = false

  private constructor(
    url: string,
    name: string,
    private readonly logger: Logger,
    private readonly onResubscribed: () => void,
  ) {
    const options = {
      lazyConnect: true,
      retryStrategy: reconnectDelay,
      // A command sent before the connection dropped is sent again after a quick reconnect (a take whose reply was
      // lost then gets its message back), and fails (503) after two failed attempts, a few hundred ms.
      maxRetriesPerRequest: 2,
    }
    // While the connection is down a new command fails at once (503) rather than waiting in a queue for the next
    // reconnect attempt; reconnecting goes on in the background.
    this.command = new Redis(url, { ...options, enableOfflineQueue: false, connectionName: `${name}:command` })
    this.subscriber = new Redis(url, { ...options, connectionName: `${name}:events`, autoResubscribe: false })
    this.subscriber.on('message', (channel: string, payload: string) => this.channels.get(channel)?.(payload))
    this.subscriber.on('close', () => {
      this.subscribed = false
    })
    this.subscriber.on('ready', () => void this.resubscribe())
    // The backend hears of a reconnect once both connections are back, whichever came back last.
    this.command.on('ready', () => this.reconnected())
    for (const client of [this.command, this.subscriber]) {
      client.on('error', (error: Error) => {
        if (!this.closing) this.logger.warn('redis connection error', { error: error.message })
      })
    }
  }

  /** Connects both clients; fails with a clear message when Redis cannot be reached. */
  static async open(url: string, name: string, logger: Logger, onResubscribed: () => void, channels: Record<string, (payload: string) => void>): Promise<RedisConnection> {
    const connection = new RedisConnection(url, name, logger, onResubscribed)
    for (const [channel, handler] of Object.entries(channels)) connection.channels.set(channel, handler)
    try {
      await Promise.all([connection.command.connect(), connection.subscriber.connect()])
      await connection.resubscribe()
    } catch (error) {
      await connection.close()
      throw new Error(`cannot reach Redis at ${redactUrl(url)}: ${(error as Error).message}`)
    }
    return connection
  }

  private async resubscribe(): Promise<void> {
    if (this.subscriber.status !== 'ready') return
    const channels = [...this.channels.keys()]
    try {
      if (channels.length > 0) await this.subscriber.subscribe(...channels)
    } catch (error) {
      this.logger.warn('redis subscribe failed', { error: (error as Error).message })
      return
    }
    this.subscribed = true
    this.reconnected()
  }

  /** Tells the backend once commands can be sent and the subscriptions are live again. */
  private reconnected(): void {
    if (this.subscribed && this.command.status === 'ready') this.onResubscribed()
  }

  /** Both connections are up and the subscriptions are live. */
  isReady(): boolean {
    return this.command.status === 'ready' && this.subscribed && this.subscriber.status === 'ready'
  }

  /** Runs a script by SHA, sending its source only if Redis does not have it (new or restarted Redis). */
  async run(script: Script, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      try {
        return await this.command.evalsha(script.sha, keys.length, ...keys, ...args)
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
        return await this.command.eval(script.lua, keys.length, ...keys, ...args)
      }
    } catch (error) {
      throw storeError(error)
    }
  }

  /** Starts delivering `channel` to `handler`; resolves once Redis confirms the subscription. */
  async listen(channel: string, handler: (payload: string) => void): Promise<void> {
    this.channels.set(channel, handler)
    try {
      await this.subscriber.subscribe(channel)
    } catch (error) {
      throw storeError(error)
    }
  }

  /** Stops delivering `channel`. */
  async unlisten(channel: string): Promise<void> {
    this.channels.delete(channel)
    if (this.subscriber.status === 'ready') await this.subscriber.unsubscribe(channel).catch(() => {})
  }

  async close(): Promise<void> {
    this.closing = true
    this.subscribed = false
    await Promise.all(
      [this.command, this.subscriber].map(async (client) => {
        if (client.status === 'ready') await client.quit().catch(() => client.disconnect())
        else client.disconnect()
      }),
    )
  }
}
