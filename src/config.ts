/**
 * The one configuration schema. Every setting can come from a flag
 * (`--message-size-limit-kb 512`), an environment variable
 * (`SWITCHBOARD_MESSAGE_SIZE_LIMIT_KB=512`) or the TOML config file
 * (`message_size_limit_kb = 512`); flags win over env, env over the file,
 * the file over defaults. An Academy `exchange.toml` is accepted as it is.
 */
import * as v from 'valibot'
import { closest, distance } from 'fastest-levenshtein'

const text = (description: string) => v.pipe(v.string(), v.minLength(1), v.description(description))
const integer = (min: number, max: number, description: string) =>
  v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max), v.description(description))
const positive = (description: string) => v.pipe(v.number(), v.gtValue(0), v.description(description))
const flag = (description: string) => v.pipe(v.boolean(), v.description(description))
const choice = <const T extends readonly [string, ...string[]]>(options: T, description: string) =>
  v.pipe(v.picklist(options), v.description(description))

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const

/** Python's level names and numbers (as Academy writes them: `"INFO"`, `20`) onto Switchboard's levels; CRITICAL has no level of its own, so it shows errors. */
const LEVEL_ALIASES = new Map<string, string>([
  ['warning', 'warn'],
  ['critical', 'error'],
  ['fatal', 'error'],
  ['10', 'debug'],
  ['20', 'info'],
  ['30', 'warn'],
  ['40', 'error'],
  ['50', 'error'],
])

const LogLevelSchema = v.pipe(
  v.union([v.string(), v.number()]),
  v.transform((level) => {
    const name = String(level).trim().toLowerCase()
    return LEVEL_ALIASES.get(name) ?? name
  }),
  v.picklist(LOG_LEVELS, 'expected debug, info, warn(ing), error, critical or silent (any case), or a Python level number 10, 20, 30, 40 or 50'),
  v.description('Log level: a name (any case; Python\'s WARNING and CRITICAL too) or a Python level number (10, 20, 30, 40, 50).'),
)

