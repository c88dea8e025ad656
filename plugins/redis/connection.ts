/**
 * The redis backend's two connections per instance, however many receivers
 * wait: one for commands and scripts, one for pub/sub. The subscriber
 * re-subscribes itself after every reconnect and then tells the backend,
 * which wakes its local waiters so they re-check what they may have missed.
 *
 * With Sentinels, both connections ask them for the master at every
 * (re)connect, so after a failover each instance finds the new master by
 * itself; meanwhile commands fail at once (503) and the instance is not ready.
 */
import { createHash } from 'node:crypto'
import Redis, { Cluster, type RedisOptions as ClientOptions } from 'ioredis'
import calculateSlot from 'cluster-key-slot'
import { ForbiddenError, MailboxTerminatedError, StoreFullError, UnavailableError, UnknownMailboxError } from '../../src/errors'
import type { Logger } from '../../src/ops/logger'
import { redactUrl } from '../../src/config'

/** Where the Redis is: a URL, the Sentinels that name its master, or some nodes of a Redis Cluster. */
export type RedisTarget =
  | { url: string }
  | { sentinels: { host: string; port: number }[]; name: string; username?: string; password?: string; db?: number }
  | { cluster: { host: string; port: number }[]; username?: string; password?: string; tls?: boolean }

/** The settings that say where the Redis is. */
export interface TargetSettings {
  redis_url: string
  redis_sentinels?: string
  redis_master_name?: string
  redis_cluster?: string
}

/** Parses `host:port,[v6]:port,…` into addresses (of Sentinels or Cluster nodes: `setting` names the list in errors). */
function sentinelAddresses(list: string, setting = 'redis_sentinels'): { host: string; port: number }[] {
  return list.split(',').map((entry) => {
    const match = /^\s*\[?([^\]]*?)\]?:(\d+)\s*$/.exec(entry)
    if (!match || match[1] === '') throw new Error(`${setting}: "${entry.trim()}" is not host:port`)
    return { host: match[1]!, port: Number(match[2]) }
  })
}

/** The user and password of a URL's userinfo (`user:password@`, percent-decoded), as ioredis takes them. */
function credentials(username: string | undefined, password: string | undefined): { username?: string; password?: string } {
  return { ...(username ? { username: decodeURIComponent(username) } : {}), ...(password !== undefined ? { password: decodeURIComponent(password) } : {}) }
}

/**
 * Where the settings say the Redis is. A `redis+sentinel://[user:password@]host:port,…/master[/db]` URL names
 * Sentinels too, and a `redis+cluster://[user:password@]host:port,…` URL (`rediss+cluster://` over TLS) a Cluster
 * whose nodes ask for a password or TLS (redis_cluster names the nodes of one that asks for neither).
 */
export function redisTarget(settings: TargetSettings): RedisTarget {
  if (settings.redis_cluster !== undefined) {
    if (settings.redis_sentinels !== undefined || settings.redis_master_name !== undefined) throw new Error('redis_cluster and redis_sentinels exclude each other: a Redis Cluster fails over by itself')
    return { cluster: sentinelAddresses(settings.redis_cluster, 'redis_cluster') }
  }
  if (settings.redis_sentinels !== undefined) {
    if (settings.redis_master_name === undefined) throw new Error('redis_sentinels needs redis_master_name, the name of the master the Sentinels watch')
    return { sentinels: sentinelAddresses(settings.redis_sentinels), name: settings.redis_master_name }
  }
  if (settings.redis_master_name !== undefined) throw new Error('redis_master_name needs redis_sentinels, the Sentinels that watch it')
  if (/^rediss?\+cluster:/i.test(settings.redis_url)) {
    const cluster = /^(rediss?)\+cluster:\/\/(?:([^:@/]*)(?::([^]*))?@)?([^/@]+)\/?$/i.exec(settings.redis_url)
    if (!cluster) throw new Error(`redis_url ${redactUrl(settings.redis_url)}: expected redis+cluster://[user:password@]host:port,… (rediss+cluster:// over TLS)`)
    const [, scheme, username, password, hosts] = cluster
    return { cluster: sentinelAddresses(hosts!, 'redis_url'), ...credentials(username, password), ...(scheme!.toLowerCase() === 'rediss' ? { tls: true } : {}) }
  }
  if (!/^redis\+sentinel:/i.test(settings.redis_url)) return { url: settings.redis_url }
  const match = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^]*))?@)?([^/@]+)\/([^/]+)(?:\/(\d+))?\/?$/i.exec(settings.redis_url)
  if (!match) throw new Error(`redis_url ${redactUrl(settings.redis_url)}: expected redis+sentinel://[user:password@]host:port,…/master_name[/db]`)
  const [, username, password, hosts, name, db] = match
  return { sentinels: sentinelAddresses(hosts!), name: decodeURIComponent(name!), ...credentials(username, password), ...(db !== undefined ? { db: Number(db) } : {}) }
}

