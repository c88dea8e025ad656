/**
 * A SQLite database at its size limit (max_db_mb): a send that would grow it
 * is refused with 507 and the reason, nothing of it stored; receivers still
 * drain it, and once what they took is settled, sends are accepted again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { agentId, bodies, userId } from '../support/academy'
import { serveBackend, type TestServer } from '../support/app'
import { makeBackend } from '../support/backend'
import { expectAllDelivered, fillUntilRefused, largeMessage, mailboxStats } from '../support/full'
import { rawRequest } from '../support/http'
import { tempDir } from '../support/temp'
import { eventually } from '../support/wait'
import { join } from 'node:path'
import { DatabaseSize, hardLimitBytes, openDatabase } from '../../plugins/sqlite/database'

describe('a SQLite database at max_db_mb', () => {
  let running: TestServer
  beforeAll(async () => {
    running = await serveBackend(await makeBackend('sqlite', { max_db_mb: 1, redelivery_window_ms: 0 }))
  })
  afterAll(() => running?.close())

  it('refuses sends with 507 and the reason, stores nothing of them, and still lets receivers drain it', async () => {
    const [user, agent] = [userId(), agentId()]
    const { accepted, refused } = await fillUntilRefused(running.url, user, agent, 100)
    expect(refused.status).toBe(507)
    expect(refused.headers['content-type']).toStartWith('text/plain')
    expect(refused.text).toContain('The SQLite database holds max_db_mb (1 MiB) already')
    expect(accepted.length).toBeGreaterThan(5)
    const before = await mailboxStats(running.url, agent)
    expect(Object.values(before)).toContain(accepted.length)
    const send = () => rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(largeMessage(user, agent)) })
    expect((await send()).status).toBe(507)
    expect(await mailboxStats(running.url, agent)).toEqual(before)

    await expectAllDelivered(running.url, agent, accepted)
    // What was taken is deleted once settled; its room takes new messages.
    await eventually(async () => (await send()).status === 200, 5000, 'a send accepted again')
  }, 60_000)
})

describe('the size limit of a SQLite file', () => {
  it('lets the file grow a quarter past max_db_mb, at least 8 MiB, for what does not queue messages', () => {
    expect(hardLimitBytes(1)).toBe(9 * 1024 * 1024)
    expect(hardLimitBytes(100)).toBe(125 * 1024 * 1024)
    const dir = tempDir('size')
    const db = openDatabase({ path: join(dir, 'limited.db'), synchronous: 'normal', maxMb: 1 })
    expect(db.query<{ max_page_count: number }, []>('PRAGMA max_page_count').get()!.max_page_count * 4096).toBe(9 * 1024 * 1024)
    const size = new DatabaseSize(db, 1)
    expect(size.wouldPass(1000)).toBe(false)
    expect(size.wouldPass(1024 * 1024)).toBe(true)
    db.close()
    const unlimited = openDatabase({ path: join(dir, 'unlimited.db'), synchronous: 'normal' })
    expect(new DatabaseSize(unlimited, 0).wouldPass(1024 ** 3)).toBe(false)
    unlimited.close()
  })
})