export const ConfigSchema = v.object({
  host: v.optional(text('Address to listen on.'), '127.0.0.1'),
  port: v.optional(integer(0, 65535, 'Port to listen on (0 picks a free one).'), 8700),
  backend: v.optional(text('Backend plugin: memory, sqlite, redis, or a path to a plugin file.'), 'memory'),
  auth: v.optional(choice(['none', 'token'], 'none: every caller is the same anonymous client; token: bearer tokens from tokens_file.'), 'none'),
  tokens_file: v.optional(text('TOML file of bearer tokens ([[tokens]] token|token_sha256, client, groups).')),
  admin_token: v.optional(text('Bearer token of the operator (admin routes: workspaces).')),
  listen_timeout: v.optional(positive('Longest wait a receiver may ask for, in seconds (Academy listen_timeout_s).'), 60),
  message_size_limit_kb: v.optional(integer(1, 1048576, 'Largest exchange message, in KiB.'), 1024),
  max_body_kb: v.optional(integer(1, 1048576, 'Largest request body on any route, in KiB.'), 16384),
  sse_ping_s: v.optional(positive('Seconds between keep-alive comments on idle event streams.'), 15),
  sse_replay_s: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(3600), v.description('Seconds a message written to a listen stream stays replayable to a listener that reconnects with Last-Event-ID (0: none).')), 30),
  sse_replay_kb: v.optional(integer(0, 1048576, 'KiB of written listen-stream messages kept for replay, over every mailbox (the oldest go first).'), 8192),
  events_retained: v.optional(integer(1, 10_000_000, 'Events the backend keeps for GET /events to resume from with Last-Event-ID (every built-in backend; the oldest go first).'), 10000),
  events_retained_kb: v.optional(integer(1, 4_194_304, 'KiB of JSON the retained events take together (the oldest go first).'), 8192),
  event_stream_buffer: v.optional(integer(1, 100_000, 'Events waiting to be written to one GET /events stream; a reader that falls this far behind is ended and resumes with Last-Event-ID.'), 1000),
  webhooks_per_tenant: v.optional(integer(0, 1000, 'Webhook subscriptions one tenant may hold (0: webhooks off).'), 25),
  webhook_backlog: v.optional(integer(1, 1_000_000, 'Deliveries, pending and dead-lettered, one webhook subscription may hold; past it new events for it are dropped and logged.'), 1000),
  webhook_attempts: v.optional(integer(1, 100, 'Attempts at one webhook delivery before it is dead-lettered.'), 8),
  webhook_backoff_ms: v.optional(integer(10, 3_600_000, 'Wait before the second attempt at a webhook delivery; each later wait doubles, up to an hour.'), 1000),
  webhook_timeout_ms: v.optional(integer(100, 60_000, 'Longest one webhook delivery may take, connection to answer.'), 10000),
  log_level: v.optional(LogLevelSchema, 'info'),
  log_file: v.optional(text('File the log lines are also appended to (stderr keeps them); its folder is created (Academy log_file, [logger] logfile).')),
  tls_cert: v.optional(text('PEM certificate file; with tls_key, serve HTTPS/WSS (Academy certfile).')),
  tls_key: v.optional(text('PEM private key file (Academy keyfile).')),
  db: v.optional(text('SQLite database file (backend sqlite).'), './switchboard.db'),
  redis_url: v.optional(text('Redis URL (backend redis): redis:// or rediss:// (TLS) with [user:password@]; redis+sentinel://[user:password@]host:port,…/master_name[/db] for Sentinels; redis+cluster://[user:password@]host:port,… (rediss+cluster:// over TLS) for a Cluster that asks for a password or TLS.'), 'redis://127.0.0.1:6379'),
  redis_prefix: v.optional(text('Prefix of every Redis key (backend redis).'), 'switchboard'),
  redis_sentinels: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\s*(\[[^\]]+\]|[^\s,:\[\]]+):\d{1,5}\s*(,\s*(\[[^\]]+\]|[^\s,:\[\]]+):\d{1,5}\s*)*$/, 'expected host:port of each Sentinel, separated by commas'),
      v.description('Comma-separated host:port of the Redis Sentinels that name the master (backend redis); with redis_master_name, used instead of redis_url. A redis_url of the form redis+sentinel://[user:password@]host:port,…/master_name[/db] does the same.'),
    ),
  ),
  redis_master_name: v.optional(text('Name of the master the Sentinels of redis_sentinels watch (backend redis).')),
  redis_cluster: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\s*(\[[^\]]+\]|[^\s,:\[\]]+):\d{1,5}\s*(,\s*(\[[^\]]+\]|[^\s,:\[\]]+):\d{1,5}\s*)*$/, 'expected host:port of each Redis Cluster node, separated by commas'),
      v.description('Comma-separated host:port of some nodes of a Redis Cluster (backend redis); the others are found from them. Used instead of redis_url and the Sentinels. A Cluster that asks for a password or TLS: redis_url = redis+cluster://[user:password@]host:port,… (rediss+cluster:// over TLS).'),
    ),
  ),
  redis_wait_replicas: v.optional(
    integer(0, 100, 'Replicas that must acknowledge (Redis WAIT) each write a success answer depends on before it is given, so that the write survives a failover; fewer within redis_wait_timeout_ms and the caller gets 503. 0: off (backend redis).'),
    0,
  ),
  redis_wait_timeout_ms: v.optional(integer(1, 600000, 'Longest wait for the replicas of redis_wait_replicas to acknowledge a write (backend redis).'), 1000),
  redis_command_timeout_ms: v.optional(
    integer(0, 600000, 'Longest a Redis command may wait for its answer before the caller gets 503, so a Redis that stops answering with its connections open is noticed (at least redis_wait_timeout_ms + 500 with redis_wait_replicas). 0: no limit (backend redis).'),
    2000,
  ),
  mailbox_expiration_d: v.optional(positive('Days an idle mailbox and its queue are kept (every built-in backend).'), 7),
  gravestone_expiration_d: v.optional(positive('Days a terminated mailbox is remembered (every built-in backend).'), 365),
  availability_timeout_ms: v.optional(integer(1, 600000, 'How long a worker may take to answer an availability request.'), 3000),
  dispatch_timeout_ms: v.optional(integer(1, 600000, 'Longest a whole dispatch may take before the caller is told no worker is available.'), 10000),
  job_queue_max: v.optional(
    integer(0, 1000000, 'Pending jobs that may wait per agent name (and client) for a worker with room; past it a dispatch is refused 503 with Retry-After (0: no backlog, a dispatch no worker can take at once is refused).'),
    0,
  ),
  job_queue_client_max: v.optional(
    integer(1, 100000000, 'Pending jobs one client may have waiting in the backlog over all its agent names; past it a dispatch is refused 503 with Retry-After.'),
    10000,
  ),
  job_pending_ttl_s: v.optional(integer(1, 86400, 'Seconds a job may wait in the backlog; past it, it ends failed with the reason in its history.'), 300),
  worker_grace_s: v.optional(v.pipe(v.number(), v.minValue(0), v.description('Seconds a lost worker has to reconnect before its jobs are handled.')), 15),
  worker_loss_action: v.optional(choice(['redispatch', 'fail'], 'What happens to the jobs of a worker lost for longer than the grace period.'), 'redispatch'),
  instance_heartbeat_s: v.optional(
    v.pipe(
      v.number(),
      v.minValue(0.05),
      v.maxValue(3600),
      v.description(
        'Seconds between the heartbeats every instance writes into the store. An instance silent for 3 of them counts as dead: the others learn of it within 4 of them, then recover what it held (its workers get worker_grace_s, messages it had in flight go back to their mailboxes).',
      ),
    ),
    5,
  ),
  worker_register_timeout_s: v.optional(
    positive('Seconds a WebSocket on /agent has to send a valid register message; past it the worker gets a refused register reply and close code 1008.'),
    10,
  ),
  worker_ping_s: v.optional(positive('Seconds between WebSocket pings to workers; two missed pings drop a worker.'), 10),
  public_url: v.optional(text('URL clients reach this server at (used in init-config and agent cards); default from the request.')),
  allow_private_agent_urls: v.optional(flag('Allow agent URLs in private and loopback ranges.'), false),
  allow_unverified_cards: v.optional(
    flag("Register an agent whose card signature does not verify, serving its card unsigned with a warning in the log and on the workspace; default: refused with the reason."),
    false,
  ),
  card_signing_key: v.optional(text("Private key file (PEM or JWK: EC P-256/P-384/P-521, RSA or Ed25519) the agent cards Switchboard serves are signed with; default: a P-256 key generated once and kept in the backend.")),
  open_registration: v.optional(flag('Let unknown agents register (a root workspace is created).'), false),
  heartbeat_ttl_s: v.optional(positive('Seconds without a heartbeat before an agent counts as offline.'), 180),
  a2a_connect_timeout_ms: v.optional(integer(1, 600000, 'Connect timeout towards agents.'), 5000),
  a2a_header_timeout_s: v.optional(positive('Longest wait for an agent\'s response headers.'), 180),
  a2a_idle_timeout_s: v.optional(positive('Longest silence inside an agent response body; a body of declared length must arrive whole within it.'), 300),
  a2a_max_duration_s: v.optional(positive('Absolute ceiling of one proxied call.'), 3600),
  a2a_body_limit_kb: v.optional(integer(1, 1048576, 'Largest proxied request body, in KiB.'), 16384),
  a2a_response_limit_kb: v.optional(
    integer(1, 1048576, 'Largest agent answer the proxy reads, and largest event of a relayed stream, in KiB; past it the caller gets a JSON-RPC error (502, or an error event ending the stream).'),
    16384,
  ),
  rate_limit_per_s: v.optional(v.pipe(v.number(), v.minValue(0), v.description('Requests per second per caller (token client, or remote address when anonymous); 0 turns rate limiting off.')), 0),
  rate_limit_burst: v.optional(integer(1, 1000000, 'Requests a caller may make at once before rate_limit_per_s applies (token bucket size).'), 200),
  max_waiting_per_client: v.optional(integer(0, 1000000, 'Open long-polls plus listen streams per client; 0 means no limit.'), 1000),
  max_field_kb: v.optional(
    integer(1, 1048576, 'Largest free-form JSON object field a client may store (job metadata, room options, an agent card), in KiB of its JSON text; a larger one is refused with 413 naming the field.'),
    64,
  ),
  max_ws_frame_kb: v.optional(integer(1, 1048576, 'Largest WebSocket frame a worker may send on /agent, in KiB.'), 1024),
  metrics: v.optional(choice(['on', 'off', 'admin'], 'GET /metrics in the Prometheus text format; admin: only with the admin_token as bearer token.'), 'on'),
  max_connections: v.optional(integer(0, 1000000, 'Open connections (HTTP and worker WebSockets together) beyond which a new one is closed at once; 0 means no limit.'), 0),
  connection_idle_timeout_s: v.optional(
    v.pipe(
      v.number(),
      v.minValue(0),
      v.description('Seconds a connection may stay silent while no request on it is being answered (between requests, or a request whose body stopped arriving) before it is closed; 0 never closes one for that.'),
    ),
    75,
  ),
  request_body_timeout_s: v.optional(
    v.pipe(
      v.number(),
      v.minValue(0),
      v.description('Seconds a request body has to arrive whole once its route starts reading it (a deadline, not a silence timeout, so a body dribbled a byte at a time is cut too); past it the caller gets 408 and the connection is closed. 0: no deadline.'),
    ),
    60,
  ),
  shutdown_timeout_s: v.optional(v.pipe(v.number(), v.minValue(0), v.description('Seconds in-flight requests (A2A calls) get to finish after SIGTERM/SIGINT.')), 10),
  cors_origins: v.optional(v.pipe(v.string(), v.description('Browser origins allowed by CORS: a comma-separated list, *, or empty (CORS off).')), ''),
  backend_options: v.optional(v.record(v.string(), v.unknown()), {}),
})

