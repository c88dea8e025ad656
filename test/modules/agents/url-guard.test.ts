import { describe, expect, it } from 'bun:test'
import { AgentUrlGuard, AgentUrlRefusedError, classifyAddress, type AddressClass } from '../../../src/modules/agents/ssrf'

describe('the agent URL guard', () => {
  it('answers the same for a URL checked again, and refuses a bad one every time', async () => {
    const guard = new AgentUrlGuard({ allowPrivate: true })
    const first = await guard.check('http://127.0.0.1:8080/a2a')
    const again = await guard.check('http://127.0.0.1:8080/a2a')
    expect([first.href, again.href]).toEqual(['http://127.0.0.1:8080/a2a', 'http://127.0.0.1:8080/a2a'])
    for (let attempt = 0; attempt < 2; attempt++) {
      await expect(guard.check('http://user:pw@127.0.0.1:8080/')).rejects.toBeInstanceOf(AgentUrlRefusedError)
      await expect(guard.check('ftp://127.0.0.1/')).rejects.toThrow('must use http or https')
    }
  })

  it('keeps a bounded number of parsed URLs, however many distinct ones it is asked about', async () => {
    const guard = new AgentUrlGuard({ allowPrivate: true })
    const kept = () => (guard as unknown as { parsed: Map<string, unknown> }).parsed.size
    for (let port = 1001; port <= 3500; port++) {
      const url = await guard.check(`http://127.0.0.1:${port}/`)
      expect(url.port).toBe(String(port))
      expect(kept()).toBeLessThanOrEqual(1000)
    }
    expect(kept()).toBeGreaterThan(0)
    expect((await guard.check('http://127.0.0.1:1001/')).port).toBe('1001')
  })
})

describe('IPv6 addresses that carry an IPv4 address', () => {
  it('are judged by the IPv4 address they carry', () => {
    const table: [string, AddressClass][] = [
      // The four forms that passed as public.
      ['::127.0.0.1', 'private'], // IPv4-compatible
      ['::ffff:0:127.0.0.1', 'private'], // IPv4-translated (SIIT)
      ['64:ff9b:1::7f00:1', 'private'], // local-use NAT64
      ['2002:7f00:1::', 'private'], // 6to4
      // Well-known NAT64, mapped, and the same forms carrying other ranges.
      ['64:ff9b::7f00:1', 'private'],
      ['64:ff9b::a9fe:a9fe', 'blocked'],
      ['::ffff:127.0.0.1', 'private'],
      ['::a9fe:a9fe', 'blocked'],
      ['::ffff:0:a00:1', 'private'],
      ['2002:c0a8:101::1', 'private'],
      ['2002:a9fe:a9fe::', 'blocked'],
      ['64:ff9b:1::a9fe:a9fe', 'blocked'],
      // Teredo: server 127.0.0.1, client 8.8.8.8 (stored inverted); server 8.8.8.8, client 127.0.0.1; both public.
      ['2001:0:7f00:1::f7f7:f7f7', 'private'],
      ['2001:0:808:808::80ff:fffe', 'private'],
      ['2001:0:808:808::f7f7:f7f7', 'public'],
      // Carrying a public address: public, except local-use NAT64, which is a site's own translator.
      ['::8.8.8.8', 'public'],
      ['::ffff:0:808:808', 'public'],
      ['64:ff9b::808:808', 'public'],
      ['2002:808:808::', 'public'],
      ['64:ff9b:1::808:808', 'private'],
      // Not carrying one.
      ['::', 'blocked'],
      ['::1', 'private'],
      ['fec0::1', 'private'],
      ['100::1', 'blocked'],
      ['2606:4700:4700::1111', 'public'],
    ]
    expect(table.map(([address]) => [address, classifyAddress(address).kind])).toEqual(table)
  })

  it('are refused by the default policy as the address they carry, without a connection', async () => {
    const guard = new AgentUrlGuard({ allowPrivate: false })
    for (const [url, form] of [
      ['http://[::127.0.0.1]:8080/', 'IPv4-compatible'],
      ['http://[::ffff:0:127.0.0.1]/', 'IPv4-translated (SIIT)'],
      ['http://[64:ff9b:1::7f00:1]/', 'local-use NAT64'],
      ['http://[2002:7f00:1::]/', '6to4'],
    ]) {
      await expect(guard.check(url!)).rejects.toThrow(`a loopback address (127.0.0.1 in ${form} form) (allowed only with --allow-private-agent-urls)`)
    }
  })
})
