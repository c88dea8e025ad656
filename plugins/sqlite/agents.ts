/** Workspaces, token digests and activity in SQLite; every write is one transaction, committed with the other writes of its turn (GroupCommit). */
import type { Database, Statement } from 'bun:sqlite'
import type { GroupCommit } from './commit'
import type { ActivityPage, ActivityRecord, AgentStore, WorkspacePatch, WorkspaceRecord } from '../../src/backend/agents'

/** Activity kept per workspace; older calls are dropped first. */
const ACTIVITY_KEPT = 10_000
/**
 * A workspace's activity is trimmed once every this many of its calls (and at its first call after a start): a
 * trim walks ACTIVITY_KEPT index entries, which on every call would cost a proxied call more than its record.
 * Until the next trim a workspace holds up to this many more entries than it shows.
 */
const ACTIVITY_TRIM_EVERY = 1000

type Row<T> = Statement<T, (string | number | null)[]>

export class SqliteAgents implements AgentStore {
  private readonly statements: {
    workspace: Row<{ record: string }>
    insertWorkspace: Row<never>
    saveWorkspace: Row<never>
    workspaces: Row<{ record: string }>
    children: Row<{ record: string }>
    insertToken: Row<never>
    revokeTokens: Row<never>
    workspaceOfToken: Row<{ workspace_id: string }>
    anyToken: Row<{ found: number }>
    insertActivity: Row<never>
    trimActivity: Row<never>
    activityPage: Row<{ seq: number; record: string }>
    oldestShown: Row<{ seq: number }>
    keepSetting: Row<never>
    setting: Row<{ value: string }>
  }

  /** Calls recorded per workspace since its activity was last trimmed. */
  private readonly sinceTrim = new Map<string, number>()

  private readonly createTx: (workspace: WorkspaceRecord, tokenHash: string) => boolean
  private readonly updateTx: (id: string, patch: WorkspacePatch) => WorkspaceRecord | null
  private readonly removeTx: (id: string, at: number) => WorkspaceRecord | null
  private readonly rotateTx: (id: string, tokenHash: string) => boolean
  private readonly recordTx: (activity: ActivityRecord) => void

  constructor(
    db: Database,
    private readonly writes: GroupCommit,
  ) {
    const prepare = <T>(sql: string) => db.prepare(sql) as Row<T>
    this.statements = {
      workspace: prepare('SELECT record FROM workspaces WHERE id = ?'),
      insertWorkspace: prepare('INSERT OR IGNORE INTO workspaces (id, parent_id, record) VALUES (?, ?, ?)'),
      saveWorkspace: prepare('UPDATE workspaces SET record = ? WHERE id = ?'),
      workspaces: prepare('SELECT record FROM workspaces ORDER BY seq'),
      children: prepare('SELECT record FROM workspaces WHERE parent_id = ? ORDER BY seq'),
      insertToken: prepare('INSERT OR REPLACE INTO workspace_tokens (token_hash, workspace_id) VALUES (?, ?)'),
      revokeTokens: prepare('DELETE FROM workspace_tokens WHERE workspace_id = ?'),
      workspaceOfToken: prepare('SELECT workspace_id FROM workspace_tokens WHERE token_hash = ?'),
      anyToken: prepare('SELECT 1 AS found FROM workspace_tokens WHERE workspace_id = ? LIMIT 1'),
      insertActivity: prepare('INSERT INTO activity (workspace_id, record) VALUES (?, ?)'),
      trimActivity: prepare(`DELETE FROM activity WHERE workspace_id = ? AND seq <= (SELECT seq FROM activity WHERE workspace_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ${ACTIVITY_KEPT})`),
      activityPage: prepare('SELECT seq, record FROM activity WHERE workspace_id = ? AND seq < ? AND seq > ? ORDER BY seq DESC LIMIT ?'),
      // The newest entry past the ACTIVITY_KEPT shown (none while a workspace holds no more than that).
      oldestShown: prepare(`SELECT seq FROM activity WHERE workspace_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ${ACTIVITY_KEPT}`),
      keepSetting: prepare('INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)'),
      setting: prepare('SELECT value FROM settings WHERE name = ?'),
    }

    this.createTx = db.transaction((workspace: WorkspaceRecord, tokenHash: string) => {
      if (this.statements.insertWorkspace.run(workspace.id, workspace.parentId, JSON.stringify(workspace)).changes === 0) return false
      this.statements.insertToken.run(tokenHash, workspace.id)
      return true
    })

    this.updateTx = db.transaction((id: string, patch: WorkspacePatch) => {
      const workspace = this.read(id)
      if (!workspace || workspace.removedAt !== null) return null
      for (const [key, value] of Object.entries(patch)) {
        if (value !== undefined) (workspace as unknown as Record<string, unknown>)[key] = value
      }
      this.statements.saveWorkspace.run(JSON.stringify(workspace), id)
      return workspace
    })

    this.removeTx = db.transaction((id: string, at: number) => {
      const workspace = this.read(id)
      if (!workspace) return null
      if (workspace.removedAt === null) {
        workspace.removedAt = at
        this.statements.saveWorkspace.run(JSON.stringify(workspace), id)
      }
      this.statements.revokeTokens.run(id)
      return workspace
    })

    this.rotateTx = db.transaction((id: string, tokenHash: string) => {
      const workspace = this.read(id)
      if (!workspace || workspace.removedAt !== null) return false
      this.statements.revokeTokens.run(id)
      this.statements.insertToken.run(tokenHash, id)
      return true
    })

    this.recordTx = db.transaction((activity: ActivityRecord) => {
      const record = JSON.stringify(activity)
      const owners = activity.source !== null && activity.source !== activity.target ? [activity.target, activity.source] : [activity.target]
      for (const owner of owners) {
        this.statements.insertActivity.run(owner, record)
        const calls = this.sinceTrim.get(owner) ?? ACTIVITY_TRIM_EVERY
        if (calls < ACTIVITY_TRIM_EVERY) {
          this.sinceTrim.set(owner, calls + 1)
          continue
        }
        this.statements.trimActivity.run(owner, owner)
        this.sinceTrim.set(owner, 1)
      }
    })
  }