export type Config = v.InferOutput<typeof ConfigSchema>
export type ConfigKey = keyof Config

/** Thrown for a bad setting; the message names the setting and its sources. */
export class ConfigError extends Error {}

type Entry = { type: string; wrapped?: Entry; default?: unknown; pipe?: readonly { type: string; description?: string; options?: string[] }[]; options?: string[] }

/** What the schema says about one setting: its base type, default, description and choices. */
export function describeSetting(key: string): { type: string; default: unknown; description: string; options?: string[] } {
  const entry = (ConfigSchema.entries as unknown as Record<string, Entry>)[key]
  if (!entry) throw new ConfigError(`unknown setting "${key}"`)
  const inner = entry.type === 'optional' && entry.wrapped ? entry.wrapped : entry
  const description = inner.pipe?.find((item) => item.type === 'description')?.description ?? ''
  // A setting that accepts other spellings (log_level) keeps its choices in a picklist further down its pipe.
  const options = inner.type === 'picklist' ? inner.options : inner.pipe?.find((item) => item.type === 'picklist')?.options
  return { type: inner.type, default: entry.default, description, options }
}

export const SETTINGS = Object.keys(ConfigSchema.entries).filter((key) => key !== 'backend_options') as ConfigKey[]

export const flagName = (key: string) => `--${key.replaceAll('_', '-')}`
export const envName = (key: string) => `SWITCHBOARD_${key.toUpperCase()}`

