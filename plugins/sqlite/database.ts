/**
 * Opening the SQLite file: pragmas, the process lock, the size limit, and
 * the schema with its migrations. Everything else in the plugin receives an
 * open Database.
 */
import { Database, SQLiteError, type Statement } from 'bun:sqlite'
import { resolve } from 'node:path'
import { PluginError } from '../../src/backend/index'
import { StoreFullError } from '../../src/errors'

export type Synchronous = 'full' | 'normal'

/**
 * Schema migrations, in order: entry `n` moves the schema from version `n` to
 * `n + 1`. Append only; never edit a released entry.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY,                  -- creation order
    role TEXT NOT NULL,
    uid TEXT NOT NULL,
    owner TEXT NOT NULL,
    terminated INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    last_active INTEGER,                     -- epoch ms
    head INTEGER NOT NULL DEFAULT 0,         -- position a restored message takes (then decremented)
    tail INTEGER NOT NULL DEFAULT 1,         -- position the next put message takes (then incremented)
    UNIQUE (role, uid)
  );
  -- The discover index: one row per class of an active agent mailbox's MRO.
  CREATE TABLE mailbox_classes (
    class TEXT NOT NULL,
    mailbox_id INTEGER NOT NULL,
    position INTEGER NOT NULL,               -- 0 for the agent's own class
    PRIMARY KEY (class, mailbox_id)
  ) WITHOUT ROWID;
  CREATE INDEX mailbox_classes_mailbox ON mailbox_classes (mailbox_id);
  CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox_id INTEGER NOT NULL,
    position INTEGER NOT NULL,
    raw TEXT NOT NULL,
    taken_at INTEGER                         -- handed to a receiver, not yet settled
  );
  CREATE INDEX messages_queue ON messages (mailbox_id, taken_at, position);
  CREATE TABLE pending_requests (
    mailbox_id INTEGER NOT NULL,
    tag TEXT NOT NULL,
    request TEXT NOT NULL,                   -- JSON PendingRequest
    UNIQUE (mailbox_id, tag)
  );
  CREATE TABLE mailbox_shares (
    mailbox_id INTEGER NOT NULL,
    group_id TEXT NOT NULL,
    UNIQUE (mailbox_id, group_id)
  );
  CREATE TABLE outgoing_requests (
    mailbox_key TEXT PRIMARY KEY,
    count INTEGER NOT NULL
  ) WITHOUT ROWID;

  CREATE TABLE workspaces (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    parent_id TEXT,
    record TEXT NOT NULL                     -- JSON WorkspaceRecord
  );
  CREATE INDEX workspaces_parent ON workspaces (parent_id, seq);
  CREATE TABLE workspace_tokens (
    token_hash TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX workspace_tokens_workspace ON workspace_tokens (workspace_id);
  CREATE TABLE activity (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id TEXT NOT NULL,
    record TEXT NOT NULL                     -- JSON ActivityRecord
  );
  CREATE INDEX activity_workspace ON activity (workspace_id, seq);

  CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    agent_name TEXT NOT NULL,
    record TEXT NOT NULL                     -- JSON WorkerRecord
  );
  CREATE INDEX workers_agent ON workers (agent_name);
  CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    agent_name TEXT NOT NULL,
    state TEXT NOT NULL,
    worker_id TEXT,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    record TEXT NOT NULL                     -- JSON JobRecord
  );
  CREATE INDEX jobs_created ON jobs (created_at, seq);
  `,
  // 2: retention (and jobs by state). Mailboxes and the outgoing counts expire (epoch ms; the rows a file already holds are given
  // their expiry when it is opened, from the retention settings); finished jobs are numbered in the order they
  // finished, so the oldest past finished_jobs_kept go first (the ones a file already holds by when they last changed).
  `
  ALTER TABLE mailboxes ADD COLUMN expires_at INTEGER;
  CREATE INDEX mailboxes_expiry ON mailboxes (expires_at);
  ALTER TABLE outgoing_requests ADD COLUMN expires_at INTEGER;
  CREATE INDEX outgoing_requests_expiry ON outgoing_requests (expires_at);
  ALTER TABLE jobs ADD COLUMN finished_seq INTEGER;
  UPDATE jobs SET finished_seq = numbered.n
    FROM (SELECT seq, ROW_NUMBER() OVER (ORDER BY json_extract(record, '$.updatedAt'), seq) AS n FROM jobs WHERE state IN ('completed', 'failed', 'cancelled')) AS numbered
    WHERE jobs.seq = numbered.seq;
  CREATE UNIQUE INDEX jobs_finished ON jobs (finished_seq);
  -- A list of one state (the metrics read every active state's on each scrape) reads only those jobs.
  CREATE INDEX jobs_state ON jobs (state, created_at, seq);
  `,
  // 3: the dispatch backlog (one FIFO queue per tenant and agent name, with claims), idempotency keys, jobs by room.
  `
  CREATE TABLE job_queue (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    agent_name TEXT NOT NULL,
    claimant TEXT,
    claimed_until INTEGER
  );
  CREATE INDEX job_queue_order ON job_queue (owner, agent_name, position);
  CREATE TABLE dispatch_keys (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
  );
  CREATE INDEX dispatch_keys_expiry ON dispatch_keys (expires_at);
  ALTER TABLE jobs ADD COLUMN room_id TEXT;
  UPDATE jobs SET room_id = json_extract(record, '$.roomId');
  CREATE INDEX jobs_room ON jobs (room_id, created_at, seq);
  `,
  // 4: settings Switchboard keeps for itself, written once (the card-signing key).
  `
  CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
  ) WITHOUT ROWID;
  `,
  // 5: the retained event log (GET /events resumes from it), webhook subscriptions and their deliveries.
  `
  CREATE TABLE event_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    bytes INTEGER NOT NULL
  );
  CREATE TABLE event_log_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    count INTEGER NOT NULL,                  -- events kept
    bytes INTEGER NOT NULL,                  -- of the events kept
    dropped INTEGER NOT NULL                 -- newest id trimmed away (0: none)
  );
  INSERT INTO event_log_state VALUES (1, 0, 0, 0);
  CREATE TABLE webhook_subscriptions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    record TEXT NOT NULL                     -- JSON WebhookSubscription
  );
  CREATE INDEX webhook_subscriptions_tenant ON webhook_subscriptions (tenant, seq);
  CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    dead_at INTEGER,
    record TEXT NOT NULL                     -- JSON WebhookDelivery
  );
  CREATE INDEX webhook_deliveries_due ON webhook_deliveries (dead_at, due_at);
  CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, dead_at);
  `,
  // 6: finished jobs bounded by their total size too (finished_jobs_max_mb): each one's JSON bytes, and their sum.
  `
  ALTER TABLE jobs ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
  UPDATE jobs SET bytes = length(CAST(record AS BLOB)) WHERE finished_seq IS NOT NULL;
  CREATE TABLE finished_jobs_size (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    bytes INTEGER NOT NULL
  );
  INSERT INTO finished_jobs_size SELECT 1, COALESCE(SUM(bytes), 0) FROM jobs WHERE finished_seq IS NOT NULL;
  `,
]

/** The schema version this build writes. */
export const SCHEMA_VERSION = MIGRATIONS.length