/** The target as log lines and errors name it (no password). */
export function describeTarget(target: RedisTarget): string {
  if ('url' in target) return redactUrl(target.url)
  const list = (nodes: { host: string; port: number }[]) => nodes.map(({ host, port }) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)).join(',')
  if ('cluster' in target) return `Redis Cluster of ${list(target.cluster)}`
  return `master "${target.name}" of Sentinels ${list(target.sentinels)}`
}

/** Replicas that must acknowledge a write (Redis WAIT) before the answer that depends on it is given; 0: none. */
/** How long answers may take: the replicas a write waits for (WAIT) and for how long, and any one command. */
export interface Acknowledgement {
  replicas: number
  timeoutMs: number
  /**
   * Longest a command waits for Redis's answer before the caller gets 503 (0: no limit). A Redis that stopped
   * answering with its connections open (stopped, swapping, a network path that drops packets) is noticed so, not
   * only one that closed them. Kept above `timeoutMs`, which WAIT itself takes.
   */
  commandTimeoutMs?: number
}

/** A Lua script with its SHA, so it is sent in full only when Redis does not know it yet. */
export interface Script {
  lua: string
  sha: string
  /** Whether a caller's success answer depends on what it writes: then, with redis_wait_replicas, replicas must acknowledge it first. */
  answered: boolean
}

/** Prepares a script constant for `RedisConnection.run`; `answered: false` for reads and for bookkeeping no answer depends on. */
export function script(lua: string, { answered = true }: { answered?: boolean } = {}): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex'), answered }
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
  // A Cluster whose slot has no master yet (failover under way), or that moves it, refuses: the write did not run.
  if (/^(CLUSTERDOWN|TRYAGAIN|MOVED|ASK|MASTERDOWN|LOADING) /.test(message)) return new UnavailableError(`Redis is unreachable: ${message}`)
  // Redis at its maxmemory (policy noeviction) refuses a script's first write, so the script stored nothing.
  if (message.startsWith('OOM ')) return new StoreFullError('Redis is out of memory (its maxmemory is reached): nothing was stored. Take messages, or raise maxmemory')
  // An error Redis replied with is a fault of ours, not an outage.
  if (error instanceof Error && REPLY_ERRORS.has(error.name)) return error
  return new UnavailableError(`Redis is unreachable: ${message}`)
}

/** Milliseconds to wait before reconnect attempt `times`: quick at first, then every 2 s. */
const reconnectDelay = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000)

export class RedisConnection {
  readonly command: Redis | Cluster
  private readonly subscriber: Redis | Cluster
  /** Redis channel → what to do with a message on it. */
  private readonly channels = new Map<string, (payload: string) => void>()
  private subscribed = false
  private closing = false
  /** Set once both connections came up at startup. */
  private opened = false
  /** The WAIT the writes answered in this tick share, by the master they went to (a WAIT covers every earlier write of its connection). */
  private readonly nextWait = new Map<string, Promise<void>>()
  /** Counts the command connection's drops: a WAIT answered on a later connection says nothing of the writes of an earlier one. */
  private drops = 0
  /** Why a Cluster node last refused or failed a connection (a wrong password, a TLS failure): a failed start says it. */
  private lastNodeError: string | null = null

