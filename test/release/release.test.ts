/**
 * The release as a user gets it: `npm run release` for two targets (the
 * full seven are built and checked by `npm run release:check`, which CI runs
 * after the suite), each binary run, the npm packages installed with npm
 * alone, and the container image built from the linux-x64 binary.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { LAUNCHER, LAUNCHER_FILES } from '../../scripts/release'
import { rawRequest } from '../support/http'
import { BUN, ROOT, runToEnd, startProcess } from '../support/process'
import { VERSION, readSums, release, roundTrip, sha256Of } from '../support/release'
import { freePort } from '../support/wait'

const TARGETS = ['linux-x64', 'linux-arm64']
const dir = mkdtempSync(join(tmpdir(), 'switchboard-release-'))
const out = join(dir, 'release')
const binary = (target: string) => join(out, `switchboard-${VERSION}-${target}`)
const head = Bun.spawnSync(['git', 'rev-parse', '--short=12', 'HEAD'], { cwd: ROOT }).stdout.toString().trim()
const versionLine = (target: string) => new RegExp(`^switchboard ${VERSION.replaceAll('.', '\\.')} \\(commit ${head}(-dirty)?, ${target}\\)\\n$`)
let releaseOutput = ''

beforeAll(async () => {
  const built = await release(['--targets', TARGETS.join(','), '--outdir', out])
  releaseOutput = built.stdout
  process.stderr.write(`release of ${TARGETS.join(', ')}: ${built.seconds.toFixed(1)} s\n`)
}, 180_000)

afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('npm run release --targets linux-x64,linux-arm64', () => {
  it('writes switchboard-<version>-<target> for each target, SHA256SUMS that sha256sum -c accepts, and the npm tarballs', async () => {
    const names = TARGETS.map((target) => `switchboard-${VERSION}-${target}`)
    expect(readdirSync(out).sort()).toEqual([...names, 'SHA256SUMS', 'npm'].sort())
    const sums = readSums(join(out, 'SHA256SUMS'))
    expect([...sums.keys()].sort()).toEqual(names.sort())
    for (const name of names) expect(sums.get(name)).toBe(sha256Of(join(out, name)))
    const checked = Bun.spawnSync(['sha256sum', '-c', 'SHA256SUMS'], { cwd: out })
    expect(checked.stdout.toString().trimEnd().split('\n').sort()).toEqual(names.map((name) => `${name}: OK`).sort())
    expect(readdirSync(join(out, 'npm')).sort()).toEqual([`switchboard-${VERSION}.tgz`, ...TARGETS.map((target) => `switchboard-${target}-${VERSION}.tgz`)].sort())
  })

  it('lays every target out in the startup order the linux-x64 build recorded', () => {
    expect(releaseOutput).toMatch(/switchboard-\S+-linux-x64 .* bytecode in startup order \(recorded\)/)
    expect(releaseOutput).toMatch(/switchboard-\S+-linux-arm64 .* bytecode in startup order \(host record\)/)
  })

  it('refuses a target it does not know, naming it and the targets it has', async () => {
    await expect(release(['--targets', 'linux-mips', '--outdir', join(dir, 'never')])).rejects.toThrow(/unknown target "linux-mips"; targets: linux-x64, linux-arm64, linux-x64-musl/)
    expect(existsSync(join(dir, 'never'))).toBe(false)
  })

  it('linux-x64: --version prints version, commit and target; serves a round trip on SQLite from an empty folder; SIGTERM exits 0', async () => {
    const version = await runToEnd([binary('linux-x64'), '--version'])
    expect(version.stdout).toMatch(versionLine('linux-x64'))
    const cwd = join(dir, 'x64')
    mkdirSync(cwd)
    const server = await startProcess([binary('linux-x64'), '--port', '0', '--backend', 'sqlite', '--db', join(cwd, 'x64.db'), '--log-level', 'warn'], {}, { cwd })
    await roundTrip(server.url)
    expect(await server.stop('SIGTERM')).toBe(0)
  })

  it('linux-arm64 under qemu-user-static: --version, /healthz and a mailbox round trip on SQLite', async () => {
    const qemu = Bun.which('qemu-aarch64-static')
    expect(qemu, 'qemu-user-static is not installed (apt-get install qemu-user-static libc6:arm64)').not.toBeNull()
    const version = await runToEnd([qemu!, binary('linux-arm64'), '--version'])
    expect(version.stdout).toMatch(versionLine('linux-arm64'))
    const server = await startProcess([qemu!, binary('linux-arm64'), '--port', '0', '--backend', 'sqlite', '--db', join(dir, 'arm64.db'), '--log-level', 'warn'], {}, { timeoutMs: 60_000 })
    await roundTrip(server.url)
    expect(await server.stop('SIGTERM')).toBe(0)
  }, 90_000)
})

describe('the npm packages', () => {
  const prefix = join(dir, 'npm-global')
  // npm and node only: no Bun on PATH, no registry but an address where nothing answers (the tarballs are all it gets).
  const PATH = [join(prefix, 'bin'), dirname(process.env.NODE ?? Bun.which('node') ?? '/usr/bin/node'), '/usr/bin', '/bin'].join(':')
  const env = { PATH, HOME: dir, npm_config_cache: join(dir, 'npm-cache'), npm_config_registry: 'http://127.0.0.1:9/', npm_config_offline: 'true', npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' }
  const npm = (args: string[]) => {
    const ran = Bun.spawnSync(['npm', ...args], { env, cwd: dir, stdout: 'pipe', stderr: 'pipe' })
    return { code: ran.exitCode, stdout: ran.stdout.toString(), stderr: ran.stderr.toString() }
  }
  const tarball = (name: string) => join(out, 'npm', name)

  it('install globally with npm alone and run switchboard: --version, a round trip, SIGTERM passed on to the binary', async () => {
    expect(Bun.which('bun', { PATH })).toBeNull()
    const started = performance.now()
    const installed = npm(['install', '-g', '--prefix', prefix, tarball(`switchboard-linux-x64-${VERSION}.tgz`), tarball(`switchboard-${VERSION}.tgz`)])
    expect(installed.stderr).not.toContain('ERR')
    expect(installed.code).toBe(0)
    process.stderr.write(`npm install -g: ${((performance.now() - started) / 1000).toFixed(1)} s\n`)
    const command = join(prefix, 'bin', 'switchboard')
    const version = Bun.spawnSync([command, '--version'], { env })
    expect(version.stdout.toString()).toMatch(versionLine('linux-x64'))
    const server = await startProcess([command, '--port', '0', '--backend', 'sqlite', '--db', join(dir, 'npm.db'), '--log-level', 'warn'], { PATH })
    await roundTrip(server.url)
    expect(await server.stop('SIGTERM')).toBe(0)
    // npm alone takes 3–4 s to install here, more on a busy machine.
  }, 60_000)

  it('installs the README with the pages it links to, so its links work from node_modules', () => {
    const installed = join(prefix, 'lib', 'node_modules', LAUNCHER)
    expect(LAUNCHER_FILES.filter((file) => !existsSync(join(installed, file)))).toEqual([])
    expect(readdirSync(join(installed, 'docs')).sort()).toEqual(readdirSync(join(ROOT, 'docs')).sort())
  })

  it('npm refuses the package of another platform (os, cpu and libc fields)', () => {
    const refused = npm(['install', '-g', '--prefix', join(dir, 'npm-other'), tarball(`switchboard-linux-arm64-${VERSION}.tgz`)])
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toContain('EBADPLATFORM')
    expect(refused.stderr).toContain('wanted {"os":"linux","cpu":"arm64","libc":"glibc"}')
  }, 60_000)
})

describe('the container image', () => {
  const context = join(dir, 'image')
  const rootfs = join(context, 'rootfs')
  beforeAll(async () => {
    const staged = await runToEnd([BUN, 'scripts/image.ts', '--binary', binary('linux-x64'), '--outdir', context])
    if (staged.code !== 0) throw new Error(`scripts/image.ts failed: ${staged.stderr}`)
  })

  it('its root filesystem alone runs the binary as the image user (chroot), and its health check asks /readyz', async () => {
    mkdirSync(join(rootfs, 'proc'))
    mkdirSync(join(rootfs, 'data'), { mode: 0o700 })
    chownSync(join(rootfs, 'data'), 65532, 65532)
    const port = await freePort()
    const inRoot = (command: string[]) => ['unshare', '--mount', 'sh', '-c', `mount -t proc proc "$0/proc" && exec chroot --userspec=65532:65532 "$0" "$@"`, rootfs, ...command]
    const server = await startProcess(inRoot(['/usr/local/bin/switchboard', '--host', '127.0.0.1', '--port', String(port), '--backend', 'sqlite', '--db', '/data/chroot.db', '--log-level', 'warn']), {})
    const healthcheck = () => runToEnd(inRoot(['/usr/local/bin/switchboard', 'healthcheck', '--port', String(port)]))
    const healthy = await healthcheck()
    expect(healthy.code).toBe(0)
    await roundTrip(server.url)
    expect(await server.stop('SIGTERM')).toBe(0)
    expect(existsSync(join(rootfs, 'data/chroot.db'))).toBe(true)
    const down = await healthcheck()
    expect(down.code).toBe(1)
    expect(down.stderr).toStartWith(`switchboard healthcheck: http://127.0.0.1:${port}/readyz: `)
  })

  it('podman builds it from the Containerfile without pulling; a container answers /readyz, passes its health check, and exits 0 on SIGTERM', async () => {
    expect(Bun.which('podman'), 'podman is not installed (apt-get install podman runc)').not.toBeNull()
    const tag = `localhost/switchboard-test-${process.pid}`
    const name = `switchboard-test-${process.pid}`
    const podman = (args: string[]) => runToEnd(['podman', ...args])
    rmSync(join(rootfs, 'proc'), { recursive: true, force: true })
    rmSync(join(rootfs, 'data'), { recursive: true, force: true })
    try {
      const built = await podman(['build', '--pull=never', '--format', 'docker', '-t', tag, '-f', join(ROOT, 'Containerfile'), context])
      expect(built.code, built.stderr).toBe(0)
      const [image] = JSON.parse((await podman(['image', 'inspect', tag])).stdout)
      expect(image.Config).toMatchObject({ User: '65532:65532', StopSignal: 'SIGTERM', Volumes: { '/data': {} } })
      expect(image.Healthcheck.Test).toEqual(['CMD', '/usr/local/bin/switchboard', 'healthcheck'])
      process.stderr.write(`image: ${(image.Size / 2 ** 20).toFixed(1)} MiB\n`)
      const port = await freePort()
      // This machine's crun cannot set the default rlimits ("setrlimit RLIMIT_NOFILE: Operation not permitted") nor run on
      // hybrid cgroups; runc with limits below the host's runs the container.
      const runtime = Bun.which('runc') ? ['--runtime', 'runc', '--ulimit', 'nofile=8192:8192', '--ulimit', 'nproc=8192:8192'] : []
      const ran = await podman(['run', '-d', '--name', name, ...runtime, '-p', `127.0.0.1:${port}:8700`, tag])
      expect(ran.code, ran.stderr).toBe(0)
      let ready = { status: 0, text: '' }
      for (let tries = 0; tries < 200 && ready.status !== 200; tries++) {
        ready = await rawRequest(`http://127.0.0.1:${port}/readyz`).catch(() => ({ status: 0, text: '' }))
        if (ready.status !== 200) await Bun.sleep(50)
      }
      expect(ready.status, (await podman(['logs', name])).stderr).toBe(200)
      expect(JSON.parse(ready.text)).toEqual({ status: 'ready', backend: 'sqlite' })
      expect((await podman(['healthcheck', 'run', name])).code).toBe(0)
      await podman(['stop', '-t', '10', name])
      expect((await podman(['inspect', name, '--format', '{{.State.ExitCode}}'])).stdout.trim()).toBe('0')
    } finally {
      await podman(['rm', '-f', name])
      await podman(['rmi', '-f', tag])
    }
  }, 60_000)
})
