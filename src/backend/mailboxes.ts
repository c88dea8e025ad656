/** The exchange's part of the backend contract: mailboxes at the level of meaning. */
import * as v from 'valibot'

export type Role = 'agent' | 'user'

/** Academy's EntityId, as sent on the wire (field order matters when serialised). */
export interface EntityId {
  uid: string
  name: string | null
  role: Role
}

/** Who is calling: an authenticated client id and the groups it belongs to. */
export interface Client {
  id: string
  groups: readonly string[]
}

export type MailboxStatus = 'ACTIVE' | 'TERMINATED' | 'MISSING'

/** A message as the exchange stores it: the client's exact JSON plus the header fields routing needs. */
export interface Envelope {
  /** The message JSON exactly as the sender serialised it; handed back unchanged. */
  raw: string
  src: EntityId
  dest: EntityId
  tag: string
  label: string | null
  kind: 'request' | 'response'
  /**
   * Only for Switchboard's own put (client null): the owner the destination
   * mailbox must have, else the put is refused (UnknownMailboxError) and
   * nothing is stored. Absent: any mailbox.
   */
  destOwner?: string | null
}

/** A request still waiting for its response when its destination was terminated. */
export interface PendingRequest {
  src: EntityId
  dest: EntityId
  tag: string
  label: string | null
  /**
   * The owner of the source mailbox when the request was sent, null when the
   * source had no mailbox: the answer to it on terminate goes only into a
   * mailbox of that owner, never into one another client created later under
   * the uid the sender chose. Absent in requests stored before it was kept.
   */
  srcOwner?: string | null
}

export interface MailboxStats {
  incoming: number
  outgoing: number
  completed: number
  in_progress: number
  queued: number
}

/** Mailboxes and messages across the whole store (every instance sharing it). */
export interface MailboxCounts {
  /** ACTIVE mailboxes; gravestones are not counted. */
  mailboxes: number
  /** Messages waiting in active mailboxes' queues (taken ones no longer count; restored ones count again). */
  queued: number
}

export interface TakeOptions {
  /** Epoch milliseconds after which `take` gives up and resolves `null`. */
  deadline: number
  /** Aborting resolves `null` at once and leaves the queue untouched. */
  signal?: AbortSignal
}

/**
 * Mailbox storage. Every operation checks the caller's rights itself, so that
 * the check and the change are one atomic step in every plugin.
 * `client: null` means Switchboard itself (terminate auto-replies): no rights check.
 */
export interface MailboxStore {
  /** Create if absent (idempotent). The first creator owns it; a terminated mailbox stays terminated. */
  create(client: Client, id: EntityId, mro: readonly string[] | null): Promise<void>
  status(client: Client, id: EntityId): Promise<MailboxStatus>
  /**
   * Mark terminated (a gravestone), drop the queue, wake every waiter with
   * MailboxTerminatedError, remove it from discovery, and return the requests
   * still pending to it so the caller can answer them. Missing → returns [].
   */
  terminate(client: Client, id: EntityId): Promise<PendingRequest[]>
  /**
   * Append to the destination's queue, or hand straight to its first waiter. Tracks request/response pairs for stats.
   * A client's put is also activity of the source mailbox (see heartbeat), when it exists; Switchboard's own (client null) is not.
   */
  put(client: Client | null, message: Envelope): Promise<void>
  /** Take the next message, or wait until one arrives, the deadline passes (→ null) or the signal aborts (→ null). Each message goes to exactly one taker. */
  take(client: Client, id: EntityId, options: TakeOptions): Promise<string | null>
  /** Put a taken message back at the head of the queue (its delivery failed). */
  restore(id: EntityId, raw: string): Promise<void>
  /** Uids of ACTIVE agent mailboxes the client may access whose MRO matches, in creation order. */
  discover(client: Client, agent: string, allowSubclasses: boolean): Promise<string[]>
  /** Seconds since the mailbox was last active (its last take, or a client's put from it), null if never; UnknownMailboxError if missing. */
  heartbeat(client: Client, id: EntityId): Promise<number | null>
  /**
   * Academy's counters of a mailbox the client may access. `outgoing` counts
   * the requests its owner sent from its key; for a key with no mailbox, only
   * those the caller sent itself (see outgoingKey).
   */
  stats(client: Client, id: EntityId): Promise<MailboxStats>
  share(client: Client, id: EntityId, group: string): Promise<void>
  unshare(client: Client, id: EntityId, group: string): Promise<void>
  shares(client: Client, id: EntityId): Promise<string[]>
  /** How many mailboxes are ACTIVE and how many messages wait in them, across the store; read at each scrape of /metrics, so it must not walk the keyspace. */
  counts(): Promise<MailboxCounts>
}

/**
 * The `redelivery_window_ms` option of the backends that deliver at least once across a crash (`[backend_options]`):
 * how long a message handed to a receiver is kept, to be delivered again if its process dies before the answer is out.
 */
export const RedeliveryWindowOption = v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(3_600_000)), 1000)

const DAY_MS = 86_400_000

/** A retention in days (`mailbox_expiration_d`, `gravestone_expiration_d`) in whole milliseconds, at least 1. */
export function retentionMs(days: number): number {
  return Math.max(1, Math.round(days * DAY_MS))
}

/** How long a mailbox is kept, in milliseconds: idle (queue, pending requests, record), and as a gravestone once terminated. */
export interface MailboxRetention {
  idleMs: number
  gravestoneMs: number
}

/** The retention settings (`mailbox_expiration_d`, `gravestone_expiration_d`) in milliseconds. */
export function mailboxRetention(options: { mailbox_expiration_d: number; gravestone_expiration_d: number }): MailboxRetention {
  return { idleMs: retentionMs(options.mailbox_expiration_d), gravestoneMs: retentionMs(options.gravestone_expiration_d) }
}

/** The key a mailbox is stored under: role and uid, so an agent and a user with one uid never collide. */
export function mailboxKey(id: EntityId): string {
  return `${id.role}:${id.uid}`
}

/**
 * The key of the count of requests `clientId` sent from the mailbox key of
 * `id`: each client counts its own, so that stats show a client only the
 * sends of the mailbox's owner, or its own from a key with no mailbox. The
 * client id goes first with its length, so no pair of strings can collide.
 */
export function outgoingKey(id: EntityId, clientId: string): string {
  return `${utf8Bytes(clientId)}:${clientId}:${mailboxKey(id)}`
}

/** The length of `text` in UTF-8 bytes: what every byte bound on stored text counts. */
export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8')
}

/** Academy's access rule: no owner yet, the owner, or a member of a group the mailbox is shared with. */
export function canAccess(client: Client, owner: string | null | undefined, shares: Iterable<string>): boolean {
  if (owner === undefined || owner === null || owner === client.id) return true
  for (const group of shares) if (client.groups.includes(group)) return true
  return false
}

/** Academy's ownership rule: no owner yet, or the owner. */
export function isOwner(client: Client, owner: string | null | undefined): boolean {
  return owner === undefined || owner === null || owner === client.id
}

/** Discover's match: the class itself, or (with subclasses) any class in the MRO. */
export function matchesAgent(mro: readonly string[], agent: string, allowSubclasses: boolean): boolean {
  return mro[0] === agent || (allowSubclasses && mro.includes(agent))
}

/** Academy's stats arithmetic from the raw counters. */
export function mailboxStats(pending: number, queued: number, completed: number, outgoing: number): MailboxStats {
  return {
    incoming: completed + pending,
    outgoing,
    completed,
    in_progress: Math.max(0, pending - queued),
    queued,
  }
}
