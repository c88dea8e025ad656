/**
 * The MailboxStore contract (src/backend/mailboxes.ts and the exchange spec),
 * written once and run against every backend plugin on a fresh backend per test.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import type { Backend, Client, EntityId, Envelope, MailboxStore } from '../../../src/backend/index'
import { ForbiddenError, MailboxTerminatedError, UnknownMailboxError } from '../../../src/errors'
import { eventually } from '../../support/wait'
import type { MakeBackend } from '../conformance'

const alice: Client = { id: 'alice', groups: ['lab', 'alice-only'] }
const bob: Client = { id: 'bob', groups: ['lab'] }
const carol: Client = { id: 'carol', groups: [] }

const agent = (name: string | null = null): EntityId => ({ uid: randomUUID(), name, role: 'agent' })
const user = (): EntityId => ({ uid: randomUUID(), name: null, role: 'user' })

/** A message envelope as the exchange builds it from Academy's JSON. */
function envelope(src: EntityId, dest: EntityId, options: { kind?: 'request' | 'response'; tag?: string; label?: string | null; text?: string } = {}): Envelope {
  const kind = options.kind ?? 'request'
  const tag = options.tag ?? randomUUID()
  const label = options.label ?? null
  const raw = JSON.stringify({ header: { src, dest, tag, label, kind, protocol_version: '1' }, body: { kind: kind === 'request' ? 'ping-request' : 'success-response', text: options.text ?? '' } })
  return { raw, src, dest, tag, label, kind }
}

const soon = (ms = 5000) => ({ deadline: Date.now() + ms })
/** A retention setting in days that lasts `ms` milliseconds. */
const days = (ms: number) => ms / 86_400_000

/** Resolves with the rejection of `promise` (fails the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected a rejection, but the promise resolved')
}

/** Resolves true if `promise` is still pending after `ms`. */
async function stillPending(promise: Promise<unknown>, ms = 150): Promise<boolean> {
  const marker = Symbol('pending')
  const winner = await Promise.race([promise.then(() => null, () => null), Bun.sleep(ms).then(() => marker)])
  return winner === marker
}