  private constructor(
    target: RedisTarget,
    name: string,
    private readonly logger: Logger,
    private readonly onResubscribed: () => void,
    private readonly acknowledgement: Acknowledgement,
    /** A key of this store: in a Cluster, keyless commands that concern the store's writes (WAIT, PING) go to the node holding its slot. */
    private readonly anchor: string,
  ) {
    const options: ClientOptions = {
      ...('url' in target || 'cluster' in target
        ? {}
        : {
            ...target,
            // At startup, Sentinels that cannot be reached fail the start at once, as an unreachable Redis does; later they are asked again.
            sentinelRetryStrategy: (times: number) => (this.opened ? reconnectDelay(times) : null),
            // A master demoted while up refuses writes until the Sentinels cut its clients: reconnect, so that they name
            // the new master, and send the refused (so not run) command again there.
            reconnectOnError: (error: Error) => (error.message.startsWith('READONLY') ? 2 : false),
          }),
      lazyConnect: true,
      retryStrategy: reconnectDelay,
      // A command sent before the connection dropped is sent again after a quick reconnect (a take whose reply was
      // lost then gets its message back), and fails (503) after two failed attempts, a few hundred ms.
      maxRetriesPerRequest: 2,
    }
    // While the connection is down a new command fails at once (503) rather than waiting in a queue for the next
    // reconnect attempt; reconnecting goes on in the background.
    const client = (more: ClientOptions) => {
      if ('cluster' in target) return this.cluster(target, more)
      return 'url' in target ? new Redis(target.url, { ...options, ...more }) : new Redis({ ...options, ...more })
    }
    const { commandTimeoutMs = 0, replicas, timeoutMs } = acknowledgement
    const commandTimeout = commandTimeoutMs > 0 ? Math.max(commandTimeoutMs, replicas > 0 ? timeoutMs + 500 : 0) : undefined
    this.command = client({ enableOfflineQueue: false, connectionName: `${name}:command`, ...(commandTimeout === undefined ? {} : { commandTimeout }) })
    this.subscriber = client({ connectionName: `${name}:events`, autoResubscribe: false })
    this.command.on('close', () => this.drops++)
    for (const client of [this.command, this.subscriber]) {
      // ioredis fails a Cluster's start with "None of startup nodes is available"; each node's own reason comes as this event.
      if (client instanceof Cluster) client.on('node error', (error: Error) => (this.lastNodeError = error.message))
    }
    if (this.command instanceof Cluster) {
      // A node lost (a master killed, its replica promoted): its connection's writes are not covered by a later WAIT, and
      // wake-ups published meanwhile (classic pub/sub, over the cluster bus) may be lost, so the waiters look again.
      this.command.on('-node', () => {
        this.drops++
        void this.wakeWhenServing()
      })
      this.command.on('+node', () => void this.wakeWhenServing())
    }
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

  /**
   * A Cluster client. Commands to a master that is lost are sent again once its replica serves the slot (ioredis asks
   * the nodes for the slots every 200 ms meanwhile, a few times, then the caller gets 503). Pub/sub is classic: any
   * node hears every PUBLISH, and ioredis moves the subscriptions to another node when the one it used goes.
   */
  private cluster({ cluster: nodes, username, password, tls }: Extract<RedisTarget, { cluster: unknown }>, more: ClientOptions): Cluster {
    return new Cluster(nodes, {
      lazyConnect: true,
      enableOfflineQueue: more.enableOfflineQueue ?? true,
      // At startup, nodes that cannot be reached fail the start at once, as an unreachable Redis does.
      clusterRetryStrategy: (times: number) => (this.opened ? reconnectDelay(times) : null),
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
      retryDelayOnTryAgain: 200,
      slotsRefreshInterval: 2000,
      redisOptions: {
        connectionName: more.connectionName,
        maxRetriesPerRequest: 2,
        ...(more.commandTimeout === undefined ? {} : { commandTimeout: more.commandTimeout }),
        ...(username === undefined ? {} : { username }),
        ...(password === undefined ? {} : { password }),
        // Every node the cluster names is reached over TLS, checked against the system's CAs (and NODE_EXTRA_CA_CERTS).
        ...(tls ? { tls: {} } : {}),
      },
    })
  }

  /** Connects both clients; fails with a clear message when Redis cannot be reached. */
  static async open(
    target: RedisTarget,
    name: string,
    logger: Logger,
    onResubscribed: () => void,
    channels: Record<string, (payload: string) => void>,
    acknowledgement: Acknowledgement = { replicas: 0, timeoutMs: 0 },
    anchor = `${name}:store`,
  ): Promise<RedisConnection> {
    const connection = new RedisConnection(target, name, logger, onResubscribed, acknowledgement, anchor)
    for (const [channel, handler] of Object.entries(channels)) connection.channels.set(channel, handler)
    try {
      await Promise.all([connection.command.connect(), connection.subscriber.connect()])
      connection.opened = true
      await connection.resubscribe()
    } catch (error) {
      await connection.close()
      const cause = connection.lastNodeError === null ? '' : ` (${connection.lastNodeError})`
      throw new Error(`cannot reach Redis at ${describeTarget(target)}: ${(error as Error).message}${cause}`)
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

  /** Tells the backend once commands can be sent and the subscriptions are live again (in a Cluster, once every slot of the store answers). */
  private reconnected(): void {
    if (!this.subscribed || this.command.status !== 'ready') return
    if (this.command instanceof Cluster && this.opened) void this.wakeWhenServing()
    else this.onResubscribed()
  }

  /** Sends a keyless command to the server holding `key` (by default the store's keys; in a Cluster, the master of the key's slot) and resolves with its reply. */
  async atStore(name: string, args: (string | number)[] = [], key = this.anchor): Promise<unknown> {
    if (!(this.command instanceof Cluster)) return this.command.call(name, ...args)
    // A pipeline goes to one node: the one serving its keyed command's slot.
    const results = (await this.command.pipeline().exists(key).call(name, ...args).exec()) ?? []
    // A keyed command refused (MOVED to a node that is gone) means the keyless one ran on some other node.
    const [keyError] = results[0] ?? [new Error('no reply')]
    const [error, reply] = results[1] ?? [new Error('no reply'), null]
    // ioredis asks the nodes for the slots again on a MOVED of a lone command, not of a pipeline's: ask here.
    if (keyError && /^(MOVED|ASK) /.test(keyError.message)) this.command.refreshSlotsCache()
    if (keyError ?? error) throw keyError ?? error
    return reply
  }

  /** Slots' keys (each mailbox and workspace bucket's, beside the store's) that must answer for /readyz and before waiters are woken after a Cluster change. */
  probes: string[] = []
  private probing: Promise<void> | null = null

  /**
   * After a node left or joined a Cluster: once a master serves every slot of the store again, tells the backend,
   * which wakes its waiters (woken earlier, a waiter on a slot without a master would get 503 instead of waiting).
   */
  private wakeWhenServing(): Promise<void> {
    if (!this.opened || this.closing) return Promise.resolve()
    this.probing ??= (async () => {
      while (!this.closing && !(await this.serving())) await Bun.sleep(200)
      if (!this.closing && this.subscribed) this.onResubscribed()
    })().finally(() => (this.probing = null))
    return this.probing
  }

  /** Whether the masters of every slot of the store answer (one, the only server, without a Cluster). */
  async serving(): Promise<boolean> {
    const command = this.command
    if (!(command instanceof Cluster)) return (await command.ping().catch(() => null)) === 'PONG'
    // A keyed read per slot: ioredis follows a slot that moved to its new master by itself.
    const answers = await Promise.all([this.anchor, ...this.probes].map((key) => command.exists(key).then(() => true, () => false)))
    return answers.every(Boolean)
  }

  /** Both connections are up and the subscriptions are live. */
  isReady(): boolean {
    return this.command.status === 'ready' && this.subscribed && this.subscriber.status === 'ready'
  }

  /**
   * Runs a script by SHA, sending its source only if Redis does not have it (new or restarted Redis). A script
   * whose writes a caller's answer depends on resolves, with redis_wait_replicas, once replicas acknowledged them.
   */
  async run(script: Script, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    let reply: unknown
    try {
      try {
        reply = await this.command.evalsha(script.sha, keys.length, ...keys, ...args)
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
        reply = await this.command.eval(script.lua, keys.length, ...keys, ...args)
      }
    } catch (error) {
      throw storeError(error)
    }
    if (script.answered) await this.replicated(keys[0])
    return reply
  }

  /**
   * Resolves once the replicas acknowledged every write answered on this connection so far (at once when
   * redis_wait_replicas is 0); in a Cluster, on the connection to the master holding `key` (where the writes went).
   */
  replicated(key = this.anchor): Promise<void> {
    const { replicas, timeoutMs } = this.acknowledgement
    if (replicas === 0) return Promise.resolve()
    // Writes answered in the same tick share one WAIT per master written to (a WAIT covers every earlier write of its
    // connection, and a Cluster client has one connection per master), sent after all of them.
    const drops = this.drops
    const master = this.command instanceof Cluster ? (this.command.slots[calculateSlot(key)]?.[0] ?? key) : this.anchor
    const pending = this.nextWait.get(master)
    if (pending) return pending
    const wait = Promise.resolve().then(async () => {
      this.nextWait.delete(master)
      let acknowledged: number
      try {
        acknowledged = (await this.atStore('WAIT', [replicas, timeoutMs], key)) as number
      } catch (error) {
        throw storeError(error)
      }
      // ioredis sends a WAIT whose reply was lost again after reconnecting, maybe to a new master: that answer does not count.
      if (this.drops !== drops) throw new UnavailableError('the connection to Redis dropped before the replicas acknowledged the write; it may or may not survive a failover')
      if (acknowledged < replicas) throw new UnavailableError(`the write was not acknowledged by ${replicas} Redis replica(s) within ${timeoutMs} ms (only by ${acknowledged}); it may or may not survive a failover`)
    })
    this.nextWait.set(master, wait)
    return wait
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
