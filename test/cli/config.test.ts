import { describe, expect, it } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, fromFile, helpText, loadConfig, parseArgs, readEnv, resolveConfig, SETTINGS } from '../../src/config'
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
    const settings = fromFile(
      Bun.TOML.parse(`host = "0.0.0.0"\nport = 8701\nlisten_timeout_s = 45\ncertfile = "c.pem"\nkeyfile = "k.pem"\n[backend]\nkind = "redis"\nhostname = "cache"\nport = 6380\nmessage_size_limit_kb = 512\ngravestone_expiration_d = 30\n[logger]\nlevel = "WARNING"\n`) as Record<string, unknown>,
    )
    expect(settings).toMatchObject({ host: '0.0.0.0', port: 8701, listen_timeout: 45, tls_cert: 'c.pem', tls_key: 'k.pem', backend: 'redis', redis_url: 'redis://cache:6380', message_size_limit_kb: 512, gravestone_expiration_d: 30, log_level: 'warn' })
    expect(fromFile(Bun.TOML.parse('[backend]\nkind = "python"\n') as Record<string, unknown>).backend).toBe('memory')
    expect(() => fromFile({ auth: { method: 'globus' } })).toThrow(ConfigError)
  })

  it('names the setting and its sources when a value is bad', () => {
    expect(() => resolveConfig({ port: Number('abc') })).toThrow(/setting "port" \(--port \/ SWITCHBOARD_PORT\)/)
    expect(() => resolveConfig(readEnv({ SWITCHBOARD_LOG_LEVEL: 'loud' }))).toThrow(/setting "log_level"/)
    expect(() => resolveConfig({ auth: 'token' })).toThrow(/tokens_file/)
    expect(() => resolveConfig({ tls_cert: 'a.pem' })).toThrow(/tls_cert/)
    expect(() => parseArgs(['--no-such-flag', '1'])).toThrow(/unknown flag --no-such-flag/)
    expect(() => parseArgs(['--port'])).toThrow(/--port needs a value/)
  })

  it('parses boolean flags with and without a value', () => {
    expect(parseArgs(['--allow-private-agent-urls']).settings.allow_private_agent_urls).toBe(true)
    expect(parseArgs(['--allow-private-agent-urls=false']).settings.allow_private_agent_urls).toBe(false)
    expect(parseArgs(['--no-open-registration']).settings.open_registration).toBe(false)
  })

  it('documents every setting in the README', async () => {
    const readme = await Bun.file(new URL('../../README.md', import.meta.url)).text()
    for (const key of SETTINGS) expect(readme).toContain(`| \`--${key.replaceAll('_', '-')}\` | \`SWITCHBOARD_${key.toUpperCase()}\` | \`${key}\` |`)
  })

  it('lists every setting with its flag, env variable and file key in --help', () => {
    const help = helpText('0.0.0')
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