/** Turns a string from a flag or the environment into the type the schema expects (validation comes after). */
function coerce(key: string, raw: string): unknown {
  const { type } = describeSetting(key)
  if (type === 'number') return raw.trim() === '' ? Number.NaN : Number(raw)
  if (type === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true
    if (/^(0|false|no|off)$/i.test(raw)) return false
    return raw
  }
  return raw
}

export interface CommandLine {
  command: 'serve' | 'config' | 'healthcheck' | 'help' | 'version'
  configFile?: string
  settings: Record<string, unknown>
}

/** ` (did you mean "x"?)` when one of `known` is near enough to `name` to be what was meant, else ''. */
export function suggestion(name: string, known: readonly string[]): string {
  if (known.length === 0) return ''
  const nearest = closest(name, known)
  // Further than a third of the name away, the nearest is another word rather than a typo of it.
  return distance(name, nearest) <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean "${nearest}"?)` : ''
}

/** Parses argv (without the executable and script). */
export function parseArgs(argv: readonly string[]): CommandLine {
  const settings: Record<string, unknown> = {}
  let command: CommandLine['command'] = 'serve'
  let configFile: string | undefined
  const byFlag = new Map(SETTINGS.map((key) => [flagName(key), key]))
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === 'serve' && i === 0) continue
    if ((arg === 'config' || arg === 'healthcheck') && i === 0) {
      command = arg
      continue
    }
    if (arg === '--help' || arg === '-h' || arg === 'help') return { command: 'help', settings }
    if (arg === '--version' || arg === '-v' || arg === 'version') return { command: 'version', settings }
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument "${arg}" (see --help)`)
    const eq = arg.indexOf('=')
    const name = eq === -1 ? arg : arg.slice(0, eq)
    const inline = eq === -1 ? undefined : arg.slice(eq + 1)
    const takeValue = () => {
      if (inline !== undefined) return inline
      const next = argv[i + 1]
      if (next === undefined || next.startsWith('--')) throw new ConfigError(`${name} needs a value (see --help)`)
      i++
      return next
    }
    if (name === '--config') {
      configFile = takeValue()
      continue
    }
    const negated = name.startsWith('--no-') ? byFlag.get(`--${name.slice(5)}`) : undefined
    if (negated && describeSetting(negated).type === 'boolean' && inline === undefined) {
      settings[negated] = false
      continue
    }
    const key = byFlag.get(name)
    if (!key) throw new ConfigError(`unknown flag ${name}${suggestion(name, ['--config', '--help', '--version', ...byFlag.keys()])} (see --help)`)
    if (describeSetting(key).type === 'boolean' && inline === undefined && (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--'))) {
      settings[key] = true
      continue
    }
    settings[key] = coerce(key, takeValue())
  }
  return { command, configFile, settings }
}

