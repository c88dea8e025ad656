/**
 * The agent registry: workspaces, their tokens, who may talk to whom, and
 * the record of proxied calls. Knows no HTTP. Every check fails closed: a
 * missing or foreign token, or a store that cannot answer, is a refusal.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import * as v from 'valibot'
import { sha256, type ActivityPage, type ActivityRecord, type AgentStore, type Caller, type CardSignatureCheck, type WorkspacePatch, type WorkspaceRecord, type WorkspaceStatus } from '../../backend/agents'
import { AppError, BadRequestError, ConflictError, ForbiddenError, GoneError, NotFoundError, UnauthorizedError, UnavailableError } from '../../errors'
import type { Logger } from '../../ops/logger'
import { CANONICAL_UUID } from '../ids'
import type { EmitEvent } from '../events/model'
import { WorkspaceId } from './model'
import type { AgentUrlGuard } from './ssrf'

export type { Caller }


export interface AgentsServiceOptions {
  /** The operator's bearer token; without it, admin operations are refused. */
  adminToken?: string
  /** Let unknown ids register, creating a root workspace. */
  openRegistration: boolean
  /** Seconds without a heartbeat before a workspace counts as offline. */
  heartbeatTtlSeconds: number
  /** Take an agent card whose signature does not verify (served unsigned, with a warning) instead of refusing it. */
  allowUnverifiedCards?: boolean
  /** Where workspace events go (GET /events, webhooks). */
  emit?: EmitEvent
}

/** Checks an agent card's signatures (A2A §8.4). */
export interface CardChecker {
  check(card: Record<string, unknown>): Promise<CardSignatureCheck>
}

export interface NewWorkspace {
  id?: string
  name: string
  role?: string | null
  parentId?: string | null
}

export interface Registration {
  id: string
  url: string
  agentCard?: Record<string, unknown> | null
  deliveryMode?: 'push' | 'poll'
}

export interface Heartbeat {
  workspaceId: string
  errorRate?: number | null
  activeTasks?: number | null
  currentTask?: string | null
  uptimeSeconds?: number | null
}

/** Ancestor chains longer than this are treated as broken rather than walked forever. */
const MAX_DEPTH = 64
const REMOVED_HINT = 'This workspace was removed by an operator; create a new workspace (and token) to rejoin.'
const ERROR_RATE_DEGRADED = 0.5

const newToken = () => randomBytes(32).toString('base64url')

/** Characters of a call's JSON-RPC method (and of its task id, context id and state) kept in its activity record (A2A's own methods are a few dozen). */
export const ACTIVITY_METHOD_MAX = 200

export class AgentsService {
  private readonly adminDigest: string | null

  constructor(
    private readonly store: AgentStore,
    private readonly options: AgentsServiceOptions,
    private readonly urls: AgentUrlGuard,
    private readonly logger: Logger,
    private readonly cards: CardChecker,
  ) {
    this.adminDigest = options.adminToken ? sha256(options.adminToken) : null
  }

  /** Validates a workspace id from a path, header or body; the canonical lower-case form. */
  parseId(raw: string | null, what = 'workspace id'): string {
    // Elysia hands over a path parameter that is not valid percent-encoded UTF-8 as null.
    if (typeof raw !== 'string') throw new BadRequestError(`${what} is not valid percent-encoded UTF-8`)
    // An id already in its canonical form (the usual case) is its own result; any other goes through the schema.
    if (CANONICAL_UUID.test(raw)) return raw
    const parsed = v.safeParse(WorkspaceId, raw)
    if (!parsed.success) throw new BadRequestError(`${what} "${raw.slice(0, 100)}" is not a UUID`)
    return parsed.output
  }

