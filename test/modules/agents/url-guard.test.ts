import { describe, expect, it, setSystemTime } from 'bun:test'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { AgentUrlGuard, AgentUrlRefusedError, classifyAddress, type AddressClass } from '../../../src/modules/agents/ssrf'
import { messageSend, startRegistry } from './support'

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

/** An agent on `host` (a loopback address) that answers every call and notes where it was reached and the Host it was sent. */
async function agentOn(host: string, port: number, seen: { at: string; host: string | undefined }[]): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    seen.push({ at: host, host: req.headers.host })
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { kind: 'message', role: 'agent', messageId: 'm', parts: [{ kind: 'text', text: host }] } }))
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  return server
}

describe('the address a proxied call connects to', () => {
  it('is the address its name was checked at: never a second resolution, whatever the name resolves to later', async () => {
    // One port on three loopback addresses: the resolver's first answer, its second, and the system's for localhost.
    const seen: { at: string; host: string | undefined }[] = []
    const first = await agentOn('127.0.0.2', 0, seen)
    const port = (first.address() as AddressInfo).port
    const servers = [first, await agentOn('127.0.0.3', port, seen), await agentOn('127.0.0.1', port, seen)]
    const queries: string[] = []
    const resolve = async (host: string) => {
      queries.push(host)
      return [queries.length === 1 ? '127.0.0.2' : '127.0.0.3']
    }
    const registry = await startRegistry({}, { resolve })
    try {
      const workspace = await registry.createWorkspace('rebinding')
      await registry.register(workspace, `http://localhost:${port}/a2a`)
      const call = async () => {
        const response = await registry.request('POST', `/workspaces/${workspace.id}/a2a`, { token: workspace.token, body: messageSend('echo:x') })
        expect(response.status).toBe(200)
      }
      // Registration checked the name: it was 127.0.0.2, and the call goes there, with the name as Host.
      await call()
      expect(seen).toEqual([{ at: '127.0.0.2', host: `localhost:${port}` }])
      expect(queries).toEqual(['localhost'])
      // Once the verdict is old, the name is checked again: the next call goes where that check found it.
      setSystemTime(new Date(Date.now() + 11_000))
      await call()
      expect(seen.slice(1)).toEqual([{ at: '127.0.0.3', host: `localhost:${port}` }])
      expect(queries).toEqual(['localhost', 'localhost'])
    } finally {
      setSystemTime()
      await registry.close()
      for (const server of servers) server.close()
    }
  })
})
