/**
 * The AgentStore contract: workspaces, token digests and activity, written
 * once and run against every backend plugin on a fresh backend per test.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import type { ActivityPage, ActivityRecord, AgentStore, Backend, WorkspaceRecord } from '../../../src/backend/index'

/** A new token digest; for `workspaceId`, one that `store` takes for it (AgentStore.tokenFits), as Switchboard draws them. */
export function digest(store?: AgentStore, workspaceId?: string): string {
  for (;;) {
    const drawn = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex')
    if (store === undefined || workspaceId === undefined || (store.tokenFits?.(workspaceId, drawn) ?? true)) return drawn
  }
}

export function workspace(overrides: Partial<WorkspaceRecord> = {}): WorkspaceRecord {
  return {
    id: randomUUID(),
    name: 'agent',
    role: null,
    parentId: null,
    url: null,
    agentCard: null,
    deliveryMode: 'push',
    inboundSecret: 'secret',
    createdAt: Date.now(),
    removedAt: null,
    lastHeartbeatAt: null,
    errorRate: 0,
    activeTasks: 0,
    currentTask: null,
    uptimeSeconds: null,
    ...overrides,
  }
}

export function activity(source: string | null, target: string, overrides: Partial<ActivityRecord> = {}): ActivityRecord {
  return {
    id: randomUUID(),
    source,
    target,
    method: 'message/send',
    status: 200,
    durationMs: 3,
    requestBytes: 10,
    responseBytes: 20,
    error: null,
    at: Date.now(),
    ...overrides,
  }
}