export interface OpenOptions {
  path: string
  synchronous: Synchronous
  /** max_db_mb: queued messages stop being accepted there, and the file stops growing at `hardLimitBytes` (0: as large as its disk allows). */
  maxMb?: number
}

const MIB = 1024 * 1024

/** Where the file stops growing for any write: a quarter past max_db_mb, and at least 8 MiB past it. */
export function hardLimitBytes(maxMb: number): number {
  return maxMb * MIB + Math.max((maxMb * MIB) / 4, 8 * MIB)
}

/** How much of the file is in use (its free pages not counted), against max_db_mb. */
export class DatabaseSize {
  private readonly pageCount: Statement<{ page_count: number }, []>
  private readonly freePages: Statement<{ freelist_count: number }, []>
  private readonly pageSize: number

  constructor(
    db: Database,
    /** The limit in MiB; 0 for none. */
    readonly maxMb: number,
  ) {
    this.pageCount = db.query('PRAGMA page_count')
    this.freePages = db.query('PRAGMA freelist_count')
    this.pageSize = db.query<{ page_size: number }, []>('PRAGMA page_size').get()!.page_size
  }

  /** True when `bytes` more would take the file past max_db_mb. */
  wouldPass(bytes: number): boolean {
    if (this.maxMb === 0) return false
    const used = (this.pageCount.get()!.page_count - this.freePages.get()!.freelist_count) * this.pageSize
    return used + bytes > this.maxMb * MIB
  }
}

