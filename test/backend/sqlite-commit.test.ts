/** Group commit on a real SQLite file: shared commits, a failing write rolled back alone, a failed commit losing nothing half-way. */
import { afterAll, afterEach, describe, expect, it } from 'bun:test'
import { Database } from 'bun:sqlite'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GroupCommit } from '../../plugins/sqlite/commit'
import { StoreFullError } from '../../src/errors'

const dir = mkdtempSync(join(tmpdir(), 'switchboard-commit-test-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** The outcome of a promise, to compare several at once. */
const settled = (promise: Promise<unknown>) =>
  promise.then(
    (value) => ({ value }),
    (error: Error) => ({ error: error.message }),
  )

describe('GroupCommit', () => {
  const opened: Database[] = []
  afterEach(() => {
    for (const db of opened.splice(0)) db.close()
  })
  /** A WAL database file with one table, and a second connection to it that sees only what is committed. */
  const open = () => {
    const file = join(dir, `${randomUUID()}.db`)
    const db = new Database(file, { create: true, strict: true })
    db.run('PRAGMA journal_mode = WAL')
    db.run('CREATE TABLE items (name TEXT PRIMARY KEY)')
    const reader = new Database(file, { readonly: true })
    opened.push(reader, db)
    const committed = () => reader.query<{ name: string }, []>('SELECT name FROM items ORDER BY rowid').all().map((row) => row.name)
    const insert = db.prepare('INSERT INTO items (name) VALUES (?)')
    return { db, committed, add: (name: string) => insert.run(name) }
  }

  it('commits the writes of one turn of the event loop together, and answers each only once they are committed', async () => {
    const { db, committed, add } = open()
    const writes = new GroupCommit(db)
    const seenByOthers: string[][] = []
    const first = writes.run(() => add('a'))
    // Runs after `a` in the same transaction: another connection does not see `a` yet.
    const second = writes.run(() => {
      seenByOthers.push(committed())
      add('b')
      return 'second done'
    })
    expect(committed()).toEqual([])
    const results = await Promise.all([first.then(() => committed()), second])
    expect(seenByOthers).toEqual([[]])
    expect(results).toEqual([['a', 'b'], 'second done'])
    // A later write starts a new group.
    await writes.run(() => add('c'))
    expect(committed()).toEqual(['a', 'b', 'c'])
  })

  it('rolls back a write that throws, alone, and gives its error to its caller only', async () => {
    const { db, committed, add } = open()
    const writes = new GroupCommit(db)
    const outcomes = await Promise.all([
      settled(writes.run(() => add('a'))),
      settled(
        writes.run(() => {
          add('half')
          add('a') // the primary key refuses it: `half` must go too
        }),
      ),
      settled(writes.run(() => add('c'))),
    ])
    expect(outcomes[0]).toHaveProperty('value')
    expect(outcomes[1]).toEqual({ error: expect.stringContaining('UNIQUE constraint failed') })
    expect(outcomes[2]).toHaveProperty('value')
    expect(committed()).toEqual(['a', 'c'])
    expect(db.inTransaction).toBe(false)
  })

  it('stores nothing of a group whose commit fails, and tells every caller', async () => {
    const { db, committed, add } = open()
    db.run('PRAGMA foreign_keys = ON')
    // Checked at commit time, not statement by statement.
    db.run('CREATE TABLE links (item TEXT REFERENCES items (name) DEFERRABLE INITIALLY DEFERRED)')
    const link = db.prepare('INSERT INTO links (item) VALUES (?)')
    const writes = new GroupCommit(db)
    const outcomes = await Promise.all([
      settled(writes.run(() => add('a'))),
      settled(writes.run(() => link.run('nowhere'))),
      settled(
        writes.run(() => {
          throw new Error('refused by its own rule')
        }),
      ),
    ])
    expect(outcomes[0]).toEqual({ error: expect.stringContaining('FOREIGN KEY constraint failed') })
    expect(outcomes[1]).toEqual({ error: expect.stringContaining('FOREIGN KEY constraint failed') })
    expect(outcomes[2]).toEqual({ error: 'refused by its own rule' })
    expect(committed()).toEqual([])
    expect(db.inTransaction).toBe(false)
    // The next group is unaffected.
    await writes.run(() => add('b'))
    expect(committed()).toEqual(['b'])
  })

  it('commits what is queued when flushed at once, and rejects writes queued after the database closed without throwing', async () => {
    const { db, committed, add } = open()
    const writes = new GroupCommit(db)
    const queued = writes.run(() => add('a'))
    writes.flush()
    expect(committed()).toEqual(['a'])
    await queued
    db.close(true)
    const late = await settled(writes.run(() => add('b')))
    expect(late).toHaveProperty('error')
  })

  it('fails the whole group with 507 when one write finds the database full, storing nothing of it, and goes on once there is room', async () => {
    const { db, committed, add } = open()
    const writes = new GroupCommit(db)
    await writes.run(() => add('before'))
    db.run(`PRAGMA max_page_count = ${db.query<{ page_count: number }, []>('PRAGMA page_count').get()!.page_count}`)
    // SQLite rolls the whole transaction back on a full database: the small write sharing the group goes too.
    const outcomes = await Promise.all([settled(writes.run(() => add('small'))), settled(writes.run(() => add('x'.repeat(100_000))))])
    expect(outcomes).toEqual([{ error: expect.stringContaining('The SQLite database is full') }, { error: expect.stringContaining('The SQLite database is full') }])
    const refused = await writes.run(() => add('y'.repeat(100_000))).catch((error: unknown) => error)
    expect(refused).toBeInstanceOf(StoreFullError)
    expect((refused as StoreFullError).status).toBe(507)
    expect(committed()).toEqual(['before'])
    db.run('PRAGMA max_page_count = 1000000')
    await writes.run(() => add('after'))
    expect(committed()).toEqual(['before', 'after'])
  })
})
