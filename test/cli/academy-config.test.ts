/**
 * Academy's own exchange.toml files (test/fixtures/academy/config, whose
 * README says where each fact comes from) start a real Switchboard process
 * that answers /readyz; a typo stops startup naming the nearest key; and
 * `switchboard config` says where every setting came from.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import tls from 'node:tls'
import { join, resolve } from 'node:path'
import { BUN, ROOT, runToEnd, startProcess } from '../support/process'
import { spawnRedisServer } from '../support/redis'
import { tempDir } from '../support/temp'
import { freePort } from '../support/wait'

const MAIN = resolve(ROOT, 'src/main.ts')
const FIXTURES = resolve(ROOT, 'test/fixtures/academy/config')
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8')

/** Writes `text` as exchange.toml into a new folder (the process runs there, so relative log files land in it). */
function inFolder(text: string): { dir: string; file: string } {
  const dir = tempDir('academy-config')
  const file = join(dir, 'exchange.toml')
  writeFileSync(file, text)
  return { dir, file }
}

/** Runs a command that must exit by itself; a server that starts instead is killed and reported. */
async function runExpectingExit(command: string[], env: Record<string, string> = {}, timeoutMs = 4_000): Promise<{ code: number | 'still running'; stderr: string }> {
  const child = Bun.spawn(command, { cwd: ROOT, env: { ...process.env, ...env }, stdout: 'pipe', stderr: 'pipe' })
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited])
  clearTimeout(timer)
  return { code: child.signalCode === 'SIGKILL' ? 'still running' : code, stderr }
}

const logLines = (text: string) =>
  text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as { level: string; msg: string; route?: string })

describe("Academy's log settings", () => {
  for (const name of ['log-level-name.toml', 'log-level-number.toml']) {
    it(`starts on ${name} (${fixture(name).match(/^log_level = .*$/m)![0]}), logs at info into log_file and stderr`, async () => {
      const { dir, file } = inFolder(fixture(name))
      const server = await startProcess([BUN, MAIN, '--config', file, '--port', '0'], {}, { cwd: dir })
      try {
        const response = await fetch(`${server.url}/readyz`)
        expect(response.status).toBe(200)
      } finally {
        expect(await server.stop()).toBe(0)
      }
      // Academy's log_file is relative to where the server runs; info shows one line per request.
      const written = logLines(readFileSync(join(dir, 'cloud_server.log'), 'utf8'))
      expect(written.some((line) => line.level === 'info' && line.msg === 'request' && line.route === '/readyz')).toBe(true)
      expect(written.every((line) => line.level !== 'debug')).toBe(true)
      // stderr keeps every line the file has.
      expect(logLines(server.stderr())).toEqual(written)
    })
  }

  it("starts on the [logger] table (level, logfile in a folder of its own, logfile_level, rotate = false)", async () => {
    const { dir, file } = inFolder(fixture('logger-table.toml'))
    const server = await startProcess([BUN, MAIN, '--config', file, '--port', '0'], {}, { cwd: dir })
    try {
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200)
    } finally {
      expect(await server.stop()).toBe(0)
    }
    expect(logLines(readFileSync(join(dir, 'logs/exchange.log'), 'utf8')).some((line) => line.route === '/readyz')).toBe(true)
    const config = await runToEnd([BUN, MAIN, 'config', '--config', file])
    expect(config.stdout).toContain('log_level = "debug"  # file')
  })

  it('refuses a log_file it cannot open, naming the setting (exit 2)', async () => {
    const { dir, file } = inFolder(fixture('log-level-name.toml'))
    writeFileSync(join(dir, 'blocker'), 'a file, not a folder')
    const result = await runExpectingExit([BUN, MAIN, '--config', file, '--port', '0', '--log-file', join(dir, 'blocker', 'x.log')])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('invalid setting "log_file"')
  })
})

const redisBinary = Bun.which('redis-server')
if (!redisBinary && process.env.CI === 'true') throw new Error('the Academy Redis config tests need redis-server under CI')