/** A write's failure as callers should see it: a full database is the store's 507, not a fault. */
export function writeError(error: unknown): unknown {
  if (error instanceof SQLiteError && error.code === 'SQLITE_FULL') {
    return new StoreFullError('The SQLite database is full (max_db_mb, or no room left on its disk): nothing was stored. Take messages, or give it room')
  }
  return error
}

/** Why opening failed, in words an operator can act on. */
function openProblem(path: string, error: unknown): PluginError {
  const code = error instanceof SQLiteError ? error.code : undefined
  const message = (error as Error).message
  if (code === 'SQLITE_BUSY') return new PluginError(`[sqlite] database ${path} is in use by another Switchboard process (one process per database file)`)
  if (code === 'SQLITE_NOTADB') return new PluginError(`[sqlite] ${path} is not a SQLite database`)
  return new PluginError(`[sqlite] cannot open database ${path}: ${message}`)
}

/** Reads the stored schema version (0 for a new file). */
function storedVersion(db: Database): number {
  db.run('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)')
  const row = db.query<{ version: number }, []>('SELECT version FROM schema_version').get()
  return row?.version ?? 0
}

/** Applies the migrations the file lacks, in one transaction. */
function migrate(db: Database, path: string): void {
  db.run('BEGIN EXCLUSIVE')
  try {
    const version = storedVersion(db)
    if (version > SCHEMA_VERSION) {
      throw new PluginError(`[sqlite] database ${path} has schema version ${version}, newer than this Switchboard understands (${SCHEMA_VERSION}); upgrade Switchboard`)
    }
    for (let next = version; next < SCHEMA_VERSION; next++) db.run(MIGRATIONS[next]!)
    if (version === 0) db.run('INSERT INTO schema_version (version) VALUES (?)', [SCHEMA_VERSION])
    else if (version < SCHEMA_VERSION) db.run('UPDATE schema_version SET version = ?', [SCHEMA_VERSION])
    db.run('COMMIT')
  } catch (error) {
    db.run('ROLLBACK')
    throw error
  }
}

/**
 * Opens (creating if needed) the database file in WAL mode, takes the
 * exclusive lock for this process, and brings the schema up to date.
 */
export function openDatabase(options: OpenOptions): Database {
  const path = resolve(process.cwd(), options.path)
  let db: Database
  try {
    db = new Database(path, { create: true, strict: true })
  } catch (error) {
    throw openProblem(path, error)
  }
  try {
    // A restart right after a crash may find the old process still exiting.
    db.run('PRAGMA busy_timeout = 2000')
    // Waiters and in-flight deliveries live in this process: a second process on the same file would break both.
    db.run('PRAGMA locking_mode = EXCLUSIVE')
    db.run('PRAGMA journal_mode = WAL')
    db.run(`PRAGMA synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
    migrate(db, path)
    if (options.maxMb) {
      // Room past the limit for what does not queue messages (takes, mailboxes, jobs), so that receivers can always drain it.
      const pageSize = db.query<{ page_size: number }, []>('PRAGMA page_size').get()!.page_size
      db.run(`PRAGMA max_page_count = ${Math.ceil(hardLimitBytes(options.maxMb) / pageSize)}`)
    }
  } catch (error) {
    db.close(true)
    if (error instanceof PluginError) throw error
    throw openProblem(path, error)
  }
  return db
}
