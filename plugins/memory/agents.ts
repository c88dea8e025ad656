import type { ActivityPage, ActivityRecord, AgentStore, WorkspacePatch, WorkspaceRecord } from '../../src/backend/agents'

const clone = <T>(value: T): T => structuredClone(value)

/** Freezes a value and everything in it, so stored records can be handed out without copying. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const inner of Object.values(value)) deepFreeze(inner)
  }
  return value
}

/** Activity kept per workspace; older calls are dropped first. */
const ACTIVITY_KEPT = 10_000

/** Activity of one workspace: `first` is the sequence number of the oldest kept entry, so cursors stay valid while old entries are dropped. */
interface ActivityLog {
  first: number
  entries: ActivityRecord[]
}

/**
 * Workspaces, token digests and activity in plain maps. Stored records are
 * deeply frozen and replaced on every change, so reads return them as they
 * are (no copy on the proxy's hot path) and no caller can alter the store.
 */
export class MemoryAgents implements AgentStore {
  private readonly workspaces = new Map<string, WorkspaceRecord>()
  /** token digest → workspace id */
  private readonly tokens = new Map<string, string>()
  private readonly activity = new Map<string, ActivityLog>()

  async createWorkspace(workspace: WorkspaceRecord, tokenHash: string): Promise<boolean> {
    if (this.workspaces.has(workspace.id)) return false
    this.workspaces.set(workspace.id, deepFreeze(clone(workspace)))
    this.tokens.set(tokenHash, workspace.id)
    return true
  }

  async getWorkspace(id: string): Promise<WorkspaceRecord | null> {
    return this.workspaces.get(id) ?? null
  }

  async listWorkspaces(): Promise<WorkspaceRecord[]> {
    return [...this.workspaces.values()]
  }

  async listChildren(parentId: string): Promise<WorkspaceRecord[]> {
    return [...this.workspaces.values()].filter((workspace) => workspace.parentId === parentId)
  }

  async updateWorkspace(id: string, patch: WorkspacePatch): Promise<WorkspaceRecord | null> {
    const workspace = this.workspaces.get(id)
    if (!workspace || workspace.removedAt !== null) return null
    const changes = Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined))
    const updated = deepFreeze({ ...workspace, ...clone(changes) })
    this.workspaces.set(id, updated)
    return updated
  }

  private revoke(id: string): void {
    for (const [hash, owner] of this.tokens) if (owner === id) this.tokens.delete(hash)
  }

  async removeWorkspace(id: string, at: number): Promise<WorkspaceRecord | null> {
    const workspace = this.workspaces.get(id)
    if (!workspace) return null
    this.revoke(id)
    if (workspace.removedAt !== null) return workspace
    const removed = deepFreeze({ ...workspace, removedAt: at })
    this.workspaces.set(id, removed)
    return removed
  }

  async rotateToken(id: string, tokenHash: string): Promise<boolean> {
    const workspace = this.workspaces.get(id)
    if (!workspace || workspace.removedAt !== null) return false
    this.revoke(id)
    this.tokens.set(tokenHash, id)
    return true
  }

  async workspaceOfToken(tokenHash: string): Promise<string | null> {
    return this.tokens.get(tokenHash) ?? null
  }

  async hasToken(id: string): Promise<boolean> {
    for (const owner of this.tokens.values()) if (owner === id) return true
    return false
  }

  private append(workspaceId: string, activity: ActivityRecord): void {
    let log = this.activity.get(workspaceId)
    if (!log) this.activity.set(workspaceId, (log = { first: 0, entries: [] }))
    log.entries.push(activity)
    // Trim in bulk once the log holds twice what is kept, so an append stays O(1) on average.
    if (log.entries.length >= 2 * ACTIVITY_KEPT) {
      const dropped = log.entries.length - ACTIVITY_KEPT
      log.entries.splice(0, dropped)
      log.first += dropped
    }
  }

  async recordActivity(activity: ActivityRecord): Promise<void> {
    const stored = Object.freeze({ ...activity })
    this.append(activity.target, stored)
    if (activity.source !== null && activity.source !== activity.target) this.append(activity.source, stored)
  }

  async listActivity(workspaceId: string, limit: number, cursor: string | null): Promise<ActivityPage> {
    const log = this.activity.get(workspaceId) ?? { first: 0, entries: [] }
    // Only the newest ACTIVITY_KEPT entries are visible, even while the log holds more before a trim.
    const visible = Math.max(0, log.entries.length - ACTIVITY_KEPT)
    // A cursor is the sequence number just past the next entry to return (exclusive end).
    const last = log.first + log.entries.length
    const parsed = cursor === null ? last : Number.parseInt(cursor, 10)
    const end = Math.min(last, Number.isFinite(parsed) ? parsed : last) - log.first
    const start = Math.max(visible, end - limit)
    const items = log.entries.slice(start, Math.max(start, end)).reverse()
    return { items, next: start > visible ? String(start + log.first) : null }
  }
}
