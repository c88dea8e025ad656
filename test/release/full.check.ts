/**
 * `npm run release:check`: the whole release, every target, as CI builds it
 * after the suite (the suite itself builds two targets). Checks each file and
 * checksum, that each binary is an executable of its platform, the npm
 * tarballs, and runs the linux-x64-musl binary (on musl, with a libstdc++ for
 * musl: see test/support/musl.ts) for --version and a round trip.
 * Named *.check.ts so that `bun test` does not pick it up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { mkdtempSync, openSync, readSync, closeSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_TARGETS } from '../../scripts/release'
import { runToEnd, startProcess } from '../support/process'
import { VERSION, readSums, release, roundTrip, sha256Of } from '../support/release'
import { muslLibstdcxx } from '../support/musl'

const dir = mkdtempSync(join(tmpdir(), 'switchboard-release-full-'))
const out = join(dir, 'release')
const name = (target: string) => `switchboard-${VERSION}-${target}${target.startsWith('windows') ? '.exe' : ''}`
let seconds = 0

beforeAll(async () => {
  seconds = (await release(['--outdir', out])).seconds
  process.stderr.write(`whole release (${DEFAULT_TARGETS.length} targets): ${seconds.toFixed(1)} s\n`)
}, 300_000)
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** The first bytes of a file. */
function head(file: string, length = 4096): Buffer {
  const fd = openSync(file, 'r')
  const buffer = Buffer.alloc(length)
  readSync(fd, buffer, 0, length, 0)
  closeSync(fd)
  return buffer
}

/** The platform a binary's header says it is for: "linux-x64", "darwin-arm64", "windows-x64". */
function platformOf(file: string): string {
  const bytes = head(file)
  if (bytes.readUInt32BE(0) === 0x7f454c46) {
    const machine = bytes.readUInt16LE(18)
    return `linux-${machine === 0x3e ? 'x64' : machine === 0xb7 ? 'arm64' : machine}`
  }
  if (bytes.readUInt32LE(0) === 0xfeedfacf) {
    const cpu = bytes.readUInt32LE(4)
    return `darwin-${cpu === 0x01000007 ? 'x64' : cpu === 0x0100000c ? 'arm64' : cpu}`
  }
  if (bytes.toString('latin1', 0, 2) === 'MZ') {
    const pe = bytes.readUInt32LE(0x3c)
    return `windows-${bytes.readUInt16LE(pe + 4) === 0x8664 ? 'x64' : bytes.readUInt16LE(pe + 4)}`
  }
  return 'unknown'
}

describe('npm run release (every target)', () => {
  it(`takes under 3 minutes`, () => {
    expect(seconds).toBeLessThan(180)
  })

  it('writes a binary per target, SHA256SUMS over them all, and the npm tarballs', () => {
    const names = DEFAULT_TARGETS.map(name)
    expect(readdirSync(out).sort()).toEqual([...names, 'SHA256SUMS', 'npm'].sort())
    const sums = readSums(join(out, 'SHA256SUMS'))
    expect([...sums.keys()].sort()).toEqual([...names].sort())
    for (const file of names) expect(sums.get(file)).toBe(sha256Of(join(out, file)))
    expect(readdirSync(join(out, 'npm')).sort()).toEqual([`switchboard-${VERSION}.tgz`, ...DEFAULT_TARGETS.map((target) => `switchboard-${target}-${VERSION}.tgz`)].sort())
  })

  it('each binary is an executable of its platform, the musl ones with musl\'s loader, below 112 MiB', () => {
    for (const target of DEFAULT_TARGETS) {
      const file = join(out, name(target))
      expect(`${target}: ${platformOf(file)}`).toBe(`${target}: ${target.replace('-musl', '')}`)
      process.stderr.write(`${name(target)}: ${(statSync(file).size / 2 ** 20).toFixed(1)} MiB\n`)
      // The goal: every binary below 112 MiB (what the first glibc x64 binary weighed).
      expect(`${target}: ${statSync(file).size < 112 * 2 ** 20 ? 'below' : 'not below'} 112 MiB`).toBe(`${target}: below 112 MiB`)
      if (target.startsWith('linux')) {
        const loader = head(file).toString('latin1').match(/\/lib[^\0]*ld-[^\0]+/)?.[0]
        expect(`${target}: ${loader}`).toBe(`${target}: ${target.endsWith('-musl') ? `/lib/ld-musl-${target.includes('arm64') ? 'aarch64' : 'x86_64'}.so.1` : target.includes('arm64') ? '/lib/ld-linux-aarch64.so.1' : '/lib64/ld-linux-x86-64.so.2'}`)
      }
    }
  })

  it('linux-x64-musl runs on musl: --version, a round trip on SQLite, SIGTERM exits 0', async () => {
    const binary = join(out, name('linux-x64-musl'))
    const LD_LIBRARY_PATH = muslLibstdcxx(binary, join(dir, 'musl-lib'))
    const version = await runToEnd([binary, '--version'], { LD_LIBRARY_PATH })
    expect(version.stdout).toMatch(new RegExp(`^switchboard ${VERSION.replaceAll('.', '\\.')} \\(commit [0-9a-f]{12}(-dirty)?, linux-x64-musl\\)\\n$`))
    const server = await startProcess([binary, '--port', '0', '--backend', 'sqlite', '--db', join(dir, 'musl.db'), '--log-level', 'warn'], { LD_LIBRARY_PATH })
    await roundTrip(server.url)
    expect(await server.stop('SIGTERM')).toBe(0)
  }, 180_000) // linking a libstdc++ for musl takes a minute on a slow host
})
