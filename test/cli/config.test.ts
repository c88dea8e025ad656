import { describe, expect, it } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, fromFile, helpText, loadConfig, parseArgs, readEnv, redactUrl, resolveConfig, SETTINGS } from '../../src/config'
import { BUN, runToEnd, startProcess } from '../support/process'
import { tempDir } from '../support/temp'

const tempFile = (name: string, text: string) => {
  const path = join(tempDir('config'), name)
  writeFileSync(path, text)
  return path
}

describe('configuration', () => {
  it('uses the defaults when nothing is given', () => {
    const config = resolveConfig({})
    expect(config.port).toBe(8700)
    expect(config.backend).toBe('memory')
    expect(config.listen_timeout).toBe(60)
    expect(config.message_size_limit_kb).toBe(1024)
  })

  it('takes flags over env over the file over defaults', async () => {
    const file = tempFile('switchboard.toml', 'port = 9001\nlisten_timeout = 30\nmessage_size_limit_kb = 64\nlog_level = "warn"\n')
    const { config } = await loadConfig(['--config', file, '--port', '9003'], { SWITCHBOARD_PORT: '9002', SWITCHBOARD_LISTEN_TIMEOUT: '20' })
    expect(config.port).toBe(9003)
    expect(config.listen_timeout).toBe(20)
    expect(config.message_size_limit_kb).toBe(64)
    expect(config.log_level).toBe('warn')
  })

  it('reads an Academy exchange.toml as it is', () => {
    const { settings } = fromFile(
      Bun.TOML.parse(`host = "0.0.0.0"\nport = 8701\nlisten_timeout_s = 45\ncertfile = "c.pem"\nkeyfile = "k.pem"\n[backend]\nkind = "redis"\nhostname = "cache"\nport = 6380\nmessage_size_limit_kb = 512\ngravestone_expiration_d = 30\n[logger]\nlevel = "WARNING"\n`) as Record<string, unknown>,
    )
    expect(resolveConfig(settings)).toMatchObject({ host: '0.0.0.0', port: 8701, listen_timeout: 45, tls_cert: 'c.pem', tls_key: 'k.pem', backend: 'redis', redis_url: 'redis://cache:6380', message_size_limit_kb: 512, gravestone_expiration_d: 30, log_level: 'warn' })
    expect(fromFile(Bun.TOML.parse('[backend]\nkind = "python"\n') as Record<string, unknown>).settings.backend).toBe('memory')
    expect(() => fromFile({ auth: { method: 'globus' } })).toThrow(ConfigError)
  })

  it("reads Academy's log levels, names in any case or Python numbers, from every source", () => {
    const cases: [unknown, string][] = [['INFO', 'info'], ['info', 'info'], ['Debug', 'debug'], ['WARNING', 'warn'], ['warn', 'warn'], ['ERROR', 'error'], ['CRITICAL', 'error'], ['silent', 'silent'], [10, 'debug'], [20, 'info'], [30, 'warn'], [40, 'error'], [50, 'error']]
    for (const [given, level] of cases) {
      expect(resolveConfig(fromFile({ log_level: given }).settings).log_level).toBe(level as never)
      expect(resolveConfig(fromFile({ logger: { level: given } }).settings).log_level).toBe(level as never)
      expect(resolveConfig(readEnv({ SWITCHBOARD_LOG_LEVEL: String(given) })).log_level).toBe(level as never)
      expect(resolveConfig(parseArgs(['--log-level', String(given)]).settings).log_level).toBe(level as never)
    }
    expect(() => resolveConfig({ log_level: 25 })).toThrow(/setting "log_level" .*Python level number 10, 20, 30, 40 or 50/)
    expect(() => resolveConfig({ log_level: 'verbose' })).toThrow(/setting "log_level"/)
  })

  it("maps Academy's [backend] kwargs for Redis into redis_url, and refuses what it cannot honour by name", () => {
    const url = (backend: Record<string, unknown>) => fromFile({ backend }).settings.redis_url as string
    const password = 'p@ss:w/rd%?#'
    const full = new URL(url({ kind: 'redis', hostname: 'cache', port: 6380, kwargs: { password, username: 'app', db: 2, ssl: true } }))
    expect(full.protocol).toBe('rediss:')
    expect([full.hostname, full.port, full.pathname]).toEqual(['cache', '6380', '/2'])
    expect([decodeURIComponent(full.username), decodeURIComponent(full.password)]).toEqual(['app', password])
    expect(url({ kind: 'redis' })).toBe('redis://localhost:6379')
    expect(url({ kind: 'redis', hostname: '::1', kwargs: { ssl: false } })).toBe('redis://[::1]:6379')
    // Without kind, Academy takes any [backend] key beyond message_size_limit_kb for Redis's.
    expect(fromFile({ backend: { hostname: 'cache' } }).settings).toMatchObject({ backend: 'redis', redis_url: 'redis://cache:6379' })
    expect(fromFile({ backend: { message_size_limit_kb: 64 } }).settings).toMatchObject({ backend: 'memory', message_size_limit_kb: 64 })
    expect(() => fromFile({ backend: { kind: 'redis', kwargs: { db: 'two' } } })).toThrow('[backend] kwargs.db must be a database number')
    expect(() => fromFile({ backend: { kind: 'redis', kwargs: { ssl_ca_certs: '/ca.pem' } } })).toThrow('[backend] kwargs.ssl_ca_certs is not supported')
    expect(() => fromFile({ backend: { kind: 'python', kwargs: { password } } })).toThrow('[backend] kwargs is for kind = "redis", not "python"')
    expect(() => fromFile({ auth: { kwargs: { client_id: 'ABC' } } })).toThrow('[auth] kwargs')
    expect(() => fromFile({ logger: { level: 'INFO', logfile_level: 'DEBUG' } })).toThrow('[logger] logfile_level')
    expect(fromFile({ logger: { level: 'INFO', logfile_level: 20 } }).settings.log_level).toBe('INFO')
  })

  it('takes the Redis Sentinels and master name from the file or flags, and refuses a list that is not host:port by name', async () => {
    const file = tempFile('sentinel.toml', 'backend = "redis"\nredis_sentinels = "10.0.0.1:26379,10.0.0.2:26379"\nredis_master_name = "main"\nredis_wait_replicas = 1\n')
    const { config } = await loadConfig(['--config', file, '--redis-wait-timeout-ms', '250'], {})
    expect([config.redis_sentinels, config.redis_master_name, config.redis_wait_replicas, config.redis_wait_timeout_ms]).toEqual(['10.0.0.1:26379,10.0.0.2:26379', 'main', 1, 250])
    expect(resolveConfig(parseArgs(['--redis-sentinels', '[::1]:26379', '--redis-master-name', 'main']).settings).redis_sentinels).toBe('[::1]:26379')
    expect(() => resolveConfig({ redis_sentinels: '10.0.0.1' })).toThrow('invalid setting "redis_sentinels" (--redis-sentinels / SWITCHBOARD_REDIS_SENTINELS): expected host:port of each Sentinel, separated by commas')
    expect(() => resolveConfig({ redis_wait_replicas: -1 })).toThrow(/setting "redis_wait_replicas"/)
    expect(redactUrl('redis+sentinel://app:secret@s1:26379,s2:26379/main')).toBe('redis+sentinel://app:********@s1:26379,s2:26379/main')
  })

  it('masks the password of a URL and nothing else', () => {
    expect(redactUrl('redis://:secret@cache:6379/2')).toBe('redis://:********@cache:6379/2')
    expect(redactUrl('rediss://app:p@ss@cache:6380')).toBe('rediss://app:********@cache:6380')
    expect(redactUrl('redis://cache:6379')).toBe('redis://cache:6379')
  })

  it('names the setting and its sources when a value is bad', () => {
    expect(() => resolveConfig({ port: Number('abc') })).toThrow(/setting "port" \(--port \/ SWITCHBOARD_PORT\)/)
    expect(() => resolveConfig(readEnv({ SWITCHBOARD_LOG_LEVEL: 'loud' }))).toThrow(/setting "log_level"/)
    expect(() => resolveConfig({ auth: 'token' })).toThrow(/tokens_file/)
    expect(() => resolveConfig({ tls_cert: 'a.pem' })).toThrow(/tls_cert/)
    expect(() => parseArgs(['--no-such-flag', '1'])).toThrow(/unknown flag --no-such-flag/)
    expect(() => parseArgs(['--listen-timout', '1'])).toThrow('unknown flag --listen-timout (did you mean "--listen-timeout"?)')
    expect(() => parseArgs(['--port'])).toThrow(/--port needs a value/)
  })

  it('parses boolean flags with and without a value', () => {
    expect(parseArgs(['--allow-private-agent-urls']).settings.allow_private_agent_urls).toBe(true)
    expect(parseArgs(['--allow-private-agent-urls=false']).settings.allow_private_agent_urls).toBe(false)
    expect(parseArgs(['--no-open-registration']).settings.open_registration).toBe(false)
  })

  it('documents every setting in docs/configuration.md', async () => {
    const page = await Bun.file(new URL('../../docs/configuration.md', import.meta.url)).text()
    for (const key of SETTINGS) expect(page).toContain(`| \`--${key.replaceAll('_', '-')}\` | \`SWITCHBOARD_${key.toUpperCase()}\` | \`${key}\` |`)
  })

  it('lists every setting with its flag, env variable and file key in --help', () => {
    const help = helpText('0.0.0')
    expect(help).toContain('--log-level debug|info|warn|error|silent\n')
    expect(help).toContain('--auth none|token\n')
    for (const key of SETTINGS) {
      expect(help).toContain(`--${key.replaceAll('_', '-')}`)
      expect(help).toContain(`SWITCHBOARD_${key.toUpperCase()}`)
    }
  })
})

