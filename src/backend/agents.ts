/** The agents module's part of the backend contract: workspaces, their tokens, and call activity. */

/** Liveness as reported to callers; derived by the service from the stored record, never stored. */
/** Hex SHA-256 of a token: tokens are kept and looked up only as digests (Bun's one-shot hasher: one per authenticated request). */
export const sha256 = (value: string): string => Bun.SHA256.hash(value, 'hex')

/** Who calls an agents route: the operator (admin token) or one workspace (its own token). */
export type Caller = { kind: 'admin' } | { kind: 'workspace'; id: string }

export type WorkspaceStatus = 'provisioning' | 'online' | 'degraded' | 'offline' | 'removed'

export interface WorkspaceRecord {
  /** Lower-case UUID. */
  id: string
  name: string
  role: string | null
  parentId: string | null
  /** Where the agent answers A2A calls; null until it registers. */
  url: string | null
  agentCard: Record<string, unknown> | null
  deliveryMode: 'push' | 'poll'
  /** Secret the proxy sends to the agent so it can tell calls from Switchboard apart. */
  inboundSecret: string
  /** Milliseconds since the epoch, as are all times here. */
  createdAt: number
  removedAt: number | null
  lastHeartbeatAt: number | null
  errorRate: number
  activeTasks: number
  currentTask: string | null
  uptimeSeconds: number | null
  /** How the card's signature checked out when it was registered; absent for records written before it was kept. */
  cardSignature?: CardSignatureCheck | null
}

/**
 * The outcome of checking an agent card's signatures (A2A §8.4): `verified` (one verified, by `kid` from `jku`),
 * `unsigned` (the card has none), or `invalid` (none verified; `reason` says why, and the card is served unsigned).
 */
export interface CardSignatureCheck {
  status: 'verified' | 'unsigned' | 'invalid'
  kid: string | null
  jku: string | null
  reason: string | null
  /** When it was checked, in ms since the epoch. */
  checkedAt: number
}

/** The fields registration and heartbeats may change; identity, hierarchy and removal are not among them. */
export type WorkspacePatch = Partial<
  Pick<WorkspaceRecord, 'name' | 'role' | 'url' | 'agentCard' | 'deliveryMode' | 'lastHeartbeatAt' | 'errorRate' | 'activeTasks' | 'currentTask' | 'uptimeSeconds' | 'cardSignature'>
>

/** One proxied call. */
export interface ActivityRecord {
  id: string
  /** Calling workspace; null when an admin called. */
  source: string | null
  target: string
  /** JSON-RPC method, when the body had one. */
  method: string | null
  /** HTTP status answered to the caller (for streams: the status the stream opened with). */
  status: number
  durationMs: number
  requestBytes: number
  responseBytes: number
  /** Why the call failed on the proxy's side (timeout, unreachable, refused), or null. */
  error: string | null
  at: number
  /**
   * The W3C trace context the call was forwarded with (the caller's, or one Switchboard created), and the task it
   * concerned: its id and context id (from the answer, else the request) and its last known state (from the answer,
   * or a stream's last status event). Absent from records written before they were kept; null when not known.
   */
  traceparent?: string | null
  taskId?: string | null
  contextId?: string | null
  taskState?: string | null
}

export interface ActivityPage {
  /** Newest first. */
  items: ActivityRecord[]
  /** Opaque cursor for the next (older) page, null at the end. */
  next: string | null
}

/**
 * Workspace storage. Tokens are stored only as SHA-256 hex digests. A store
 * may keep only the newest 10,000 activity records of each workspace.
 */
export interface AgentStore {
  /** Creates the workspace with its first token; false (and nothing written) when the id is taken. */
  createWorkspace(workspace: WorkspaceRecord, tokenHash: string): Promise<boolean>
  getWorkspace(id: string): Promise<WorkspaceRecord | null>
  /** Every workspace, removed ones included, oldest first. */
  listWorkspaces(): Promise<WorkspaceRecord[]>
  /** Direct children of a workspace, removed ones included, oldest first. */
  listChildren(parentId: string): Promise<WorkspaceRecord[]>
  /** Applies a patch to a workspace that is not removed; returns the new record, or null when missing or removed. */
  updateWorkspace(id: string, patch: WorkspacePatch): Promise<WorkspaceRecord | null>
  /** Marks removed (the first removal time is kept) and revokes every token, in one step; null when missing. */
  removeWorkspace(id: string, at: number): Promise<WorkspaceRecord | null>
  /** Replaces the workspace's tokens with one new token; false when missing or removed. */
  rotateToken(id: string, tokenHash: string): Promise<boolean>
  /**
   * Optional: whether the store takes a token with this digest for the workspace; new tokens are drawn until one
   * fits. A store partitioned by workspace (Redis Cluster) keeps a workspace's tokens in its partition this way,
   * so that creating, rotating and revoking stay one atomic step. Without it, every token fits.
   */
  tokenFits?(workspaceId: string, tokenHash: string): boolean
  /** The workspace a live token belongs to, or null. */
  workspaceOfToken(tokenHash: string): Promise<string | null>
  /** Whether the workspace has any live token. */
  hasToken(id: string): Promise<boolean>
  /** Stores one call, visible to its target and (when different) its source. */
  recordActivity(activity: ActivityRecord): Promise<void>
  /** A page of the calls a workspace made or received, most recently recorded first. */
  listActivity(workspaceId: string, limit: number, cursor: string | null): Promise<ActivityPage>
  /**
   * Switchboard's card-signing key (text the caller chose, a private JWK): stores `candidate` when no key is stored
   * and answers the stored one, so every instance sharing the store signs with the first key written.
   */
  cardSigningKey(candidate: string): Promise<string>
}