describe.skipIf(!redisBinary)("Academy's [backend] kind = \"redis\" with kwargs", () => {
  const password = 'academy-s3cret:/@%'
  let redis: Awaited<ReturnType<typeof spawnRedisServer>>
  const prefix = { SWITCHBOARD_REDIS_PREFIX: `sbtest-${crypto.randomUUID()}` }

  beforeAll(async () => {
    // The password is the fixture's, with the characters a URL would otherwise take apart.
    expect(fixture('redis-password.toml')).toContain(`password = "${password}"`)
    redis = await spawnRedisServer(redisBinary!)
    if (!redis) throw new Error('redis-server did not start')
    // Required from here on (spawnRedisServer waits for an answer to PING, which requirepass would refuse).
    const { default: Redis } = await import('ioredis')
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
    await client.connect()
    await client.config('SET', 'requirepass', password)
    client.disconnect()
  })
  afterAll(() => {
    redis?.process.kill()
  })

  const withPort = (text: string) => text.replace(/^port = 6379$/m, `port = ${redis!.port}`)

  it('connects with kwargs.password to a redis-server that requires it and answers /readyz 200', async () => {
    const { dir, file } = inFolder(withPort(fixture('redis-password.toml')))
    const server = await startProcess([BUN, MAIN, '--config', file, '--port', '0'], prefix, { cwd: dir })
    try {
      expect(server.stdout()).toContain('(backend redis,')
      const response = await fetch(`${server.url}/readyz`)
      expect(response.status).toBe(200)
      expect(await response.json()).toMatchObject({ status: 'ready', backend: 'redis' })
    } finally {
      expect(await server.stop()).toBe(0)
    }
    expect(server.stderr()).not.toContain(password)
  })

  it('stops with exit 2 on a wrong password, the refusal in the message and the password masked', async () => {
    const { file } = inFolder(withPort(fixture('redis-password.toml')).replace(password, 'not-the-password'))
    const result = await runExpectingExit([BUN, MAIN, '--config', file, '--port', '0'], prefix)
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('WRONGPASS')
    expect(result.stderr).toContain(`redis://:********@127.0.0.1:${redis!.port}`)
    expect(result.stderr).not.toContain('not-the-password')
  })
})

describe.skipIf(!redisBinary)('TLS from an Academy file: [backend] kwargs ssl = true and db, certfile alone', () => {
  let dir: string
  let child: ReturnType<typeof Bun.spawn> | null = null
  let port = 0
  let certificate = ''

  beforeAll(async () => {
    dir = tempDir('academy-redis-tls')
    const cert = join(dir, 'cert.pem')
    const key = join(dir, 'key.pem')
    const made = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'pipe' })
    if (made.status !== 0) throw new Error(`openssl failed: ${made.error?.message ?? made.stderr}`)
    certificate = readFileSync(cert, 'utf8')
    port = await freePort()
    child = Bun.spawn(
      [redisBinary!, '--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--tls-cert-file', cert, '--tls-key-file', key, '--tls-ca-cert-file', cert, '--tls-auth-clients', 'no', '--requirepass', 'tls-pass'],
      { stdout: 'ignore', stderr: 'ignore' },
    )
    // Up once a TLS handshake trusting the certificate succeeds.
    for (let attempt = 0; ; attempt++) {
      const up = await new Promise<boolean>((done) => {
        const socket = tls.connect({ host: '127.0.0.1', port, ca: certificate }, () => done(true))
        socket.on('error', () => done(false))
        socket.on('secureConnect', () => socket.destroy())
      })
      if (up) break
      if (attempt > 100) throw new Error('redis-server with TLS did not start')
      await Bun.sleep(50)
    }
  })
  afterAll(() => {
    child?.kill()
  })

  it('serves HTTPS from certfile alone, reading the key from it as Academy does', async () => {
    const combined = join(dir, 'combined.pem')
    writeFileSync(combined, readFileSync(join(dir, 'key.pem'), 'utf8') + certificate)
    const { file } = inFolder(`certfile = ${JSON.stringify(combined)}\n`)
    const server = await startProcess([BUN, MAIN, '--config', file, '--port', '0', '--log-level', 'warn'])
    try {
      expect(server.url).toStartWith('https://127.0.0.1:')
      const response = await fetch(`${server.url}/healthz`, { tls: { ca: certificate } } as RequestInit)
      expect(response.status).toBe(200)
    } finally {
      expect(await server.stop()).toBe(0)
    }
  })

  it('connects over TLS (rediss://) to the chosen database', async () => {
    const text = `[backend]\nkind = "redis"\nhostname = "127.0.0.1"\nport = ${port}\nkwargs = { password = "tls-pass", ssl = true, db = 3 }\n`
    const { dir: folder, file } = inFolder(text)
    const env = { NODE_EXTRA_CA_CERTS: join(dir, 'cert.pem'), SWITCHBOARD_REDIS_PREFIX: `sbtest-${crypto.randomUUID()}` }
    const server = await startProcess([BUN, MAIN, '--config', file, '--port', '0', '--log-level', 'warn'], env, { cwd: folder })
    try {
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200)
    } finally {
      expect(await server.stop()).toBe(0)
    }
    // The store's keys are in database 3 of the TLS server.
    const { default: Redis } = await import('ioredis')
    const client = new Redis({ host: '127.0.0.1', port, password: 'tls-pass', db: 3, tls: { ca: certificate }, lazyConnect: true, maxRetriesPerRequest: 1 })
    try {
      await client.connect()
      expect(await client.keys(`${env.SWITCHBOARD_REDIS_PREFIX}:*`)).not.toEqual([])
      await client.select(0)
      expect(await client.keys(`${env.SWITCHBOARD_REDIS_PREFIX}:*`)).toEqual([])
    } finally {
      client.disconnect()
    }
  })
})