  /** Runs a store operation; a store failure becomes a 503 refusal, never a pass. */
  private async stored<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work()
    } catch (error) {
      if (error instanceof AppError) throw error
      this.logger.error('agent store failed', { error: String((error as Error)?.stack ?? error) })
      throw new UnavailableError('the workspace registry cannot be reached right now; the request was refused', 2)
    }
  }

  /** Whether a token's digest is the admin token's. */
  private isAdminDigest(digest: string): boolean {
    if (this.adminDigest === null || digest.length !== this.adminDigest.length) return false
    // Every character is compared, wherever the first difference is, so the time taken tells nothing of the token.
    let difference = 0
    for (let at = 0; at < digest.length; at++) difference |= digest.charCodeAt(at) ^ this.adminDigest.charCodeAt(at)
    return difference === 0
  }

  /**
   * Identifies the caller from its bearer token; `X-Workspace-ID`, when
   * given, must name the token's own workspace.
   */
  async authenticate(token: string | null, workspaceHeader: string | null): Promise<Caller> {
    if (token === null) throw new UnauthorizedError('missing Authorization: Bearer <workspace token>')
    const digest = sha256(token)
    if (this.isAdminDigest(digest)) return { kind: 'admin' }
    const claimed = workspaceHeader === null || workspaceHeader.trim() === '' ? null : this.parseId(workspaceHeader, 'X-Workspace-ID')
    const owner = await this.stored(() => this.store.workspaceOfToken(digest))
    if (owner === null) throw new UnauthorizedError('bearer token is not valid (unknown or revoked)')
    if (claimed !== null && claimed !== owner) throw new UnauthorizedError(`X-Workspace-ID ${claimed} does not match the workspace of the bearer token`)
    return { kind: 'workspace', id: owner }
  }

  /** Refuses anybody but the operator; with no admin token configured, refuses everybody. */
  requireAdmin(caller: Caller): void {
    if (this.adminDigest === null) throw new ForbiddenError('admin routes are disabled: no admin_token is configured (--admin-token / SWITCHBOARD_ADMIN_TOKEN)')
    if (caller.kind !== 'admin') throw new ForbiddenError('this route needs the admin token')
  }

  /** Authenticates an admin-only request, refusing before any token lookup when admin routes are disabled. */
  async authenticateAdmin(token: string | null): Promise<Caller> {
    if (this.adminDigest === null) throw new ForbiddenError('admin routes are disabled: no admin_token is configured (--admin-token / SWITCHBOARD_ADMIN_TOKEN)')
    const caller = await this.authenticate(token, null)
    this.requireAdmin(caller)
    return caller
  }

  /** Liveness by the heartbeat rules: removed, provisioning (never registered), offline (TTL passed), degraded (error rate), online. */
  statusOf(workspace: WorkspaceRecord, now = Date.now()): WorkspaceStatus {
    if (workspace.removedAt !== null) return 'removed'
    if (workspace.url === null) return 'provisioning'
    if (workspace.lastHeartbeatAt === null || now - workspace.lastHeartbeatAt > this.options.heartbeatTtlSeconds * 1000) return 'offline'
    if (workspace.errorRate >= ERROR_RATE_DEGRADED) return 'degraded'
    return 'online'
  }

  private gone(workspace: WorkspaceRecord): GoneError {
    return new GoneError('workspace removed', { id: workspace.id, removed_at: new Date(workspace.removedAt!).toISOString(), hint: REMOVED_HINT })
  }

  /** The workspace, or 404; a removed one is 410 unless `allowRemoved`. */
  private async load(id: string, allowRemoved = false): Promise<WorkspaceRecord> {
    const workspace = await this.stored(() => this.store.getWorkspace(id))
    if (workspace === null) throw new NotFoundError(`workspace ${id} is not registered`)
    if (workspace.removedAt !== null && !allowRemoved) throw this.gone(workspace)
    return workspace
  }

  /** A new token for a workspace and its digest, drawn until the store takes it (AgentStore.tokenFits; 1 in 16 does in a Redis Cluster). */
  private tokenFor(workspaceId: string): { token: string; digest: string } {
    for (;;) {
      const token = newToken()
      const digest = sha256(token)
      if (this.store.tokenFits?.(workspaceId, digest) ?? true) return { token, digest }
    }
  }

  /** Creates a workspace (admin, or open registration) and its first token. */
  async createWorkspace(input: NewWorkspace): Promise<{ workspace: WorkspaceRecord; token: string }> {
    const parentId = input.parentId ?? null
    if (parentId !== null) await this.load(parentId)
    const workspace: WorkspaceRecord = {
      id: input.id ?? randomUUID(),
      name: input.name,
      role: input.role ?? null,
      parentId,
      url: null,
      agentCard: null,
      deliveryMode: 'push',
      inboundSecret: newToken(),
      createdAt: Date.now(),
      removedAt: null,
      lastHeartbeatAt: null,
      errorRate: 0,
      activeTasks: 0,
      currentTask: null,
      uptimeSeconds: null,
    }
    const { token, digest } = this.tokenFor(workspace.id)
    const created = await this.stored(() => this.store.createWorkspace(workspace, digest))
    if (!created) throw new ConflictError(`workspace ${workspace.id} already exists`)
    return { workspace, token }
  }

  async listWorkspaces(): Promise<WorkspaceRecord[]> {
    return this.stored(() => this.store.listWorkspaces())
  }

  /** Marks a workspace removed and revokes its tokens (idempotent). */
  async removeWorkspace(id: string): Promise<WorkspaceRecord> {
    const at = Date.now()
    const removed = await this.stored(() => this.store.removeWorkspace(id, at))
    if (removed === null) throw new NotFoundError(`workspace ${id} is not registered`)
    // Removal is idempotent; only the call that removed it tells.
    if (removed.removedAt === at) await this.emitWorkspace('workspace.removed', removed)
    return removed
  }

  /** Issues a new token for the workspace (the operator, or the workspace itself) and revokes the old ones. */
  async rotateToken(caller: Caller, id: string): Promise<string> {
    if (caller.kind !== 'admin' && caller.id !== id) throw new ForbiddenError('a workspace may rotate only its own token')
    await this.load(id)
    const { token, digest } = this.tokenFor(id)
    const rotated = await this.stored(() => this.store.rotateToken(id, digest))
    if (!rotated) throw this.gone(await this.load(id, true))
    return token
  }

  /**
   * A workspace as seen by `caller`: 410 once removed (whatever the token,
   * so a removed workspace asking with its revoked token learns why); else
   * the operator, the workspace itself, or a workspace it may talk to.
   */
  async workspaceFor(token: string | null, workspaceHeader: string | null, id: string): Promise<{ workspace: WorkspaceRecord; caller: Caller }> {
    if (token === null) throw new UnauthorizedError('missing Authorization: Bearer <workspace token>')
    const workspace = await this.load(id, true)
    if (workspace.removedAt !== null) throw this.gone(workspace)
    const caller = await this.authenticate(token, workspaceHeader)
    await this.requireAccess(caller, workspace.id)
    return { workspace, caller }
  }

  /** Registers (or re-registers) an agent's URL and card; with open registration an unknown id becomes a root workspace. */
  async register(token: string | null, workspaceHeader: string | null, input: Registration): Promise<{ workspace: WorkspaceRecord; token?: string }> {
    await this.urls.check(input.url)
    const existing = await this.stored(() => this.store.getWorkspace(input.id))
    const patch: WorkspacePatch = { url: input.url, lastHeartbeatAt: Date.now() }
    if (input.deliveryMode !== undefined) patch.deliveryMode = input.deliveryMode
    const withCard = async () => {
      if (input.agentCard === undefined) return patch
      return { ...patch, agentCard: input.agentCard, cardSignature: input.agentCard === null ? null : await this.checkCard(input.id, input.agentCard) }
    }
    if (existing === null) {
      if (!this.options.openRegistration) {
        throw new NotFoundError(`workspace ${input.id} is not known: an operator must create it first (POST /workspaces), or start Switchboard with --open-registration`)
      }
      // Checked before the workspace is created, so a refused card leaves nothing behind.
      const checked = await withCard()
      const name = typeof input.agentCard?.name === 'string' && input.agentCard.name.trim() !== '' ? input.agentCard.name.trim().slice(0, 200) : 'agent'
      const { token } = await this.createWorkspace({ id: input.id, name })
      const workspace = await this.stored(() => this.store.updateWorkspace(input.id, checked))
      if (workspace === null) throw this.gone(await this.load(input.id, true))
      await this.emitRegistered(null, workspace)
      return { workspace, token }
    }
    if (existing.removedAt !== null) throw this.gone(existing)
    const caller = await this.authenticate(token, workspaceHeader)
    this.requireSelf(caller, input.id, 'register')
    const checked = await withCard()
    const workspace = await this.stored(() => this.store.updateWorkspace(input.id, checked))
    if (workspace === null) throw this.gone(await this.load(input.id, true))
    await this.emitRegistered(existing, workspace)
    return { workspace }
  }

  private requireSelf(caller: Caller, id: string, action: string): void {
    if (caller.kind === 'admin') return
    if (caller.id !== id) throw new ForbiddenError(`the bearer token belongs to workspace ${caller.id}, which may not ${action} for workspace ${id}`)
  }

  async heartbeat(caller: Caller, beat: Heartbeat): Promise<WorkspaceRecord> {
    this.requireSelf(caller, beat.workspaceId, 'send heartbeats')
    const before = await this.load(beat.workspaceId)
    const patch: WorkspacePatch = { lastHeartbeatAt: Date.now() }
    if (beat.errorRate != null) patch.errorRate = beat.errorRate
    if (beat.activeTasks != null) patch.activeTasks = beat.activeTasks
    if (beat.currentTask !== undefined) patch.currentTask = beat.currentTask
    if (beat.uptimeSeconds != null) patch.uptimeSeconds = beat.uptimeSeconds
    const workspace = await this.stored(() => this.store.updateWorkspace(beat.workspaceId, patch))
    if (workspace === null) throw this.gone(await this.load(beat.workspaceId, true))
    if (!this.isLive(before) && this.isLive(workspace)) await this.emitWorkspace('workspace.online', workspace)
    return workspace
  }

  /** Online or degraded: registered, with a heartbeat within the TTL. */
  private isLive(workspace: WorkspaceRecord, now = Date.now()): boolean {
    const status = this.statusOf(workspace, now)
    return status === 'online' || status === 'degraded'
  }

  private async emitRegistered(before: WorkspaceRecord | null, workspace: WorkspaceRecord): Promise<void> {
    await this.emitWorkspace('workspace.registered', workspace)
    if (before === null || !this.isLive(before)) await this.emitWorkspace('workspace.online', workspace)
  }

  /** Emits a workspace event, naming the workspace's ancestors (who may see it) and its root (its tenant). */
  private async emitWorkspace(type: 'workspace.registered' | 'workspace.online' | 'workspace.offline' | 'workspace.removed', workspace: WorkspaceRecord): Promise<void> {
    const emit = this.options.emit
    if (!emit) return
    const workspaces = [workspace.id, ...(await this.ancestors(workspace).catch(() => []))]
    emit({ type, tenant: workspaces.at(-1)!, resource: { kind: 'workspace', id: workspace.id }, workspaces, data: { name: workspace.name, url: workspace.url, parent_id: workspace.parentId } })
  }

  /**
   * Emits workspace.offline for each workspace whose heartbeat TTL ran out in [since, now): offline is a
   * moment no request marks, so a periodic sweep finds it (one instance sweeps; see app.ts).
   */
  async sweepOffline(since: number, now: number): Promise<void> {
    const ttl = this.options.heartbeatTtlSeconds * 1000
    for (const workspace of await this.stored(() => this.store.listWorkspaces())) {
      if (workspace.removedAt !== null || workspace.url === null || workspace.lastHeartbeatAt === null) continue
      const offlineAt = workspace.lastHeartbeatAt + ttl
      if (offlineAt >= since && offlineAt < now) await this.emitWorkspace('workspace.offline', workspace)
    }
  }

  async updateCard(caller: Caller, id: string, agentCard: Record<string, unknown>): Promise<WorkspaceRecord> {
    this.requireSelf(caller, id, 'update the agent card')
    await this.load(id)
    const cardSignature = await this.checkCard(id, agentCard)
    const workspace = await this.stored(() => this.store.updateWorkspace(id, { agentCard, cardSignature }))
    if (workspace === null) throw this.gone(await this.load(id, true))
    return workspace
  }

  /**
   * Checks a card's signatures. One that does not verify is refused with the reason (400), or, with
   * allowUnverifiedCards, taken with a warning: its card is then served unsigned.
   */
  async checkCard(id: string, card: Record<string, unknown>, refuse = (message: string): AppError => new AppError(400, 'CARD_SIGNATURE_INVALID', message)): Promise<CardSignatureCheck> {
    const check = await this.cards.check(card)
    if (check.status !== 'invalid') return check
    if (!this.options.allowUnverifiedCards) {
      throw refuse(`the agent card of workspace ${id} has a signature that does not verify: ${check.reason} (Switchboard refuses such cards unless started with --allow-unverified-cards, which serves them unsigned)`)
    }
    this.logger.warn('agent card signature does not verify: the card is served unsigned', { workspace: id, kid: check.kid, jku: check.jku, reason: check.reason })
    return check
  }

  /** The ancestors of a workspace, nearest first (a broken or cyclic chain ends the walk). */
  private async ancestors(workspace: WorkspaceRecord): Promise<string[]> {
    const chain: string[] = []
    let parentId = workspace.parentId
    while (parentId !== null && chain.length < MAX_DEPTH && !chain.includes(parentId)) {
      chain.push(parentId)
      const parent = await this.stored(() => this.store.getWorkspace(parentId!))
      parentId = parent?.parentId ?? null
    }
    return chain
  }

  /**
   * Who may talk to whom: self; siblings (same parent; roots are not
   * siblings of each other); parent and child; ancestor and descendant.
   * Removed or unknown workspaces talk to nobody.
   */
  async canCommunicate(sourceId: string, targetId: string): Promise<boolean> {
    const [source, target] = await Promise.all([
      this.stored(() => this.store.getWorkspace(sourceId)),
      this.stored(() => this.store.getWorkspace(targetId)),
    ])
    return this.related(source, target)
  }

  private async related(source: WorkspaceRecord | null, target: WorkspaceRecord | null): Promise<boolean> {
    if (source === null || target === null || source.removedAt !== null || target.removedAt !== null) return false
    if (source.id === target.id) return true
    if (source.parentId !== null && source.parentId === target.parentId) return true
    if (source.parentId === target.id || target.parentId === source.id) return true
    if ((await this.ancestors(source)).includes(target.id)) return true
    return (await this.ancestors(target)).includes(source.id)
  }

  private forbidden(caller: { id: string }, targetId: string): ForbiddenError {
    return new ForbiddenError(`workspace ${caller.id} may not reach workspace ${targetId}: only self, siblings, parents/children and ancestors/descendants may talk`)
  }

  /** Refuses a workspace caller that may not reach `targetId` (the operator reaches everything). */
  async requireAccess(caller: Caller, targetId: string): Promise<void> {
    if (caller.kind === 'admin') return
    if (!(await this.canCommunicate(caller.id, targetId))) throw this.forbidden(caller, targetId)
  }

  /** A workspace a caller may reach, for discovery and for the proxy (one read of each side). */
  async discover(caller: Caller, id: string): Promise<WorkspaceRecord> {
    if (caller.kind === 'admin') return this.load(id)
    const [source, target] = await this.stored(() => Promise.all([this.store.getWorkspace(caller.id), this.store.getWorkspace(id)]))
    // Access first, so a workspace learns nothing about ids outside its reach.
    if (!(await this.related(source, target))) throw this.forbidden(caller, id)
    return target!
  }

  /** Siblings, parent and children of a workspace, minus removed ones and itself; `query` filters by name or role. */
  async peers(caller: Caller, id: string, query?: string): Promise<WorkspaceRecord[]> {
    this.requireSelf(caller, id, 'list peers')
    const workspace = await this.load(id)
    const [siblings, children, parent] = await Promise.all([
      workspace.parentId === null ? Promise.resolve([]) : this.stored(() => this.store.listChildren(workspace.parentId!)),
      this.stored(() => this.store.listChildren(id)),
      workspace.parentId === null ? Promise.resolve(null) : this.stored(() => this.store.getWorkspace(workspace.parentId!)),
    ])
    const seen = new Set<string>([id])
    const needle = query?.trim().toLowerCase() ?? ''
    const peers: WorkspaceRecord[] = []
    for (const peer of [...(parent ? [parent] : []), ...siblings, ...children]) {
      if (seen.has(peer.id) || peer.removedAt !== null) continue
      seen.add(peer.id)
      if (needle !== '' && !peer.name.toLowerCase().includes(needle) && !(peer.role ?? '').toLowerCase().includes(needle)) continue
      peers.push(peer)
    }
    return peers
  }

  /**
   * Stores one proxied call; a store failure is logged and does not fail the call. The method, task id, context id
   * and state are the caller's or the agent's text: only their first ACTIVITY_METHOD_MAX characters are kept, so the
   * activity kept per workspace stays small.
   */
  async recordCall(activity: ActivityRecord): Promise<void> {
    try {
      let kept = activity
      for (const field of ['method', 'taskId', 'contextId', 'taskState'] as const) {
        const value = activity[field]
        if (typeof value === 'string' && value.length > ACTIVITY_METHOD_MAX) kept = { ...kept, [field]: value.slice(0, ACTIVITY_METHOD_MAX) }
      }
      await this.store.recordActivity(kept)
    } catch (error) {
      this.logger.error('could not record a proxied call', { error: String(error), target: activity.target })
    }
  }

  /** A page of the calls a workspace made or received (the workspace itself or the operator). */
  async activity(caller: Caller, id: string, limit: number, cursor: string | null): Promise<ActivityPage> {
    this.requireSelf(caller, id, 'read the activity')
    await this.load(id, true)
    return this.stored(() => this.store.listActivity(id, limit, cursor))
  }
}
