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

  private async command<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run()
    } catch (error) {
      throw storeError(error)
    }
  }

  /** The workspaces `ids` name, in that order, skipping ids with no workspace; read one pipeline per bucket (slot). */
  private async read(ids: string[]): Promise<WorkspaceRecord[]> {
    const byBucket = Map.groupBy(ids, (id) => this.keys.workspaceBucketOf(id))
    const found = new Map<string, WorkspaceRecord>()
    await Promise.all(
      [...byBucket.values()].map(async (inBucket) => {
        const results = await this.command(async () => {
          const pipeline = this.connection.command.pipeline()
          for (const id of inBucket) pipeline.hgetall(this.keys.workspace(id))
          return (await pipeline.exec()) ?? []
        })
        results.forEach(([error, hash], at) => {
          if (error) throw storeError(error)
          const workspace = fromFields<WorkspaceRecord>(hash as Record<string, string>)
          if (workspace) found.set(inBucket[at]!, workspace)
        })
      }),
    )
    return ids.flatMap((id) => found.get(id) ?? [])
  }

  /** The ids of a sorted set scored by creation sequence, with their scores. */
  private async scored(index: string): Promise<[string, number][]> {
    const flat = await this.command(() => this.connection.command.zrange(index, '0', '-1', 'WITHSCORES'))
    const entries: [string, number][] = []
    for (let at = 0; at < flat.length; at += 2) entries.push([flat[at]!, Number(flat[at + 1])])
    return entries
  }

  async createWorkspace(workspace: WorkspaceRecord, tokenHash: string): Promise<boolean> {
    // The creation order across buckets (slots of a Cluster) comes from the store's one sequence.
    const seq = await this.command(() => this.connection.command.incr(this.keys.sequence()))
    // Written before the child (its parent's index may be in another slot): an entry whose child the create refuses
    // (the id was taken) names a workspace of another parent, or none, and listChildren leaves it out.
    if (workspace.parentId !== null) await this.command(() => this.connection.command.zadd(this.keys.children(workspace.parentId!), 'NX', seq, workspace.id))
    const created = await this.connection.run(
      SCRIPTS.create,
      [this.keys.workspace(workspace.id), this.keys.workspaces(this.keys.workspaceBucketOf(workspace.id)), this.keys.token(tokenHash), this.keys.tokensOf(workspace.id)],
      [workspace.id, tokenHash, seq, ...toFields(workspace)],
    )
    return created === 1
  }

  async getWorkspace(id: string): Promise<WorkspaceRecord | null> {
    return fromFields<WorkspaceRecord>(await this.command(() => this.connection.command.hgetall(this.keys.workspace(id))))
  }

  async listWorkspaces(): Promise<WorkspaceRecord[]> {
    // Each bucket's index, merged by creation sequence.
    const indexes = await Promise.all(this.keys.allBuckets().map((bucket) => this.scored(this.keys.workspaces(bucket))))
    return this.read(indexes.flat().sort((a, b) => a[1] - b[1]).map(([id]) => id))
  }

  async listChildren(parentId: string): Promise<WorkspaceRecord[]> {
    const children = await this.read((await this.scored(this.keys.children(parentId))).map(([id]) => id))
    return children.filter((child) => child.parentId === parentId)
  }

  async updateWorkspace(id: string, patch: WorkspacePatch): Promise<WorkspaceRecord | null> {
    const hash = (await this.connection.run(SCRIPTS.update, [this.keys.workspace(id)], toFields(patch))) as string[]
    return fromFields<WorkspaceRecord>(hash)
  }

  async removeWorkspace(id: string, at: number): Promise<WorkspaceRecord | null> {
    const hash = (await this.connection.run(SCRIPTS.remove, [this.keys.workspace(id), this.keys.tokensOf(id)], [JSON.stringify(at), this.keys.tokenPrefix(this.keys.workspaceBucketOf(id))])) as string[]
    return fromFields<WorkspaceRecord>(hash)
  }

  async rotateToken(id: string, tokenHash: string): Promise<boolean> {
    const rotated = await this.connection.run(SCRIPTS.rotate, [this.keys.workspace(id), this.keys.tokensOf(id), this.keys.token(tokenHash)], [id, tokenHash, this.keys.tokenPrefix(this.keys.workspaceBucketOf(id))])
    return rotated === 1
  }

  tokenFits(workspaceId: string, tokenHash: string): boolean {
    return this.keys.tokenFits(workspaceId, tokenHash)
  }

  workspaceOfToken(tokenHash: string): Promise<string | null> {
    return this.command(() => this.connection.command.get(this.keys.token(tokenHash)))
  }

  async hasToken(id: string): Promise<boolean> {
    return (await this.command(() => this.connection.command.scard(this.keys.tokensOf(id)))) > 0
  }

  async recordActivity(activity: ActivityRecord): Promise<void> {
    const source = activity.source !== null && activity.source !== activity.target ? activity.source : null
    const append = (first: string, second: string | null) =>
      this.connection.run(
        SCRIPTS.record,
        [this.keys.activity(first), this.keys.activityCount(first), this.keys.activity(second ?? first), this.keys.activityCount(second ?? first)],
        [JSON.stringify(activity), second !== null ? '1' : '', ACTIVITY_KEPT],
      )
    // One script when both logs share a bucket (always, on one Redis); one per log otherwise (two slots of a Cluster).
    if (source === null || this.keys.workspaceBucketOf(source) === this.keys.workspaceBucketOf(activity.target)) await append(activity.target, source)
    else await Promise.all([append(activity.target, null), append(source, null)])
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