/** Settings from SWITCHBOARD_* environment variables. */
export function readEnv(env: Record<string, string | undefined>): Record<string, unknown> {
  const settings: Record<string, unknown> = {}
  for (const key of SETTINGS) {
    const raw = env[envName(key)]
    if (raw !== undefined) settings[key] = coerce(key, raw)
  }
  return settings
}

/** A config file mapped onto settings, with the file key each setting came from (`port`, `[backend] kwargs`). */
export interface FileSettings {
  settings: Record<string, unknown>
  keys: Record<string, string>
}

const isTable = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** Academy's top-level keys that are Switchboard settings under another name. */
const ACADEMY_RENAMED = new Map<string, ConfigKey>([
  ['listen_timeout_s', 'listen_timeout'],
  ['certfile', 'tls_cert'],
  ['keyfile', 'tls_key'],
])

/** The keys of Academy's tables (ExchangeServingConfig), plus `[auth] tokens_file` of Switchboard's. */
const TABLE_KEYS = {
  backend: ['kind', 'hostname', 'port', 'message_size_limit_kb', 'mailbox_expiration_d', 'gravestone_expiration_d', 'kwargs'],
  logger: ['level', 'logfile', 'logfile_level', 'rotate', 'rotation_interval_days', 'backup_count'],
  auth: ['method', 'kwargs', 'tokens_file'],
} as const

/** The keyword arguments of Academy's Redis client (`[backend] kwargs`) that Switchboard's Redis connection takes; all of them become part of redis_url. */
const REDIS_KWARGS = ['password', 'username', 'db', 'ssl']

/** Refuses a key of `table` that is not one of `known`, naming it and the nearest known one. */
function checkKeys(table: Record<string, unknown>, name: string, known: readonly string[]): void {
  for (const key of Object.keys(table)) {
    if (!known.includes(key)) throw new ConfigError(`unknown key "${key}" in [${name}]${suggestion(key, known)}; [${name}] takes ${known.join(', ')}`)
  }
}

/** Academy's `[backend]` kind = "redis" as a Redis URL: hostname, port, and kwargs password, username, db and ssl (rediss://). */
function redisUrl(table: Record<string, unknown>): string {
  const kwargs = table.kwargs ?? {}
  if (!isTable(kwargs)) throw new ConfigError('[backend] kwargs must be a table, e.g. kwargs = { password = "…" }')
  for (const key of Object.keys(kwargs)) {
    if (!REDIS_KWARGS.includes(key)) {
      throw new ConfigError(`[backend] kwargs.${key} is not supported${suggestion(key, REDIS_KWARGS)}: Switchboard's Redis connection takes ${REDIS_KWARGS.join(', ')} from kwargs`)
    }
  }
  const { password, username, db, ssl } = kwargs
  const host = table.hostname ?? 'localhost'
  const port = table.port ?? 6379
  if (typeof host !== 'string' || host === '') throw new ConfigError('[backend] hostname must be a host name or address')
  if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) throw new ConfigError('[backend] port must be a port number (1-65535)')
  if (password !== undefined && typeof password !== 'string') throw new ConfigError('[backend] kwargs.password must be a string')
  if (username !== undefined && typeof username !== 'string') throw new ConfigError('[backend] kwargs.username must be a string')
  if (db !== undefined && (!Number.isInteger(db) || (db as number) < 0)) throw new ConfigError('[backend] kwargs.db must be a database number (0, 1, …)')
  if (ssl !== undefined && typeof ssl !== 'boolean') throw new ConfigError('[backend] kwargs.ssl must be true or false')
  // Percent-encoded so that any password survives; the Redis client decodes it.
  const userinfo = password !== undefined || username !== undefined ? `${encodeURIComponent(username ?? '')}:${encodeURIComponent(password ?? '')}@` : ''
  const url = `${ssl ? 'rediss' : 'redis'}://${userinfo}${host.includes(':') ? `[${host}]` : host}:${port}${db === undefined ? '' : `/${db}`}`
  if (!URL.canParse(url)) throw new ConfigError(`[backend] hostname "${host}" is not a host name or address`)
  return url
}

