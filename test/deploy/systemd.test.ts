import { afterAll, describe, expect, it } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { SETTINGS, envName } from '../../src/config'
import { BUN, ROOT, runToEnd } from '../support/process'

const UNIT = resolve(ROOT, 'deploy/switchboard.service')
const text = readFileSync(UNIT, 'utf8')
const dir = mkdtempSync(join(tmpdir(), 'switchboard-unit-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Every value of `key` in the unit. */
const values = (key: string) => [...text.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((match) => match[1]!)

// systemd-analyze verify checks that ExecStart's program exists: the copy it reads runs an executable of this host instead.
async function verify(unitText: string): Promise<{ code: number; output: string }> {
  const file = join(dir, 'switchboard.service')
  writeFileSync(file, unitText.replace(/^ExecStart=\/usr\/local\/bin\/switchboard/m, `ExecStart=${BUN}`))
  const verified = await runToEnd(['systemd-analyze', 'verify', file])
  return { code: verified.code, output: `${verified.stdout}${verified.stderr}` }
}

describe('deploy/switchboard.service', () => {
  it('passes systemd-analyze verify with no warning', async () => {
    expect(Bun.which('systemd-analyze'), 'systemd is not installed: apt-get install systemd').not.toBeNull()
    expect(values('ExecStart')).toEqual(['/usr/local/bin/switchboard'])
    expect(await verify(text)).toEqual({ code: 0, output: '' })
  })

  it('verify reports a mistyped directive (the check reads the unit)', async () => {
    const { output } = await verify(text.replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes'))
    expect(output).toContain("Unknown key 'NoNewPrivilege'")
  })

  it('is hardened: a dynamic user, its state directory for SQLite, read-only system, no new privileges, restarts on failure', () => {
    for (const [key, value] of [
      ['DynamicUser', 'yes'],
      ['StateDirectory', 'switchboard'],
      ['ProtectSystem', 'strict'],
      ['NoNewPrivileges', 'yes'],
      ['Restart', 'on-failure'],
      ['KillSignal', 'SIGTERM'],
    ]) expect(values(key!)).toEqual([value!])
    expect(values('Environment')).toContain('SWITCHBOARD_BACKEND=sqlite')
    expect(values('Environment')).toContain('SWITCHBOARD_DB=/var/lib/switchboard/switchboard.db')
    expect(values('EnvironmentFile')).toEqual(['-/etc/switchboard/switchboard.env'])
    const known = new Set(SETTINGS.map((key) => envName(key)))
    for (const assignment of values('Environment')) expect(known.has(assignment.split('=')[0]!)).toBe(true)
  })

  it('rates as well exposed as systemd-analyze security allows for a network service (OK, below 2)', async () => {
    const security = await runToEnd(['systemd-analyze', 'security', '--offline=true', UNIT])
    const level = /Overall exposure level for switchboard\.service: ([\d.]+) (\w+)/.exec(security.stdout)
    expect(level?.[2]).toBe('OK')
    expect(Number(level?.[1])).toBeLessThan(2)
  })
})