  private read(id: string): WorkspaceRecord | null {
    const row = this.statements.workspace.get(id)
    return row ? (JSON.parse(row.record) as WorkspaceRecord) : null
  }

  async createWorkspace(workspace: WorkspaceRecord, tokenHash: string): Promise<boolean> {
    return this.writes.run(() => this.createTx(workspace, tokenHash))
  }

  async getWorkspace(id: string): Promise<WorkspaceRecord | null> {
    return this.read(id)
  }

  async listWorkspaces(): Promise<WorkspaceRecord[]> {
    return this.statements.workspaces.all().map((row) => JSON.parse(row.record) as WorkspaceRecord)
  }

  async listChildren(parentId: string): Promise<WorkspaceRecord[]> {
    return this.statements.children.all(parentId).map((row) => JSON.parse(row.record) as WorkspaceRecord)
  }

  async updateWorkspace(id: string, patch: WorkspacePatch): Promise<WorkspaceRecord | null> {
    return this.writes.run(() => this.updateTx(id, patch))
  }

  async removeWorkspace(id: string, at: number): Promise<WorkspaceRecord | null> {
    return this.writes.run(() => this.removeTx(id, at))
  }

  async rotateToken(id: string, tokenHash: string): Promise<boolean> {
    return this.writes.run(() => this.rotateTx(id, tokenHash))
  }

  async workspaceOfToken(tokenHash: string): Promise<string | null> {
    return this.statements.workspaceOfToken.get(tokenHash)?.workspace_id ?? null
  }

  async hasToken(id: string): Promise<boolean> {
    return this.statements.anyToken.get(id) !== null
  }

  async recordActivity(activity: ActivityRecord): Promise<void> {
    await this.writes.run(() => this.recordTx(activity))
  }

  async listActivity(workspaceId: string, limit: number, cursor: string | null): Promise<ActivityPage> {
    // A cursor is the sequence number just past the next entry to return (exclusive end).
    const parsed = cursor === null ? Number.NaN : Number.parseInt(cursor, 10)
    const before = Number.isFinite(parsed) ? parsed : Number.MAX_SAFE_INTEGER
    // Only the newest ACTIVITY_KEPT entries are shown, even while the workspace holds more before a trim.
    const after = this.statements.oldestShown.get(workspaceId)?.seq ?? 0
    const rows = this.statements.activityPage.all(workspaceId, before, after, limit + 1)
    const page = rows.slice(0, limit)
    const next = rows.length > limit && page.length > 0 ? String(page[page.length - 1]!.seq) : null
    return { items: page.map((row) => JSON.parse(row.record) as ActivityRecord), next }
  }

  async cardSigningKey(candidate: string): Promise<string> {
    await this.writes.run(() => this.statements.keepSetting.run('card_signing_key', candidate))
    return this.statements.setting.get('card_signing_key')!.value
  }
}