describe('the command line', () => {
  it('stops with exit 2 and a message naming the setting when a value is bad', async () => {
    const result = await runToEnd([BUN, 'src/main.ts', '--port', 'eighty'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('setting "port"')
  })

  it('refuses an unknown backend with the list of built-in ones', async () => {
    const result = await runToEnd([BUN, 'src/main.ts', '--backend', 'mongo', '--port', '0'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('unknown backend "mongo"')
  })

  it('prints --version and --help', async () => {
    expect((await runToEnd([BUN, 'src/main.ts', '--version'])).stdout).toMatch(/^switchboard \d+\.\d+\.\d+/)
    expect((await runToEnd([BUN, 'src/main.ts', '--help'])).stdout).toContain('--listen-timeout')
  })

  it('prints one startup line with the address, backend and docs URL', async () => {
    const running = await startProcess([BUN, 'src/main.ts', '--port', '0', '--log-level', 'warn'])
    expect(running.stdout()).toMatch(/^switchboard \S+ listening on http:\/\/127\.0\.0\.1:\d+ \(backend memory, docs http:\/\/127\.0\.0\.1:\d+\/swagger\)\n$/)
    expect(await running.stop()).toBe(0)
  })

  it('shuts down cleanly on SIGTERM sent the moment the startup line is read', async () => {
    // A supervisor may stop Switchboard as soon as it says it is up: the signal handlers must already be in place.
    const codes: (number | null)[] = []
    for (let attempt = 0; attempt < 20; attempt++) {
      const child = Bun.spawn([BUN, 'src/main.ts', '--port', '0', '--log-level', 'warn'], { stdout: 'pipe', stderr: 'pipe' })
      const reader = (child.stdout as ReadableStream<Uint8Array>).getReader()
      const decoder = new TextDecoder()
      let out = ''
      while (!out.includes('listening on')) {
        const { value, done } = await reader.read()
        if (done) break
        out += decoder.decode(value)
      }
      child.kill('SIGTERM')
      codes.push(await child.exited)
    }
    expect(codes).toEqual(Array.from({ length: 20 }, () => 0))
  }, 30_000)
})
