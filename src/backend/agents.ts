/** The agents module's part of the backend contract: workspaces, their tokens, and call activity. */

export type WorkspaceStatus = 'provisioning' | 'online' | 'degraded' | 'offline' | 'removed'

export interface WorkspaceRecord {
  id: string
  name: string
  role: string | null
  parentId: string | null
  url: string | null
  agentCard: Record<string, unknown> | null
  deliveryMode: 'push' | 'poll'
  /** Secret the proxy sends to the agent so it can tell calls from Switchboard apart. */
  inboundSecret: string
  createdAt: number
  removedAt: number | null
  lastHeartbeatAt: number | null
  errorRate: number
  activeTasks: number
  currentTask: string | null
  uptimeSeconds: number | null
}

export interface ActivityRecord {
  id: string
  source: string | null
  target: string
  method: string | null
  status: number
  durationMs: number
  requestBytes: number
  responseBytes: number
  at: number
}

export interface ActivityPage {
  items: ActivityRecord[]
  /** Opaque cursor for the next page, null at the end. */
  next: string | null
}

/** Workspace storage. Tokens are stored only as SHA-256 hex digests. */
export interface AgentStore {
  createWorkspace(workspace: WorkspaceRecord, tokenHash: string): Promise<void>
  getWorkspace(id: string): Promise<WorkspaceRecord | null>
  listWorkspaces(): Promise<WorkspaceRecord[]>
  /** Apply a patch to a workspace that is not removed; returns the new record or null. */
  updateWorkspace(id: string, patch: Partial<WorkspaceRecord>): Promise<WorkspaceRecord | null>
  /** Mark removed and revoke every token, in one step. */
  removeWorkspace(id: string, at: number): Promise<WorkspaceRecord | null>
  /** Replace the workspace's tokens with one new token. */
  rotateToken(id: string, tokenHash: string): Promise<boolean>
  /** The workspace a live token belongs to, or null. */
  workspaceOfToken(tokenHash: string): Promise<string | null>
  /** Whether the workspace has any live token. */
  hasToken(id: string): Promise<boolean>
  recordActivity(workspaceId: string, activity: ActivityRecord): Promise<void>
  listActivity(workspaceId: string, limit: number, cursor: string | null): Promise<ActivityPage>
}
