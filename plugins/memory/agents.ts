import type { ActivityPage, ActivityRecord, AgentStore, WorkspacePatch, WorkspaceRecord } from '../../src/backend/agents'
import { StoreFullError } from '../../src/errors'

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

/** What a stored token digest and its map entry cost, beside the record. */
const TOKEN_BYTES = 128
/** What an activity entry costs beside its text: its numbers, keys and the entry that holds it. */
const ACTIVITY_ENTRY_BYTES = 160

/** Activity of one workspace: `first` is the sequence number of the oldest kept entry, so cursors stay valid while old entries are dropped. */
interface ActivityLog {
  first: number
  entries: ActivityRecord[]
  /** Bytes of each entry, beside `entries`. */
  sizes: number[]
}

/** Bytes of a workspace record: its JSON in UTF-8. */
const workspaceBytes = (workspace: WorkspaceRecord) => Buffer.byteLength(JSON.stringify(workspace)) + TOKEN_BYTES

/** Bytes of an activity record: the UTF-8 of its text fields (each cut to a few hundred characters by the service) and a fixed cost. */
function activityBytes(activity: ActivityRecord): number {
  let bytes = ACTIVITY_ENTRY_BYTES
  for (const value of [activity.id, activity.source, activity.target, activity.method, activity.error, activity.traceparent, activity.taskId, activity.contextId, activity.taskState]) {
    if (typeof value === 'string') bytes += Buffer.byteLength(value)
  }
  return bytes
}

/**
 * Workspaces, token digests and activity in plain maps. Stored records are
 * deeply frozen and replaced on every change, so reads return them as they
 * are (no copy on the proxy's hot path) and no caller can alter the store.
 *
 * What they hold together is bounded in bytes (`maxBytes`, max_registry_mb):
 * a workspace created or changed past it is refused (StoreFullError) and
 * nothing is stored; activity past it pushes out the oldest activity of any
 * workspace, as the per-workspace count (ACTIVITY_KEPT) does within one.
 */
export class MemoryAgents implements AgentStore {
  private readonly workspaces = new Map<string, WorkspaceRecord>()
  /** token digest → workspace id */
  private readonly tokens = new Map<string, string>()
  private readonly activity = new Map<string, ActivityLog>()
  /** Every activity entry in the order it was recorded, as its log and its sequence number there, so the oldest anywhere can go first; entries a log has dropped already (sequence below its `first`) are skipped. */
  private readonly recorded: { log: ActivityLog; sequence: number }[] = []
  /** Index of the oldest entry of `recorded` still to be looked at. */
  private recordedHead = 0
  private workspaceBytes = 0
  private activityBytes = 0
  private signingKey: string | null = null
  private activityEntries = 0

  /** `maxBytes`: what workspaces, tokens and activity may take together (max_registry_mb). */
  constructor(private readonly maxBytes = Number.POSITIVE_INFINITY) {}

  /** Bytes held now, for tests and metrics. */
  get heldBytes(): number {
    return this.workspaceBytes + this.activityBytes
  }

  /** Refuses a workspace change that would take what is held past the bound; `what` names what was not stored. */
  private reserve(bytes: number, what: string): void {
    if (bytes <= 0) return
    // Activity gives way to workspaces: it is pushed out before a workspace is refused.
    while (this.heldBytes + bytes > this.maxBytes && this.dropOldestActivity());
    if (this.heldBytes + bytes <= this.maxBytes) return
    const mib = (value: number) => (value / 2 ** 20).toFixed(1)
    throw new StoreFullError(`The registry is full: its workspaces take ${mib(this.workspaceBytes)} MiB (limit ${mib(this.maxBytes)} MiB, max_registry_mb of the memory backend); ${what} was not stored`)
  }

  async createWorkspace(workspace: WorkspaceRecord, tokenHash: string): Promise<boolean> {
    if (this.workspaces.has(workspace.id)) return false
    const bytes = workspaceBytes(workspace)
    this.reserve(bytes, `workspace ${workspace.id}`)
    this.workspaces.set(workspace.id, deepFreeze(clone(workspace)))
    this.workspaceBytes += bytes
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
    const growth = workspaceBytes(updated) - workspaceBytes(workspace)
    this.reserve(growth, `the change to workspace ${id}`)
    this.workspaces.set(id, updated)
    this.workspaceBytes += growth
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

  /** Drops the first `count` entries of `log`. */
  private dropFront(log: ActivityLog, count: number): void {
    for (let index = 0; index < count; index++) this.activityBytes -= log.sizes[index]!
    this.activityEntries -= count
    log.entries.splice(0, count)
    log.sizes.splice(0, count)
    log.first += count
  }

  /** Drops the oldest activity entry of any workspace; false when there is none. */
  private dropOldestActivity(): boolean {
    while (this.recordedHead < this.recorded.length) {
      const { log, sequence } = this.recorded[this.recordedHead++]!
      // A log drops its entries oldest first, so one it still holds is its first.
      if (sequence === log.first) {
        this.dropFront(log, 1)
        return true
      }
    }
    return false
  }

  /** Forgets the part of `recorded` already looked at, and the entries logs dropped by count, once they are most of it. */
  private compactRecorded(): void {
    const pending = this.recorded.length - this.recordedHead
    // Each compaction follows at least as many steps as it costs, so an append stays O(1) on average.
    if ((this.recordedHead < 4096 || this.recordedHead < pending) && pending <= 2 * this.activityEntries + 4096) return
    const live = this.recorded.slice(this.recordedHead).filter(({ log, sequence }) => sequence >= log.first)
    this.recorded.length = 0
    for (const item of live) this.recorded.push(item)
    this.recordedHead = 0
  }

  private append(workspaceId: string, activity: ActivityRecord, bytes: number): void {
    let log = this.activity.get(workspaceId)
    if (!log) this.activity.set(workspaceId, (log = { first: 0, entries: [], sizes: [] }))
    this.recorded.push({ log, sequence: log.first + log.entries.length })
    log.entries.push(activity)
    log.sizes.push(bytes)
    this.activityBytes += bytes
    this.activityEntries++
    // Trim in bulk once the log holds twice what is kept, so an append stays O(1) on average.
    if (log.entries.length >= 2 * ACTIVITY_KEPT) this.dropFront(log, log.entries.length - ACTIVITY_KEPT)
    while (this.heldBytes > this.maxBytes && this.dropOldestActivity());
    this.compactRecorded()
  }

  async recordActivity(activity: ActivityRecord): Promise<void> {
    const stored = Object.freeze({ ...activity })
    const bytes = activityBytes(stored)
    this.append(activity.target, stored, bytes)
    if (activity.source !== null && activity.source !== activity.target) this.append(activity.source, stored, bytes)
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

  async cardSigningKey(candidate: string): Promise<string> {
    this.signingKey ??= candidate
    return this.signingKey
  }
}
