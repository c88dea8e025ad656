/**
 * The one configuration schema. Every setting can come from a flag
 * (`--message-size-limit-kb 512`), an environment variable
 * (`SWITCHBOARD_MESSAGE_SIZE_LIMIT_KB=512`) or the TOML config file
 * (`message_size_limit_kb = 512`); flags win over env, env over the file,
 * the file over defaults. An Academy `exchange.toml` is accepted as it is.
 */
import * as v from 'valibot'

const text = (description: string) => v.pipe(v.string(), v.minLength(1), v.description(description))
const integer = (min: number, max: number, description: string) =>
  v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max), v.description(description))
const positive = (description: string) => v.pipe(v.number(), v.gtValue(0), v.description(description))
const flag = (description: string) => v.pipe(v.boolean(), v.description(description))
const choice = <const T extends readonly [string, ...string[]]>(options: T, description: string) =>
  v.pipe(v.picklist(options), v.description(description))

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const

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
  log_level: v.optional(choice(LOG_LEVELS, 'Log level.'), 'info'),
  tls_cert: v.optional(text('PEM certificate file; with tls_key, serve HTTPS/WSS (Academy certfile).')),
  tls_key: v.optional(text('PEM private key file (Academy keyfile).')),
  db: v.optional(text('SQLite database file (backend sqlite).'), './switchboard.db'),
  redis_url: v.optional(text('Redis URL (backend redis).'), 'redis://127.0.0.1:6379'),
  redis_prefix: v.optional(text('Prefix of every Redis key (backend redis).'), 'switchboard'),
  mailbox_expiration_d: v.optional(positive('Days an idle mailbox and its queue are kept (every built-in backend).'), 7),
  gravestone_expiration_d: v.optional(positive('Days a terminated mailbox is remembered (every built-in backend).'), 365),
  availability_timeout_ms: v.optional(integer(1, 600000, 'How long a worker may take to answer an availability request.'), 3000),
  dispatch_timeout_ms: v.optional(integer(1, 600000, 'Longest a whole dispatch may take before the caller is told no worker is available.'), 10000),
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

type Entry = { type: string; wrapped?: Entry; default?: unknown; pipe?: readonly { type: string; description?: string }[]; options?: string[] }

/** What the schema says about one setting: its base type, default and description. */
export function describeSetting(key: string): { type: string; default: unknown; description: string; options?: string[] } {
  const entry = (ConfigSchema.entries as unknown as Record<string, Entry>)[key]
  if (!entry) throw new ConfigError(`unknown setting "${key}"`)
  const inner = entry.type === 'optional' && entry.wrapped ? entry.wrapped : entry
  const description = inner.pipe?.find((item) => item.type === 'description')?.description ?? ''
  return { type: inner.type, default: entry.default, description, options: inner.options }
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
  command: 'serve' | 'help' | 'version'
  configFile?: string
  settings: Record<string, unknown>
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
    if (!key) throw new ConfigError(`unknown flag ${name} (see --help)`)
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

const PYTHON_LOG_LEVELS: Record<string, string> = { DEBUG: 'debug', INFO: 'info', WARNING: 'warn', WARN: 'warn', ERROR: 'error', CRITICAL: 'error' }

/** Maps a parsed TOML document (ours, or Academy's exchange.toml) onto settings. */
export function fromFile(document: Record<string, unknown>): Record<string, unknown> {
  const settings: Record<string, unknown> = {}
  const known = new Set<string>(SETTINGS)
  for (const [key, value] of Object.entries(document)) {
    if (known.has(key) && typeof value !== 'object') settings[key] = value
  }
  if (typeof document.backend_options === 'object') settings.backend_options = document.backend_options
  // Academy's exchange.toml keys.
  if (document.listen_timeout_s !== undefined) settings.listen_timeout = document.listen_timeout_s
  if (document.certfile !== undefined) settings.tls_cert = document.certfile
  if (document.keyfile !== undefined) settings.tls_key = document.keyfile
  const backend = document.backend
  if (typeof backend === 'object' && backend !== null) {
    const table = backend as Record<string, unknown>
    if (table.kind === 'python' || table.kind === undefined) settings.backend = 'memory'
    else if (table.kind === 'redis') {
      settings.backend = 'redis'
      settings.redis_url = `redis://${table.hostname ?? 'localhost'}:${table.port ?? 6379}`
    } else settings.backend = table.kind
    for (const key of ['message_size_limit_kb', 'mailbox_expiration_d', 'gravestone_expiration_d'] as const) {
      if (table[key] !== undefined) settings[key] = table[key]
    }
  }
  const logger = document.logger
  if (typeof logger === 'object' && logger !== null) {
    const level = (logger as Record<string, unknown>).level
    if (typeof level === 'string') settings.log_level = PYTHON_LOG_LEVELS[level.toUpperCase()] ?? level.toLowerCase()
  }
  const auth = document.auth
  if (typeof auth === 'object' && auth !== null) {
    const table = auth as Record<string, unknown>
    if (table.method === 'globus') throw new ConfigError('auth method "globus" is not supported: use auth = "token" with tokens_file')
    if (table.method !== undefined) settings.auth = table.method === null ? 'none' : table.method
    if (table.tokens_file !== undefined) settings.tokens_file = table.tokens_file
  }
  return settings
}

/** Reads and maps a TOML config file. */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
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
  return fromFile(document)
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

/** Loads the configuration from argv, env and the optional file, in that precedence. */
export async function loadConfig(argv: readonly string[], env: Record<string, string | undefined>): Promise<{ command: CommandLine['command']; config: Config }> {
  const line = parseArgs(argv)
  if (line.command !== 'serve') return { command: line.command, config: resolveConfig({}) }
  const configFile = line.configFile ?? env.SWITCHBOARD_CONFIG
  const file = configFile ? await readConfigFile(configFile) : {}
  return { command: 'serve', config: resolveConfig(file, readEnv(env), line.settings) }
}

/** The --help text, generated from the schema. */
export function helpText(version: string): string {
  const lines = [
    `switchboard ${version}: mailbox exchange, worker dispatch and A2A agent registry`,
    '',
    'Usage: switchboard [serve] [--flag value ...]',
    '',
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