export function agentStoreCases(makeBackend: () => Promise<Backend>): void {
  describe('AgentStore', () => {
    let backend: Backend | null = null
    const open = async () => (backend = await makeBackend()).agents
    afterEach(async () => {
      await backend?.close()
      backend = null
    })

    it('creates a workspace and returns it field for field', async () => {
      const store = await open()
      const parent = workspace({ name: 'parent' })
      const record = workspace({ name: 'child', role: 'writer', parentId: parent.id, url: 'http://127.0.0.1:9/a2a', agentCard: { name: 'c', skills: [{ id: 's' }] }, deliveryMode: 'poll', uptimeSeconds: 5 })
      expect(await store.createWorkspace(parent, digest(store, parent.id))).toBe(true)
      expect(await store.createWorkspace(record, digest(store, record.id))).toBe(true)
      expect(await store.getWorkspace(record.id)).toEqual(record)
    })

    it('refuses to create a workspace whose id is taken and keeps the first one, under its own parent only', async () => {
      const store = await open()
      const [parent, other] = [workspace({ name: 'parent' }), workspace({ name: 'other' })]
      for (const item of [parent, other]) await store.createWorkspace(item, digest(store, item.id))
      const first = workspace({ name: 'first', parentId: parent.id })
      const secondToken = digest(store, first.id)
      expect(await store.createWorkspace(first, digest(store, first.id))).toBe(true)
      expect(await store.createWorkspace({ ...first, name: 'second', parentId: other.id }, secondToken)).toBe(false)
      expect((await store.getWorkspace(first.id))?.name).toBe('first')
      expect(await store.workspaceOfToken(secondToken)).toBeNull()
      expect((await store.listChildren(parent.id)).map((item) => item.name)).toEqual(['first'])
      expect(await store.listChildren(other.id)).toEqual([])
    })

    it('answers null for a workspace that does not exist', async () => {
      const store = await open()
      expect(await store.getWorkspace(randomUUID())).toBeNull()
      expect(await store.updateWorkspace(randomUUID(), { name: 'x' })).toBeNull()
      expect(await store.removeWorkspace(randomUUID(), Date.now())).toBeNull()
      const unknown = randomUUID()
      expect(await store.rotateToken(unknown, digest(store, unknown))).toBe(false)
    })

    it('lists every workspace and the direct children of one, removed ones included', async () => {
      const store = await open()
      const root = workspace({ name: 'root', createdAt: 1 })
      const a = workspace({ name: 'a', parentId: root.id, createdAt: 2 })
      const b = workspace({ name: 'b', parentId: root.id, createdAt: 3 })
      const grandchild = workspace({ name: 'g', parentId: a.id, createdAt: 4 })
      for (const item of [root, a, b, grandchild]) await store.createWorkspace(item, digest(store, item.id))
      await store.removeWorkspace(b.id, 10)
      expect((await store.listWorkspaces()).map((item) => item.name).sort()).toEqual(['a', 'b', 'g', 'root'])
      expect((await store.listChildren(root.id)).map((item) => item.name).sort()).toEqual(['a', 'b'])
      expect((await store.listChildren(a.id)).map((item) => item.name)).toEqual(['g'])
      expect(await store.listChildren(grandchild.id)).toEqual([])
    })

    it('applies a patch and leaves the other fields alone', async () => {
      const store = await open()
      const record = workspace({ name: 'before', role: 'r' })
      await store.createWorkspace(record, digest(store, record.id))
      const card = { name: 'card', url: 'http://127.0.0.1:1/' }
      const updated = await store.updateWorkspace(record.id, { url: 'http://127.0.0.1:1/', agentCard: card, lastHeartbeatAt: 42, errorRate: 0.5, currentTask: 'task' })
      expect(updated).toEqual({ ...record, url: 'http://127.0.0.1:1/', agentCard: card, lastHeartbeatAt: 42, errorRate: 0.5, currentTask: 'task' })
      expect(await store.getWorkspace(record.id)).toEqual(updated!)
    })

    it('does not change a removed workspace', async () => {
      const store = await open()
      const record = workspace()
      await store.createWorkspace(record, digest(store, record.id))
      await store.removeWorkspace(record.id, 5)
      expect(await store.updateWorkspace(record.id, { url: 'http://127.0.0.1:1/' })).toBeNull()
      expect((await store.getWorkspace(record.id))?.url).toBeNull()
    })

    it('finds the workspace of a live token and nothing for an unknown one', async () => {
      const store = await open()
      const record = workspace()
      const token = digest(store, record.id)
      await store.createWorkspace(record, token)
      expect(await store.workspaceOfToken(token)).toBe(record.id)
      expect(await store.workspaceOfToken(digest())).toBeNull()
      expect(await store.hasToken(record.id)).toBe(true)
      expect(await store.hasToken(randomUUID())).toBe(false)
    })

    it('removing a workspace marks it removed, keeps the first removal time and revokes its tokens', async () => {
      const store = await open()
      const record = workspace()
      const token = digest(store, record.id)
      await store.createWorkspace(record, token)
      const removed = await store.removeWorkspace(record.id, 1000)
      expect(removed?.removedAt).toBe(1000)
      expect(await store.workspaceOfToken(token)).toBeNull()
      expect(await store.hasToken(record.id)).toBe(false)
      expect((await store.removeWorkspace(record.id, 2000))?.removedAt).toBe(1000)
      expect((await store.getWorkspace(record.id))?.removedAt).toBe(1000)
    })

    it('rotating a token revokes the old one and makes the new one live', async () => {
      const store = await open()
      const record = workspace()
      const old = digest(store, record.id)
      const fresh = digest(store, record.id)
      await store.createWorkspace(record, old)
      expect(await store.rotateToken(record.id, fresh)).toBe(true)
      expect(await store.workspaceOfToken(old)).toBeNull()
      expect(await store.workspaceOfToken(fresh)).toBe(record.id)
    })

    it('does not rotate the token of a removed workspace', async () => {
      const store = await open()
      const record = workspace()
      await store.createWorkspace(record, digest(store, record.id))
      await store.removeWorkspace(record.id, 1)
      const fresh = digest(store, record.id)
      expect(await store.rotateToken(record.id, fresh)).toBe(false)
      expect(await store.workspaceOfToken(fresh)).toBeNull()
    })

    it('keeps the tokens of one workspace apart from another', async () => {
      const store = await open()
      const a = workspace()
      const b = workspace()
      const tokenA = digest(store, a.id)
      const tokenB = digest(store, b.id)
      await store.createWorkspace(a, tokenA)
      await store.createWorkspace(b, tokenB)
      await store.removeWorkspace(a.id, 1)
      expect(await store.workspaceOfToken(tokenA)).toBeNull()
      expect(await store.workspaceOfToken(tokenB)).toBe(b.id)
    })

    it('shows a call to both its source and its target, newest first', async () => {
      const store = await open()
      const source = randomUUID()
      const target = randomUUID()
      const first = activity(source, target, { at: 1 })
      // The trace and task fields are kept as written; `first` has none, as a record written before they were kept.
      const second = activity(source, target, {
        at: 2,
        method: 'message/stream',
        status: 504,
        error: 'timeout',
        traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        taskId: 'task-1',
        contextId: 'context-1',
        taskState: 'TASK_STATE_WORKING',
      })
      await store.recordActivity(first)
      await store.recordActivity(second)
      expect((await store.listActivity(target, 10, null)).items).toEqual([second, first])
      expect((await store.listActivity(source, 10, null)).items).toEqual([second, first])
      expect(await store.listActivity(randomUUID(), 10, null)).toEqual({ items: [], next: null })
    })

    it('records a call from an admin (no source) and a call to itself once', async () => {
      const store = await open()
      const target = randomUUID()
      await store.recordActivity(activity(null, target))
      await store.recordActivity(activity(target, target))
      expect((await store.listActivity(target, 10, null)).items).toHaveLength(2)
    })

    it('pages through activity without gaps or repeats, even while calls are added', async () => {
      const store = await open()
      const target = randomUUID()
      const recorded: ActivityRecord[] = []
      for (let i = 0; i < 7; i++) {
        const item = activity(randomUUID(), target, { at: i })
        recorded.push(item)
        await store.recordActivity(item)
      }
      const first = await store.listActivity(target, 3, null)
      expect(first.items.map((item) => item.at)).toEqual([6, 5, 4])
      expect(first.next).not.toBeNull()
      await store.recordActivity(activity(null, target, { at: 100 }))
      const second = await store.listActivity(target, 3, first.next)
      expect(second.items.map((item) => item.at)).toEqual([3, 2, 1])
      const third = await store.listActivity(target, 3, second.next)
      expect(third.items.map((item) => item.at)).toEqual([0])
      expect(third.next).toBeNull()
    })

    it('shows only the newest 10,000 calls of a workspace, however many it was sent', async () => {
      const store = await open()
      const target = randomUUID()
      const total = 11_500
      for (let at = 0; at < total; at += 500) {
        await Promise.all(Array.from({ length: 500 }, (_, i) => store.recordActivity(activity(null, target, { at: at + i }))))
      }
      const shown: number[] = []
      let cursor: string | null = null
      do {
        const page: ActivityPage = await store.listActivity(target, 1000, cursor)
        shown.push(...page.items.map((item) => item.at))
        cursor = page.next
      } while (cursor !== null)
      expect(shown).toHaveLength(10_000)
      expect(shown[0]).toBe(total - 1)
      expect(shown[shown.length - 1]).toBe(total - 10_000)
    })

    it('records 100 concurrent calls without losing one', async () => {
      const store = await open()
      const target = randomUUID()
      const sources = Array.from({ length: 10 }, () => randomUUID())
      await Promise.all(Array.from({ length: 100 }, (_, i) => store.recordActivity(activity(sources[i % 10]!, target, { at: i }))))
      const all: ActivityRecord[] = []
      let cursor: string | null = null
      do {
        const page = await store.listActivity(target, 30, cursor)
        all.push(...page.items)
        cursor = page.next
      } while (cursor !== null)
      expect(all).toHaveLength(100)
      expect(new Set(all.map((item) => item.id)).size).toBe(100)
      for (const source of sources) expect((await store.listActivity(source, 100, null)).items).toHaveLength(10)
    })
  
    it("keeps a workspace's card-signature check, and replaces it with the next one", async () => {
      const store = await open()
      const record = workspace()
      await store.createWorkspace(record, digest(store, record.id))
      const check = { status: 'invalid' as const, kid: 'key-1', jku: 'http://127.0.0.1:9/jwks.json', reason: 'no signature verified', checkedAt: 7 }
      expect((await store.updateWorkspace(record.id, { cardSignature: check }))?.cardSignature).toEqual(check)
      expect((await store.getWorkspace(record.id))?.cardSignature).toEqual(check)
      await store.updateWorkspace(record.id, { cardSignature: { ...check, status: 'unsigned', kid: null, jku: null, reason: null } })
      expect((await store.getWorkspace(record.id))?.cardSignature?.status).toBe('unsigned')
    })

    it('keeps the first card-signing key written: every later candidate, concurrent ones too, gets that key back', async () => {
      const store = await open()
      const answers = await Promise.all(['{"k":"a"}', '{"k":"b"}', '{"k":"c"}'].map((candidate) => store.cardSigningKey(candidate)))
      expect(new Set(answers).size).toBe(1)
      expect(['{"k":"a"}', '{"k":"b"}', '{"k":"c"}']).toContain(answers[0]!)
      expect(await store.cardSigningKey('{"k":"d"}')).toBe(answers[0]!)
    })
})
}
