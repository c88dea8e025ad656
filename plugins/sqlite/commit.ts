/**
 * Group commit: the writes that arrive in one turn of the event loop are
 * committed together, in one transaction, so concurrent callers share one
 * sync to disk instead of paying one each. Every write runs in a savepoint
 * of its own: one that throws is rolled back alone and only its caller gets
 * the error; one that finds the database full makes SQLite roll back the
 * whole transaction, so every caller in the group gets that error and
 * nothing of the group is stored. Each caller is answered once the shared
 * commit is done, so a write that resolved is on the file exactly as if it
 * had committed alone.
 */
import type { Database, Statement } from 'bun:sqlite'
import { writeError } from './database'

interface Queued {
  work: () => unknown
  resolve: (value: unknown) => void
  reject: (error: unknown) => void
}

export class GroupCommit {
  private queue: Queued[] = []
  private scheduled = false
  private readonly begin: Statement
  private readonly savepoint: Statement
  private readonly release: Statement
  private readonly rollbackTo: Statement
  private readonly commit: Statement

  constructor(private readonly db: Database) {
    this.begin = db.prepare('BEGIN IMMEDIATE')
    this.savepoint = db.prepare('SAVEPOINT write')
    this.release = db.prepare('RELEASE write')
    this.rollbackTo = db.prepare('ROLLBACK TO write')
    this.commit = db.prepare('COMMIT')
  }

  /** Runs `work` (synchronous statements) in the next group; resolves with its result once that group is committed. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject })
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => this.flush())
      }
    })
  }

  /** Commits every write queued so far, now (also called before the database closes). */
  flush(): void {
    this.scheduled = false
    const group = this.queue
    this.queue = []
    if (group.length === 0) return
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = []
    try {
      this.begin.run()
      for (const write of group) {
        this.savepoint.run()
        try {
          outcomes.push({ ok: true, value: write.work() })
          this.release.run()
        } catch (error) {
          // SQLite rolled the whole transaction back (a full database): the group fails with this error.
          if (!this.db.inTransaction) throw error
          this.rollbackTo.run()
          this.release.run()
          outcomes.push({ ok: false, error: writeError(error) })
        }
      }
      this.commit.run()
    } catch (failure) {
      const error = writeError(failure)
      // Nothing of the group is stored: every caller whose own write had not failed gets the commit's error.
      try {
        if (this.db.inTransaction) this.db.run('ROLLBACK')
      } catch {
        // The database is gone (closed, or its file failed): there is nothing left to undo.
      }
      group.forEach((write, index) => {
        const outcome = outcomes[index]
        write.reject(outcome && !outcome.ok ? outcome.error : error)
      })
      return
    }
    group.forEach((write, index) => {
      const outcome = outcomes[index]!
      if (outcome.ok) write.resolve(outcome.value)
      else write.reject(outcome.error)
    })
  }
}
