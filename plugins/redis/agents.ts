/** Workspaces, token digests and activity in Redis; every change that touches more than one key is one Lua script. */
import type { ActivityPage, ActivityRecord, AgentStore, WorkspacePatch, WorkspaceRecord } from '../../src/backend/agents'
import { script, storeError, type RedisConnection } from './connection'
import type { RedisKeys } from './keys'
import * as lua from './scripts/agents'
import { fromFields, toFields } from './workers'

const SCRIPTS = {
  create: script(lua.CREATE_WORKSPACE),
  update: script(lua.UPDATE_WORKSPACE),
  remove: script(lua.REMOVE_WORKSPACE),
  rotate: script(lua.ROTATE_TOKEN),
  record: script(lua.RECORD_ACTIVITY, { answered: false }),
  list: script(lua.LIST_ACTIVITY, { answered: false }),
}

/** Activity kept per workspace; older calls are dropped first. */
const ACTIVITY_KEPT = 10_000

export class RedisAgents implements AgentStore {
  constructor(
    private readonly connection: RedisConnection,
    private readonly keys: RedisKeys,
  ) {}

  /** The token key prefix the scripts append a digest to. */
  private tokenPrefix(): string {
    return this.keys.token('')
  }

  private async command<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      throw storeError(error)
    }
  }

  private async workspacesIn(index: string): Promise<WorkspaceRecord[]> {
    const ids = await this.command(() => this.connection.command.zrange(index, '0', '-1'))
    if (ids.length === 0) return []
    const results = await this.command(async () => {
      const pipeline = this.connection.command.pipeline()
      for (const id of ids) pipeline.hgetall(this.keys.workspace(id))
      return (await pipeline.exec()) ?? []
    })
    const found: WorkspaceRecord[] = []
    for (const [error, hash] of results) {
      if (error) throw storeError(error)
      const workspace = fromFields<WorkspaceRecord>(hash as Record<string, string>)
      if (workspace) found.push(workspace)
    }
    return found
  }

  async createWorkspace(workspace: WorkspaceRecord, tokenHash: string): Promise<boolean> {
    const created = await this.connection.run(
      SCRIPTS.create,
      [this.keys.workspace(workspace.id), this.keys.workspaces(), this.keys.children(workspace.parentId ?? ''), this.keys.token(tokenHash), this.keys.tokensOf(workspace.id), this.keys.sequence()],
      [workspace.id, tokenHash, workspace.parentId !== null ? '1' : '', ...toFields(workspace)],
    )
    return created === 1
  }

  async getWorkspace(id: string): Promise<WorkspaceRecord | null> {
    return fromFields<WorkspaceRecord>(await this.command(() => this.connection.command.hgetall(this.keys.workspace(id))))
  }

  listWorkspaces(): Promise<WorkspaceRecord[]> {
    return this.workspacesIn(this.keys.workspaces())
  }

  listChildren(parentId: string): Promise<WorkspaceRecord[]> {
    return this.workspacesIn(this.keys.children(parentId))
  }

  async updateWorkspace(id: string, patch: WorkspacePatch): Promise<WorkspaceRecord | null> {
    const hash = (await this.connection.run(SCRIPTS.update, [this.keys.workspace(id)], toFields(patch))) as string[]
    return fromFields<WorkspaceRecord>(hash)
  }

  async removeWorkspace(id: string, at: number): Promise<WorkspaceRecord | null> {
    const hash = (await this.connection.run(SCRIPTS.remove, [this.keys.workspace(id), this.keys.tokensOf(id)], [JSON.stringify(at), this.tokenPrefix()])) as string[]
    return fromFields<WorkspaceRecord>(hash)
  }

  async rotateToken(id: string, tokenHash: string): Promise<boolean> {
    const rotated = await this.connection.run(SCRIPTS.rotate, [this.keys.workspace(id), this.keys.tokensOf(id), this.keys.token(tokenHash)], [id, tokenHash, this.tokenPrefix()])
    return rotated === 1
  }

  workspaceOfToken(tokenHash: string): Promise<string | null> {
    return this.command(() => this.connection.command.get(this.keys.token(tokenHash)))
  }

  async hasToken(id: string): Promise<boolean> {
    return (await this.command(() => this.connection.command.scard(this.keys.tokensOf(id)))) > 0
  }

  async recordActivity(activity: ActivityRecord): Promise<void> {
    const source = activity.source !== null && activity.source !== activity.target ? activity.source : null
    await this.connection.run(
      SCRIPTS.record,
      [this.keys.activity(activity.target), this.keys.activityCount(activity.target), this.keys.activity(source ?? activity.target), this.keys.activityCount(source ?? activity.target)],
      [JSON.stringify(activity), source !== null ? '1' : '', ACTIVITY_KEPT],
    )
  }

  async listActivity(workspaceId: string, limit: number, cursor: string | null): Promise<ActivityPage> {
    const [olderKept, start, ...entries] = (await this.connection.run(SCRIPTS.list, [this.keys.activity(workspaceId), this.keys.activityCount(workspaceId)], [limit, cursor ?? ''])) as [number, number, ...string[]]
    const items = entries.reverse().map((entry) => JSON.parse(entry) as ActivityRecord)
    return { items, next: olderKept === 1 ? String(start) : null }
  }

  async cardSigningKey(candidate: string): Promise<string> {
    const key = this.keys.cardSigningKey()
    // The first instance to write it wins; the key is never changed, so reading it after is enough.
    await this.command(() => this.connection.command.set(key, candidate, 'NX'))
    return (await this.command(() => this.connection.command.get(key)))!
  }
}