/** Maps a parsed TOML document (ours, or Academy's exchange.toml) onto settings; a key neither knows stops startup. */
export function fromFile(document: Record<string, unknown>): FileSettings {
  const settings: Record<string, unknown> = {}
  const keys: Record<string, string> = {}
  const set = (setting: string, value: unknown, key: string) => {
    settings[setting] = value
    keys[setting] = key
  }
  const topKeys = [...SETTINGS, 'backend_options', 'logger', ...ACADEMY_RENAMED.keys()]
  for (const [key, value] of Object.entries(document)) {
    const renamed = ACADEMY_RENAMED.get(key)
    if (renamed) set(renamed, value, key)
    else if (key === 'backend_options' || key === 'logger') {
      if (!isTable(value)) throw new ConfigError(`"${key}" must be a table ([${key}])`)
      if (key === 'backend_options') set(key, value, '[backend_options]')
    } else if ((key === 'backend' || key === 'auth') && isTable(value)) continue // Academy's tables, read below
    else if ((SETTINGS as readonly string[]).includes(key)) set(key, value, key)
    else throw new ConfigError(`unknown key "${key}"${suggestion(key, topKeys)} (switchboard --help lists the settings)`)
  }
  // Academy reads the private key from the certfile when keyfile is absent (one PEM holding both).
  if (document.certfile !== undefined && document.keyfile === undefined && document.tls_key === undefined) set('tls_key', document.certfile, 'certfile')

  const backend = document.backend
  if (isTable(backend)) {
    checkKeys(backend, 'backend', TABLE_KEYS.backend)
    // Academy's kind defaults to whichever of its two backend tables the keys fit: python takes only message_size_limit_kb.
    const kind = backend.kind ?? (Object.keys(backend).some((key) => key !== 'message_size_limit_kb') ? 'redis' : 'python')
    if (typeof kind !== 'string') throw new ConfigError('[backend] kind must be "python", "redis" or a Switchboard backend (memory, sqlite, a plugin file)')
    const name = kind === 'python' ? 'memory' : kind
    set('backend', name, backend.kind === undefined ? '[backend]' : '[backend] kind')
    const where = ['hostname', 'port', 'kwargs'].filter((key) => backend[key] !== undefined)
    if (name === 'redis') set('redis_url', redisUrl(backend), `[backend] ${where.length > 0 ? where.join(', ') : 'kind'}`)
    else {
      for (const key of ['hostname', 'port', 'kwargs']) {
        if (backend[key] !== undefined) throw new ConfigError(`[backend] ${key} is for kind = "redis", not ${JSON.stringify(kind)}`)
      }
    }
    for (const key of ['message_size_limit_kb', 'mailbox_expiration_d', 'gravestone_expiration_d'] as const) {
      if (backend[key] !== undefined) set(key, backend[key], `[backend] ${key}`)
    }
  }

  const logger = document.logger
  if (isTable(logger)) {
    checkKeys(logger, 'logger', TABLE_KEYS.logger)
    if (logger.level !== undefined) set('log_level', logger.level, '[logger] level')
    if (logger.logfile !== undefined) set('log_file', logger.logfile, '[logger] logfile')
    if (logger.rotate === true) {
      throw new ConfigError('[logger] rotate = true: Switchboard does not rotate its log file; rotate it from outside (it is appended to, so e.g. logrotate with copytruncate)')
    }
    if (logger.logfile_level !== undefined) {
      const level = (raw: unknown) => v.safeParse(LogLevelSchema, raw).output
      if (logger.level === undefined || level(logger.logfile_level) !== level(logger.level)) {
        throw new ConfigError('[logger] logfile_level differs from [logger] level: Switchboard writes the same lines to stderr and the log file, so set [logger] level alone')
      }
    }
  }

  const auth = document.auth
  if (isTable(auth)) {
    checkKeys(auth, 'auth', TABLE_KEYS.auth)
    if (auth.method === 'globus') throw new ConfigError('auth method "globus" is not supported: use auth = "token" with tokens_file')
    if (isTable(auth.kwargs) && Object.keys(auth.kwargs).length > 0) {
      throw new ConfigError('[auth] kwargs are the options of Globus auth, which Switchboard does not offer: use auth = "token" with tokens_file')
    }
    if (auth.method !== undefined) set('auth', auth.method, '[auth] method')
    if (auth.tokens_file !== undefined) set('tokens_file', auth.tokens_file, '[auth] tokens_file')
  }
  return { settings, keys }
}

