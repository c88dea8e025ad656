import { describe, expect, it } from 'bun:test'
import { AgentUrlGuard, AgentUrlRefusedError } from '../../../src/modules/agents/ssrf'

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
