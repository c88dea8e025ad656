import type { ActivityPage, ActivityRecord, AgentStore, WorkspaceRecord } from '../../src/backend/agents'

const clone = <T>(value: T): T => structuredClone(value)

/** Workspaces, token digests and activity in plain maps. */
export class MemoryAgents implements AgentStore {
  private readonly workspaces = new Map<string, WorkspaceRecord>()
  private readonly tokens = new Map<string, string>()
  private readonly activity = new Map<string, ActivityRecord[]>()

  async createWorkspace(workspace: WorkspaceRecord, tokenHash: string): Promise<void> {
    this.workspaces.set(workspace.id, clone(workspace))
    this.tokens.set(tokenHash, workspace.id)
  }

  async getWorkspace(id: string): Promise<WorkspaceRecord | null> {
    const workspace = this.workspaces.get(id)
    return workspace ? clone(workspace) : null
  }

  async listWorkspaces(): Promise<WorkspaceRecord[]> {
    return [...this.workspaces.values()].map(clone)
  }

  async updateWorkspace(id: string, patch: Partial<WorkspaceRecord>): Promise<WorkspaceRecord | null> {
    const workspace = this.workspaces.get(id)
    if (!workspace || workspace.removedAt !== null) return null
    Object.assign(workspace, clone(patch))
    return clone(workspace)
  }

  private revoke(id: string): void {
    for (const [hash, owner] of this.tokens) if (owner === id) this.tokens.delete(hash)
  }

  async removeWorkspace(id: string, at: number): Promise<WorkspaceRecord | null> {
    const workspace = this.workspaces.get(id)
    if (!workspace) return null
    if (workspace.removedAt === null) workspace.removedAt = at
    this.revoke(id)
    return clone(workspace)
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

  async recordActivity(workspaceId: string, activity: ActivityRecord): Promise<void> {
    let list = this.activity.get(workspaceId)
    if (!list) this.activity.set(workspaceId, (list = []))
    list.push(clone(activity))
  }

  async listActivity(workspaceId: string, limit: number, cursor: string | null): Promise<ActivityPage> {
    const list = this.activity.get(workspaceId) ?? []
    const end = cursor === null ? list.length : Math.min(list.length, Number.parseInt(cursor, 10) || 0)
    const start = Math.max(0, end - limit)
    const items = list.slice(start, end).reverse().map(clone)
    return { items, next: start > 0 ? String(start) : null }
  }
}