/** Reads and maps a TOML config file. */
export async function readConfigFile(path: string): Promise<FileSettings> {
  let source: string
  try {
    source = await Bun.file(path).text()
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`)
  }
  let document: Record<string, unknown>
  try {
    document = Bun.TOML.parse(source) as Record<string, unknown>
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid TOML: ${(error as Error).message}`)
  }
  try {
    return fromFile(document)
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(`config file ${path}: ${error.message}`)
    throw error
  }
}

/** Validates merged settings (later sources win) against the one schema. */
export function resolveConfig(...sources: Record<string, unknown>[]): Config {
  const merged: Record<string, unknown> = {}
  for (const source of sources) for (const [key, value] of Object.entries(source)) if (value !== undefined) merged[key] = value
  const parsed = v.safeParse(ConfigSchema, merged)
  if (!parsed.success) {
    const issue = parsed.issues[0]
    const key = String(issue.path?.[0]?.key ?? '')
    const where = key ? `setting "${key}" (${flagName(key)} / ${envName(key)})` : 'configuration'
    throw new ConfigError(`invalid ${where}: ${issue.message}`)
  }
  if (Boolean(parsed.output.tls_cert) !== Boolean(parsed.output.tls_key)) {
    throw new ConfigError('invalid setting "tls_cert"/"tls_key": give both or neither')
  }
  if (parsed.output.metrics === 'admin' && !parsed.output.admin_token) {
    throw new ConfigError('invalid setting "metrics" (--metrics / SWITCHBOARD_METRICS): admin needs admin_token')
  }
  if (parsed.output.auth === 'token' && !parsed.output.tokens_file) {
    throw new ConfigError('invalid setting "tokens_file" (--tokens-file / SWITCHBOARD_TOKENS_FILE): required when auth = "token"')
  }
  return parsed.output
}

/** Where a setting's value came from: `name` is the flag, the env variable, or the file and its key. */
export interface Source {
  kind: 'default' | 'file' | 'env' | 'flag'
  name: string
}

export interface LoadedConfig {
  command: CommandLine['command']
  config: Config
  /** The source of each setting given anywhere; a setting absent here has its default. */
  sources: Record<string, Source>
}

/** Loads the configuration from argv, env and the optional file, in that precedence. */
export async function loadConfig(argv: readonly string[], env: Record<string, string | undefined>): Promise<LoadedConfig> {
  const line = parseArgs(argv)
  if (line.command === 'help' || line.command === 'version') return { command: line.command, config: resolveConfig({}), sources: {} }
  const configFile = line.configFile ?? env.SWITCHBOARD_CONFIG
  const file = configFile ? await readConfigFile(configFile) : { settings: {}, keys: {} }
  const fromEnv = readEnv(env)
  const sources: Record<string, Source> = {}
  for (const key of Object.keys(file.settings)) sources[key] = { kind: 'file', name: `${configFile}: ${file.keys[key]}` }
  for (const key of Object.keys(fromEnv)) sources[key] = { kind: 'env', name: envName(key) }
  for (const key of Object.keys(line.settings)) sources[key] = { kind: 'flag', name: flagName(key) }
  return { command: line.command, config: resolveConfig(file.settings, fromEnv, line.settings), sources }
}