export function mailboxStoreCases(makeBackend: MakeBackend): void {
  describe('MailboxStore', () => {
    let backend: Backend | null = null
    const open = async (options?: Record<string, unknown>): Promise<MailboxStore> => (backend = await makeBackend(options)).mailboxes
    afterEach(async () => {
      await backend?.close()
      backend = null
    })

    describe('create and status', () => {
      it('reports MISSING for a mailbox never created and ACTIVE once created', async () => {
        const store = await open()
        const id = agent()
        expect(await store.status(alice, id)).toBe('MISSING')
        await store.create(alice, id, ['mod.A'])
        expect(await store.status(alice, id)).toBe('ACTIVE')
      })

      it('creates idempotently and keeps the first creator as owner', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, ['mod.A'])
        await store.create(alice, id, ['mod.B'])
        expect(await store.discover(alice, 'mod.A', false)).toEqual([id.uid])
        expect(await store.discover(alice, 'mod.B', false)).toEqual([])
        expect(await rejection(store.create(carol, id, null))).toBeInstanceOf(ForbiddenError)
        expect(await rejection(store.status(carol, id))).toBeInstanceOf(ForbiddenError)
        expect(await rejection(store.terminate(carol, id))).toBeInstanceOf(ForbiddenError)
      })

      it('keeps an agent and a user with the same uid apart', async () => {
        const store = await open()
        const uid = randomUUID()
        const asAgent: EntityId = { uid, name: null, role: 'agent' }
        const asUser: EntityId = { uid, name: null, role: 'user' }
        await store.create(alice, asAgent, ['mod.A'])
        expect(await store.status(alice, asUser)).toBe('MISSING')
        await store.create(alice, asUser, null)
        await store.put(alice, envelope(asUser, asAgent, { text: 'to the agent' }))
        expect(await store.take(alice, asUser, { deadline: Date.now() + 50 })).toBeNull()
        expect(await store.take(alice, asAgent, soon())).toContain('to the agent')
        expect((await store.stats(alice, asUser)).outgoing).toBe(1)
        expect((await store.stats(alice, asAgent)).outgoing).toBe(0)
        await store.terminate(alice, asAgent)
        expect(await store.status(alice, asUser)).toBe('ACTIVE')
        expect(await store.status(alice, asAgent)).toBe('TERMINATED')
      })
    })

    describe('terminate', () => {
      it('leaves a gravestone that a later create does not revive', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, ['mod.A'])
        await store.terminate(alice, id)
        expect(await store.status(alice, id)).toBe('TERMINATED')
        await store.create(alice, id, ['mod.A'])
        expect(await store.status(alice, id)).toBe('TERMINATED')
        expect(await store.discover(alice, 'mod.A', false)).toEqual([])
      })

      it('returns nothing for a missing mailbox and leaves it MISSING', async () => {
        const store = await open()
        const id = agent()
        expect(await store.terminate(alice, id)).toEqual([])
        expect(await store.status(alice, id)).toBe('MISSING')
      })

      it('is idempotent: a second terminate returns no pending requests', async () => {
        const store = await open()
        const requester = agent()
        const id = agent()
        await store.create(alice, requester, null)
        await store.create(alice, id, null)
        await store.put(alice, envelope(requester, id))
        expect(await store.terminate(alice, id)).toHaveLength(1)
        expect(await store.terminate(alice, id)).toEqual([])
      })

      it('returns every request still pending to it, queued or already taken, but not answered ones', async () => {
        const store = await open()
        const requester = agent()
        const id = agent()
        await store.create(alice, requester, null)
        await store.create(alice, id, null)
        const queued = envelope(requester, id, { label: randomUUID() })
        const taken = envelope(requester, id)
        const answered = envelope(requester, id)
        await store.put(alice, taken)
        await store.put(alice, answered)
        await store.put(alice, queued)
        expect(await store.take(alice, id, soon())).toBe(taken.raw)
        expect(await store.take(alice, id, soon())).toBe(answered.raw)
        await store.put(alice, envelope(id, requester, { kind: 'response', tag: answered.tag }))
        const pending = await store.terminate(alice, id)
        const byTag = (a: { tag: string }, b: { tag: string }) => a.tag.localeCompare(b.tag)
        expect(pending.sort(byTag)).toEqual(
          [
            { src: requester, dest: id, tag: taken.tag, label: null, srcOwner: alice.id },
            { src: requester, dest: id, tag: queued.tag, label: queued.label, srcOwner: alice.id },
          ].sort(byTag),
        )
      })

      it('drops the queue and refuses further puts and takes with MailboxTerminatedError', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, sender, null)
        await store.create(alice, id, null)
        await store.put(alice, envelope(sender, id))
        await store.terminate(alice, id)
        expect(await rejection(store.put(alice, envelope(sender, id)))).toBeInstanceOf(MailboxTerminatedError)
        expect(await rejection(store.take(alice, id, soon()))).toBeInstanceOf(MailboxTerminatedError)
        expect((await store.stats(alice, id)).queued).toBe(0)
      })

      it('wakes every waiting taker with MailboxTerminatedError', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, null)
        const waiting = [store.take(alice, id, soon()), store.take(alice, id, soon()), store.take(alice, id, soon())]
        const outcomes = waiting.map((take) => rejection(take))
        await Bun.sleep(50)
        await store.terminate(alice, id)
        for (const outcome of outcomes) expect(await outcome).toBeInstanceOf(MailboxTerminatedError)
      })

      it('may only be done by the owner, even by a member of a shared group', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, null)
        await store.share(alice, id, 'lab')
        expect(await rejection(store.terminate(bob, id))).toBeInstanceOf(ForbiddenError)
        expect(await store.status(alice, id)).toBe('ACTIVE')
      })

      it('ignores a restore into a terminated mailbox', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, null)
        await store.terminate(alice, id)
        await store.restore(id, 'lost')
        expect((await store.stats(alice, id)).queued).toBe(0)
      })
    })

    describe('put', () => {
      it('refuses an unknown destination with UnknownMailboxError', async () => {
        const store = await open()
        const sender = agent()
        await store.create(alice, sender, null)
        expect(await rejection(store.put(alice, envelope(sender, agent())))).toBeInstanceOf(UnknownMailboxError)
      })

      it('refuses a destination the caller may not access, and a source the caller does not own', async () => {
        const store = await open()
        const mine = agent()
        const theirs = agent()
        await store.create(alice, mine, null)
        await store.create(carol, theirs, null)
        expect(await rejection(store.put(alice, envelope(mine, theirs)))).toBeInstanceOf(ForbiddenError)
        expect(await rejection(store.put(carol, envelope(mine, theirs)))).toBeInstanceOf(ForbiddenError)
        expect((await store.stats(carol, theirs)).queued).toBe(0)
      })

      it('lets Switchboard itself (no client) put into any mailbox', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(carol, id, null)
        await store.put(null, envelope(sender, id, { kind: 'response', text: 'auto-reply' }))
        expect(await store.take(carol, id, soon())).toContain('auto-reply')
      })

      it('hands back the exact text that was put', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, id, null)
        const message = envelope(sender, id, { text: 'ünïcödé \u2028 "quoted" \\ 🎉' })
        await store.put(alice, message)
        expect(await store.take(alice, id, soon())).toBe(message.raw)
      })
    })

    describe('take', () => {
      it('takes messages in the order they were put', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, id, null)
        const sent = Array.from({ length: 20 }, (_, i) => envelope(sender, id, { text: `m${i}` }))
        for (const message of sent) await store.put(alice, message)
        const received: (string | null)[] = []
        for (let i = 0; i < sent.length; i++) received.push(await store.take(alice, id, soon()))
        expect(received).toEqual(sent.map((message) => message.raw))
      })

      it('refuses an unknown mailbox and a mailbox the caller may not access', async () => {
        const store = await open()
        expect(await rejection(store.take(alice, agent(), soon()))).toBeInstanceOf(UnknownMailboxError)
        const id = agent()
        await store.create(alice, id, null)
        expect(await rejection(store.take(carol, id, soon()))).toBeInstanceOf(ForbiddenError)
      })

      it('waits for a message and wakes when one is put', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, id, null)
        const taking = store.take(alice, id, soon(10_000))
        expect(await stillPending(taking)).toBe(true)
        const message = envelope(sender, id)
        await store.put(alice, message)
        expect(await taking).toBe(message.raw)
      })

      it('resolves null once the deadline passes with no message', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, null)
        const started = Date.now()
        expect(await store.take(alice, id, { deadline: started + 200 })).toBeNull()
        expect(Date.now() - started).toBeGreaterThanOrEqual(150)
      })

      it('resolves null when aborted and leaves a later message for the next taker', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, id, null)
        const controller = new AbortController()
        const taking = store.take(alice, id, { deadline: Date.now() + 10_000, signal: controller.signal })
        await Bun.sleep(50)
        controller.abort()
        expect(await taking).toBeNull()
        const message = envelope(sender, id)
        await store.put(alice, message)
        expect(await store.take(alice, id, soon())).toBe(message.raw)
      })

      it('resolves null at once for an already aborted signal without consuming a queued message', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, id, null)
        const message = envelope(sender, id)
        await store.put(alice, message)
        expect(await store.take(alice, id, { deadline: Date.now() + 10_000, signal: AbortSignal.abort() })).toBeNull()
        expect(await store.take(alice, id, soon())).toBe(message.raw)
      })

      it('gives each message to exactly one of several concurrent takers', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, id, null)
        const takers = Array.from({ length: 8 }, () => store.take(alice, id, { deadline: Date.now() + 1000 }))
        await Bun.sleep(50)
        const sent = Array.from({ length: 5 }, (_, i) => envelope(sender, id, { text: `m${i}` }))
        await Promise.all(sent.map((message) => store.put(alice, message)))
        const results = await Promise.all(takers)
        const received = results.filter((result): result is string => result !== null)
        expect(received.sort()).toEqual(sent.map((message) => message.raw).sort())
        expect(results.filter((result) => result === null)).toHaveLength(3)
      })

      it('lets a member of a shared group take, and stops when the share is withdrawn', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, id, null)
        await store.share(alice, id, 'lab')
        await store.put(bob, envelope(sender, id, { text: 'shared' }))
        expect(await store.take(bob, id, soon())).toContain('shared')
        await store.unshare(alice, id, 'lab')
        expect(await rejection(store.take(bob, id, soon()))).toBeInstanceOf(ForbiddenError)
      })
    })

    describe('restore', () => {
      it('puts a taken message back at the head of the queue', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, id, null)
        const first = envelope(sender, id, { text: 'first' })
        const second = envelope(sender, id, { text: 'second' })
        await store.put(alice, first)
        await store.put(alice, second)
        expect(await store.take(alice, id, soon())).toBe(first.raw)
        await store.restore(id, first.raw)
        expect(await store.take(alice, id, soon())).toBe(first.raw)
        expect(await store.take(alice, id, soon())).toBe(second.raw)
      })

      it('wakes a waiting taker', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, null)
        const taking = store.take(alice, id, soon(10_000))
        await Bun.sleep(50)
        await store.restore(id, 'restored')
        expect(await taking).toBe('restored')
      })
    })

    describe('discover', () => {
      it('finds active agents by exact class, or by any class of the MRO with subclasses, in creation order', async () => {
        const store = await open()
        const base = `mod.Base${randomUUID()}`
        const child = `mod.Child${randomUUID()}`
        const first = agent()
        const second = agent()
        const third = agent()
        await store.create(alice, first, [base, 'academy.agent.Agent'])
        await store.create(alice, second, [child, base, 'academy.agent.Agent'])
        await store.create(alice, third, [base, 'academy.agent.Agent'])
        expect(await store.discover(alice, base, false)).toEqual([first.uid, third.uid])
        expect(await store.discover(alice, base, true)).toEqual([first.uid, second.uid, third.uid])
        expect(await store.discover(alice, child, false)).toEqual([second.uid])
        expect(await store.discover(alice, 'mod.Nobody', true)).toEqual([])
      })

      it('leaves out terminated agents, user mailboxes and agents created without an MRO', async () => {
        const store = await open()
        const kind = `mod.K${randomUUID()}`
        const gone = agent()
        const kept = agent()
        const bare = agent()
        await store.create(alice, gone, [kind])
        await store.create(alice, kept, [kind])
        await store.create(alice, bare, null)
        await store.create(alice, user(), [kind])
        await store.terminate(alice, gone)
        expect(await store.discover(alice, kind, true)).toEqual([kept.uid])
      })

      it('shows only the agents the caller may access: owned, or shared with one of its groups', async () => {
        const store = await open()
        const kind = `mod.K${randomUUID()}`
        const owned = agent()
        const shared = agent()
        const hidden = agent()
        await store.create(bob, owned, [kind])
        await store.create(alice, shared, [kind])
        await store.create(carol, hidden, [kind])
        await store.share(alice, shared, 'lab')
        expect(await store.discover(bob, kind, false)).toEqual([owned.uid, shared.uid])
        expect(await store.discover(carol, kind, false)).toEqual([hidden.uid])
      })
    })

    describe('heartbeat and the activity of a send', () => {
      it('reports null before any activity and the seconds since the last take or send from it after', async () => {
        const store = await open()
        const [id, peer] = [agent(), agent()]
        await store.create(alice, id, null)
        await store.create(alice, peer, null)
        expect(await store.heartbeat(alice, id)).toBeNull()
        await store.put(alice, envelope(id, peer))
        const afterSend = await store.heartbeat(alice, id)
        expect(afterSend).not.toBeNull()
        expect(afterSend!).toBeGreaterThanOrEqual(0)
        expect(afterSend!).toBeLessThan(5)
        // Receiving a message is not activity of the mailbox it came from.
        expect(await store.heartbeat(alice, peer)).toBeNull()
        await Bun.sleep(120)
        expect((await store.heartbeat(alice, id))!).toBeGreaterThanOrEqual(0.1)
        expect(await store.take(alice, id, { deadline: Date.now() + 10 })).toBeNull()
        expect((await store.heartbeat(alice, id))!).toBeLessThan(0.1)
      })

      it('counts only a send that was stored, and only a client\'s', async () => {
        const store = await open()
        const [id, peer, gone] = [agent(), agent(), agent()]
        for (const box of [id, peer, gone]) await store.create(alice, box, null)
        await store.terminate(alice, gone)
        expect(await rejection(store.put(alice, envelope(id, agent())))).toBeInstanceOf(UnknownMailboxError)
        expect(await rejection(store.put(alice, envelope(id, gone)))).toBeInstanceOf(MailboxTerminatedError)
        expect(await rejection(store.put(bob, envelope(id, peer)))).toBeInstanceOf(ForbiddenError)
        // Switchboard's own messages (the answers a terminated mailbox gives) are not a send of the mailbox they name.
        await store.put(null, envelope(id, peer, { kind: 'response' }))
        expect(await store.heartbeat(alice, id)).toBeNull()
        await store.put(alice, envelope(id, peer))
        expect(await store.heartbeat(alice, id)).not.toBeNull()
      })

      it('refuses an unknown mailbox with UnknownMailboxError, and a send from one leaves it unknown', async () => {
        const store = await open()
        const [id, peer] = [agent(), agent()]
        await store.create(alice, peer, null)
        await store.put(alice, envelope(id, peer))
        expect(await rejection(store.heartbeat(alice, id))).toBeInstanceOf(UnknownMailboxError)
        expect(await store.status(alice, id)).toBe('MISSING')
        expect(await store.take(alice, peer, soon())).not.toBeNull()
      })

      it('leaves a terminated mailbox terminated when a message still names it as the sender', async () => {
        const store = await open()
        const [id, peer] = [agent(), agent()]
        await store.create(alice, id, null)
        await store.create(alice, peer, null)
        await store.terminate(alice, id)
        await store.put(alice, envelope(id, peer))
        expect(await store.status(alice, id)).toBe('TERMINATED')
        expect(await store.counts()).toEqual({ mailboxes: 1, queued: 1 })
      })

      it('refuses a caller who may not access the mailbox', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, null)
        expect(await rejection(store.heartbeat(carol, id))).toBeInstanceOf(ForbiddenError)
      })
    })

    describe('stats', () => {
      it('counts outgoing, pending, queued, in progress and completed requests as Academy does', async () => {
        const store = await open()
        const requester = agent()
        const worker = agent()
        await store.create(alice, requester, null)
        await store.create(alice, worker, null)
        const requests = Array.from({ length: 3 }, () => envelope(requester, worker))
        for (const request of requests) await store.put(alice, request)
        expect(await store.stats(alice, requester)).toEqual({ incoming: 0, outgoing: 3, completed: 0, in_progress: 0, queued: 0 })
        expect(await store.stats(alice, worker)).toEqual({ incoming: 3, outgoing: 0, completed: 0, in_progress: 0, queued: 3 })
        await store.take(alice, worker, soon())
        await store.take(alice, worker, soon())
        expect(await store.stats(alice, worker)).toEqual({ incoming: 3, outgoing: 0, completed: 0, in_progress: 2, queued: 1 })
        await store.put(alice, envelope(worker, requester, { kind: 'response', tag: requests[0]!.tag }))
        expect(await store.stats(alice, worker)).toEqual({ incoming: 3, outgoing: 0, completed: 1, in_progress: 1, queued: 1 })
        expect(await store.stats(alice, requester)).toEqual({ incoming: 0, outgoing: 3, completed: 0, in_progress: 0, queued: 1 })
      })

      it('does not count a response to an unknown tag as completed', async () => {
        const store = await open()
        const a = agent()
        const b = agent()
        await store.create(alice, a, null)
        await store.create(alice, b, null)
        await store.put(alice, envelope(a, b, { kind: 'response' }))
        expect(await store.stats(alice, a)).toEqual({ incoming: 0, outgoing: 0, completed: 0, in_progress: 0, queued: 0 })
        expect(await store.stats(alice, b)).toEqual({ incoming: 0, outgoing: 0, completed: 0, in_progress: 0, queued: 1 })
      })

      it('shows the requests sent from a key with no mailbox only to the client that sent them, and of a mailbox only its owner\'s', async () => {
        const store = await open()
        const [unboxed, dest] = [agent(), agent()]
        await store.create(bob, dest, null)
        await store.share(bob, dest, 'lab')
        for (let i = 0; i < 2; i++) await store.put(alice, envelope(unboxed, dest))
        await store.put(bob, envelope(unboxed, dest))
        expect((await store.stats(alice, unboxed)).outgoing).toBe(2)
        expect((await store.stats(bob, unboxed)).outgoing).toBe(1)
        expect((await store.stats(carol, unboxed)).outgoing).toBe(0)
        // Once someone creates the mailbox, every caller who may see it sees its owner's count.
        await store.create(bob, unboxed, null)
        await store.share(bob, unboxed, 'lab')
        expect((await store.stats(bob, unboxed)).outgoing).toBe(1)
        expect((await store.stats(alice, unboxed)).outgoing).toBe(1)
      })

      it('answers zeros for an unknown mailbox and refuses a caller who may not access one', async () => {
        const store = await open()
        expect(await store.stats(alice, agent())).toEqual({ incoming: 0, outgoing: 0, completed: 0, in_progress: 0, queued: 0 })
        const id = agent()
        await store.create(alice, id, null)
        expect(await rejection(store.stats(carol, id))).toBeInstanceOf(ForbiddenError)
      })
    })

    describe('answers on terminate', () => {
      it('records the owner of the source mailbox with each request, null when the source has none', async () => {
        const store = await open()
        const [boxed, unboxed, dest] = [agent(), agent(), agent()]
        await store.create(alice, boxed, null)
        await store.create(alice, dest, null)
        const fromBox = envelope(boxed, dest)
        const fromNowhere = envelope(unboxed, dest)
        await store.put(alice, fromBox)
        await store.put(alice, fromNowhere)
        const pending = await store.terminate(alice, dest)
        expect(pending.find((request) => request.tag === fromBox.tag)?.srcOwner).toBe(alice.id)
        expect(pending.find((request) => request.tag === fromNowhere.tag)?.srcOwner).toBeNull()
      })

      it('refuses Switchboard\'s put into a mailbox of another owner than the one it is meant for, storing nothing', async () => {
        const store = await open()
        const [theirs, mine] = [agent(), agent()]
        await store.create(bob, theirs, null)
        await store.create(alice, mine, null)
        const reply = { ...envelope(mine, theirs, { kind: 'response' }), destOwner: alice.id }
        expect(await rejection(store.put(null, reply))).toBeInstanceOf(UnknownMailboxError)
        expect(await store.stats(bob, theirs)).toEqual({ incoming: 0, outgoing: 0, completed: 0, in_progress: 0, queued: 0 })
        expect(await rejection(store.put(null, { ...reply, destOwner: null }))).toBeInstanceOf(UnknownMailboxError)
        await store.put(null, { ...reply, destOwner: bob.id })
        expect(await store.take(bob, theirs, soon())).toBe(reply.raw)
      })
    })

    describe('share', () => {
      it('shares into the owner\'s groups, lists and withdraws shares idempotently', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, null)
        expect(await store.shares(alice, id)).toEqual([])
        await store.share(alice, id, 'lab')
        await store.share(alice, id, 'alice-only')
        await store.share(alice, id, 'lab')
        expect((await store.shares(alice, id)).sort()).toEqual(['alice-only', 'lab'])
        await store.unshare(alice, id, 'lab')
        await store.unshare(alice, id, 'lab')
        await store.unshare(alice, id, 'never-shared')
        expect(await store.shares(alice, id)).toEqual(['alice-only'])
      })

      it('refuses a group the owner is not in, and any caller who is not the owner', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, null)
        await store.share(alice, id, 'lab')
        expect(await rejection(store.share(alice, id, 'elsewhere'))).toBeInstanceOf(ForbiddenError)
        expect(await rejection(store.share(bob, id, 'lab'))).toBeInstanceOf(ForbiddenError)
        expect(await rejection(store.unshare(bob, id, 'lab'))).toBeInstanceOf(ForbiddenError)
        expect(await rejection(store.shares(bob, id))).toBeInstanceOf(ForbiddenError)
        expect(await store.shares(alice, id)).toEqual(['lab'])
      })

      it('refuses an unknown mailbox with UnknownMailboxError and a terminated one with MailboxTerminatedError', async () => {
        const store = await open()
        expect(await rejection(store.share(alice, agent(), 'lab'))).toBeInstanceOf(UnknownMailboxError)
        expect(await rejection(store.shares(alice, agent()))).toBeInstanceOf(UnknownMailboxError)
        const id = agent()
        await store.create(alice, id, null)
        await store.terminate(alice, id)
        expect(await rejection(store.share(alice, id, 'lab'))).toBeInstanceOf(MailboxTerminatedError)
        expect(await rejection(store.unshare(alice, id, 'lab'))).toBeInstanceOf(MailboxTerminatedError)
      })

      it('gives members of a shared group access to status, put, stats and heartbeat', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, id, null)
        await store.create(bob, sender, null)
        expect(await rejection(store.put(bob, envelope(sender, id)))).toBeInstanceOf(ForbiddenError)
        await store.share(alice, id, 'lab')
        await store.put(bob, envelope(sender, id))
        expect(await store.status(bob, id)).toBe('ACTIVE')
        expect((await store.stats(bob, id)).queued).toBe(1)
        expect(await store.heartbeat(bob, id)).toBeNull()
      })
    })

    describe('counts', () => {
      it('counts active mailboxes once each, and neither gravestones nor refused creates', async () => {
        const store = await open()
        expect(await store.counts()).toEqual({ mailboxes: 0, queued: 0 })
        const [first, second, closed] = [agent(), user(), agent()]
        await store.create(alice, first, ['mod.A'])
        await store.create(alice, first, ['mod.A'])
        await store.create(bob, second, null)
        await store.create(alice, closed, null)
        expect(await store.counts()).toEqual({ mailboxes: 3, queued: 0 })
        await store.terminate(alice, closed)
        await store.create(alice, closed, null)
        expect(await rejection(store.create(carol, first, null))).toBeInstanceOf(ForbiddenError)
        expect(await store.counts()).toEqual({ mailboxes: 2, queued: 0 })
      })

      it('follows the queue through put, take, restore and refused puts', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, sender, null)
        await store.create(alice, id, null)
        const sent = Array.from({ length: 3 }, (_, i) => envelope(sender, id, { text: `m${i}` }))
        for (const message of sent) await store.put(alice, message)
        await store.put(alice, envelope(id, sender))
        expect(await store.counts()).toEqual({ mailboxes: 2, queued: 4 })
        const taken = await store.take(alice, id, soon())
        expect(taken).toBe(sent[0]!.raw)
        expect(await store.counts()).toEqual({ mailboxes: 2, queued: 3 })
        await store.restore(id, taken!)
        expect(await store.counts()).toEqual({ mailboxes: 2, queued: 4 })
        expect(await rejection(store.put(alice, envelope(sender, agent())))).toBeInstanceOf(UnknownMailboxError)
        expect(await rejection(store.put(carol, envelope(sender, id)))).toBeInstanceOf(ForbiddenError)
        for (let i = 0; i < sent.length; i++) await store.take(alice, id, soon())
        expect(await store.take(alice, id, { deadline: Date.now() + 20 })).toBeNull()
        expect(await store.counts()).toEqual({ mailboxes: 2, queued: 1 })
      })

      it('drops a terminated mailbox and its queued messages from the counts, once', async () => {
        const store = await open()
        const sender = agent()
        const id = agent()
        await store.create(alice, sender, null)
        await store.create(alice, id, null)
        for (let i = 0; i < 3; i++) await store.put(alice, envelope(sender, id))
        await store.put(alice, envelope(id, sender))
        expect(await store.counts()).toEqual({ mailboxes: 2, queued: 4 })
        await store.terminate(alice, id)
        expect(await store.counts()).toEqual({ mailboxes: 1, queued: 1 })
        await store.terminate(alice, id)
        await store.restore(id, 'lost')
        expect(await rejection(store.put(alice, envelope(sender, id)))).toBeInstanceOf(MailboxTerminatedError)
        expect(await store.counts()).toEqual({ mailboxes: 1, queued: 1 })
      })
    })

    describe('retention', () => {
    it('forgets an idle mailbox with its queue after mailbox_expiration_d, and the counts follow without anyone asking for it', async () => {
      const mailboxes = await open({ mailbox_expiration_d: days(300) })
      const [sender, idle] = [agent(), agent()]
      await mailboxes.create(alice, sender, null)
      await mailboxes.create(alice, idle, ['mod.Idle'])
      await mailboxes.put(alice, envelope(sender, idle))
      expect(await mailboxes.counts()).toEqual({ mailboxes: 2, queued: 1 })
      expect(await mailboxes.discover(alice, 'mod.Idle', false)).toEqual([idle.uid])
      // Only the sweep can bring the counts down: nothing reads either mailbox meanwhile.
      await eventually(async () => (await mailboxes.counts()).mailboxes === 0, 5000, 'both mailboxes swept')
      expect(await mailboxes.counts()).toEqual({ mailboxes: 0, queued: 0 })
      expect(await mailboxes.status(alice, idle)).toBe('MISSING')
      expect(await mailboxes.discover(alice, 'mod.Idle', false)).toEqual([])
      expect(await mailboxes.stats(alice, sender)).toEqual({ incoming: 0, outgoing: 0, completed: 0, in_progress: 0, queued: 0 })
      // A new mailbox under the same id starts empty.
      await mailboxes.create(alice, idle, null)
      expect(await mailboxes.take(alice, idle, { deadline: Date.now() + 20 })).toBeNull()
    })

    it('keeps a mailbox and its queue for as long as it is used, however long past the retention', async () => {
      const mailboxes = await open({ mailbox_expiration_d: days(300) })
      const [sender, receiver] = [agent(), agent()]
      await mailboxes.create(alice, sender, null)
      await mailboxes.create(alice, receiver, null)
      const kept = envelope(sender, receiver)
      await mailboxes.put(alice, kept)
      const until = Date.now() + 1200
      while (Date.now() < until) {
        // The receiver sends and the sender receives: each one's activity keeps it.
        const reply = envelope(receiver, sender)
        await mailboxes.put(alice, reply)
        expect(await mailboxes.take(alice, sender, { deadline: Date.now() + 100 })).toBe(reply.raw)
      }
      expect(await mailboxes.status(alice, receiver)).toBe('ACTIVE')
      expect(await mailboxes.status(alice, sender)).toBe('ACTIVE')
      expect(await mailboxes.take(alice, receiver, soon())).toBe(kept.raw)
      expect(await mailboxes.counts()).toEqual({ mailboxes: 2, queued: 0 })
    })

    it('remembers a gravestone for gravestone_expiration_d, then forgets it', async () => {
      const mailboxes = await open({ gravestone_expiration_d: days(400) })
      const id = agent()
      await mailboxes.create(alice, id, null)
      await mailboxes.terminate(alice, id)
      const terminatedAt = Date.now()
      expect(await mailboxes.status(alice, id)).toBe('TERMINATED')
      await mailboxes.create(alice, id, null)
      await eventually(async () => (await mailboxes.status(alice, id)) === 'MISSING', 5000, 'the gravestone forgotten')
      expect(Date.now() - terminatedAt).toBeGreaterThanOrEqual(390)
      await mailboxes.create(alice, id, null)
      expect(await mailboxes.status(alice, id)).toBe('ACTIVE')
    })
    })

    describe('close', () => {
      it('wakes waiting takers when the backend closes', async () => {
        const store = await open()
        const id = agent()
        await store.create(alice, id, null)
        const taking = rejection(store.take(alice, id, soon(10_000)))
        await Bun.sleep(50)
        await backend!.close()
        backend = null
        expect(await taking).toBeInstanceOf(Error)
      })
    })
  })
}