describe('a typo in the config file', () => {
  it('stops startup with exit 2, naming the key and the nearest known one', async () => {
    const result = await runExpectingExit([BUN, MAIN, '--config', join(FIXTURES, 'typo.toml'), '--port', '0'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('unknown key "bakend" (did you mean "backend"?)')
  })

  it('stops startup on an unknown [backend_options] key of the chosen backend, naming the nearest one', async () => {
    const { file } = inFolder('backend = "sqlite"\n[backend_options]\nsynchronus = "full"\n')
    const result = await runExpectingExit([BUN, MAIN, '--config', file, '--port', '0'])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('unknown key "synchronus" in [backend_options] (did you mean "synchronous"?)')
    expect(result.stderr).toContain('backend "sqlite" takes')
  })

  it('stops startup on an unknown key inside an Academy table, naming the nearest one', async () => {
    for (const [text, message] of [
      ['[backend]\nkind = "redis"\nhostnme = "cache"\n', 'unknown key "hostnme" in [backend] (did you mean "hostname"?)'],
      ['[backend]\nkind = "redis"\nkwargs = { pasword = "x" }\n', '[backend] kwargs.pasword is not supported (did you mean "password"?)'],
      ['[backend]\nkind = "redis"\nkwargs = { socket_timeout = 5 }\n', '[backend] kwargs.socket_timeout is not supported'],
      ['[logger]\nlevle = "INFO"\n', 'unknown key "levle" in [logger] (did you mean "level"?)'],
      ['[logger]\nrotate = true\n', '[logger] rotate = true'],
    ] as const) {
      const { file } = inFolder(text)
      const result = await runExpectingExit([BUN, MAIN, 'config', '--config', file])
      expect(result).toEqual({ code: 2, stderr: expect.stringContaining(message) })
    }
  })
})

describe('switchboard config', () => {
  it('prints the effective settings as TOML, each with its source, secrets masked', async () => {
    const { file } = inFolder('log_level = "INFO"\n' + withRedis(fixture('redis-password.toml')) + '\n[backend_options]\nredelivery_window_ms = 500\n')
    const result = await runToEnd([BUN, MAIN, 'config', '--config', file, '--port', '9123'], { SWITCHBOARD_ADMIN_TOKEN: 'admin-s3cret', SWITCHBOARD_LISTEN_TIMEOUT: '30' })
    expect(result.code).toBe(0)
    const lines = result.stdout.split('\n')
    expect(lines).toContain('port = 9123  # flag --port')
    expect(lines).toContain('listen_timeout = 30  # env SWITCHBOARD_LISTEN_TIMEOUT')
    expect(lines).toContain('admin_token = "********"  # env SWITCHBOARD_ADMIN_TOKEN')
    expect(lines).toContain(`log_level = "info"  # file ${file}: log_level`)
    expect(lines).toContain(`backend = "redis"  # file ${file}: [backend] kind`)
    expect(lines).toContain(`redis_url = "redis://:********@127.0.0.1:6380"  # file ${file}: [backend] hostname, port, kwargs`)
    expect(lines).toContain('max_body_kb = 16384  # default')
    expect(lines).toContain('# tokens_file: not set')
    expect(lines).toContain(`redelivery_window_ms = 500  # file ${file}: [backend_options]`)
    expect(result.stdout).not.toContain('admin-s3cret')
    expect(result.stdout).not.toContain('academy-s3cret')
    // The output is a config file: read back, it gives the same settings (secrets aside).
    const printed = Bun.TOML.parse(result.stdout) as Record<string, unknown>
    expect(printed).toMatchObject({ host: '127.0.0.1', port: 9123, listen_timeout: 30, log_level: 'info', backend: 'redis', backend_options: { redelivery_window_ms: 500 } })
  })

  it('refuses what startup refuses (exit 2)', async () => {
    const result = await runToEnd([BUN, MAIN, 'config', '--config', join(FIXTURES, 'typo.toml')])
    expect(result.code).toBe(2)
    expect(result.stderr).toContain('did you mean "backend"?')
  })
})

/** The Redis fixture pointed at a port nothing needs to answer on (config does not connect). */
function withRedis(text: string): string {
  return text.replace(/^port = 6379$/m, 'port = 6380')
}