/** Refuses `[backend_options]` keys the backend's options schema does not name; a schema without a fixed list of keys decides alone. */
export function checkBackendOptions(backend: string, schema: unknown, options: Record<string, unknown>): void {
  const { type, entries } = schema as { type?: string; entries?: Record<string, unknown> }
  if ((type !== 'object' && type !== 'strict_object') || !isTable(entries)) return
  const known = Object.keys(entries)
  const own = known.filter((key) => !(SETTINGS as readonly string[]).includes(key))
  for (const key of Object.keys(options)) {
    if (!Object.hasOwn(entries, key)) {
      throw new ConfigError(`unknown key "${key}" in [backend_options]${suggestion(key, known)}: backend "${backend}" takes ${own.length > 0 ? own.join(', ') : 'no options of its own'} there`)
    }
  }
}

/** The URL with its password masked; only the password of a URL is secret, the rest says where Switchboard connects. */
export function redactUrl(url: string): string {
  // Greedy to the last "@", so a password holding a raw "@" is masked whole.
  return url.replace(/^([a-z][\w+.-]*:\/\/[^:@/]*:)[^]*@/i, '$1********@')
}

/** Settings whose value is a secret, printed masked. */
const SECRETS: Partial<Record<ConfigKey, (value: string) => string>> = {
  admin_token: () => '********',
  redis_url: redactUrl,
}

/** A key as TOML writes it: bare when it can be. */
const tomlKey = (key: string) => (/^[\w-]+$/.test(key) ? key : JSON.stringify(key))

/** A value as TOML writes it (JSON's string escapes are TOML's too). */
function tomlValue(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(tomlValue).join(', ')}]`
  if (isTable(value)) return `{ ${Object.entries(value).map(([key, item]) => `${tomlKey(key)} = ${tomlValue(item)}`).join(', ')} }`
  return typeof value === 'string' ? JSON.stringify(value) : String(value)
}

/** The effective settings as a TOML file, each with where it came from (`switchboard config`); secrets masked. */
export function printConfig(config: Config, sources: Record<string, Source>): string {
  const from = (key: string) => {
    const source = sources[key]
    return !source || source.kind === 'default' ? 'default' : `${source.kind} ${source.name}`
  }
  const lines = ['# Effective settings, each with where it came from: default, file, env or flag (flag > env > file > default).']
  for (const key of SETTINGS) {
    const value = config[key]
    if (value === undefined) {
      lines.push(`# ${key}: not set`)
      continue
    }
    const mask = SECRETS[key]
    lines.push(`${key} = ${tomlValue(mask && typeof value === 'string' ? mask(value) : value)}  # ${from(key)}`)
  }
  const options = Object.entries(config.backend_options)
  if (options.length > 0) {
    lines.push('', '[backend_options]')
    for (const [key, value] of options) lines.push(`${tomlKey(key)} = ${tomlValue(value)}  # ${from('backend_options')}`)
  }
  return lines.join('\n')
}

/** The --help text, generated from the schema. */
export function helpText(version: string): string {
  const lines = [
    `switchboard ${version}: mailbox exchange, worker dispatch and A2A agent registry`,
    '',
    'Usage: switchboard [serve|config|healthcheck] [--flag value ...]',
    '',
    '  config          print the effective settings, each with where it came from, and exit',
    '  healthcheck     ask the server these settings describe for /readyz: exit 0 when ready, 1 if not',
    '  --config FILE   TOML config file (env SWITCHBOARD_CONFIG); Academy exchange.toml accepted',
    '  --help          this text',
    '  --version       print the version',
    '',
    'Settings (flag, env variable, config-file key; flags > env > file > defaults):',
  ]
  for (const key of SETTINGS) {
    const info = describeSetting(key)
    const value = info.type === 'boolean' ? '' : info.options ? ` ${info.options.join('|')}` : info.type === 'number' ? ' N' : ' VALUE'
    const fallback = info.default === undefined ? '' : ` [default: ${info.default}]`
    lines.push(`  ${flagName(key)}${value}`, `      ${info.description}${fallback}`, `      env ${envName(key)}, file key ${key}`)
  }
  return lines.join('\n')
}
