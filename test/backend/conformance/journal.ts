/**
 * The EventLogStore and WebhookStore contracts: the retained log (bounded in
 * count and bytes, read after an id, published in id order) and webhook
 * subscriptions with leased, retried and dead-lettered deliveries.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import type { Backend, LoggedEvent, WebhookDelivery, WebhookSubscription } from '../../../src/backend/index'
import { compareEventIds } from '../../../src/backend/journal'
import type { MakeBackend } from '../conformance'

const subscription = (tenant: string, types: string[] = []): WebhookSubscription => ({ id: randomUUID(), tenant, url: 'http://127.0.0.1:9/hook', types, secret: 'whsec_test', createdAt: Date.now() })
const delivery = (subscriptionId: string, dueAt = Date.now()): WebhookDelivery => ({
  id: randomUUID(),
  subscriptionId,
  eventId: '1',
  body: '{"type":"job.created"}',
  attempts: 0,
  dueAt,
  lastError: null,
  deadAt: null,
})

export function journalStoreCases(makeBackend: MakeBackend): void {
  describe('EventLogStore', () => {
    let backend: Backend | null = null
    const open = async (options?: Record<string, unknown>) => (backend = await makeBackend(options)).eventLog
    afterEach(async () => {
      await backend?.close()
      backend = null
    })

    it('gives growing ids and reads the events after an id, oldest first, in pages', async () => {
      const log = await open()
      const ids: string[] = []
      for (let n = 0; n < 5; n++) ids.push(await log.append(JSON.stringify({ n })))
      for (let n = 1; n < ids.length; n++) expect(compareEventIds(ids[n - 1]!, ids[n]!)).toBeLessThan(0)
      const page = await log.read(ids[1]!, 2)
      expect(page).toEqual({ events: [{ id: ids[2]!, body: '{"n":2}' }, { id: ids[3]!, body: '{"n":3}' }], missed: false })
      expect((await log.read(ids[4]!, 10)).events).toEqual([])
      expect((await log.read('0', 10)).events.map((event) => event.id)).toEqual(ids)
    })

    it('hands every appended event to subscribers in id order, with its id', async () => {
      const log = await open()
      const heard: LoggedEvent[] = []
      const stop = await log.subscribe((event) => heard.push(event))
      const ids = await Promise.all([0, 1, 2, 3].map((n) => log.append(JSON.stringify({ n }))))
      const deadline = Date.now() + 2000
      while (heard.length < 4 && Date.now() < deadline) await Bun.sleep(10)
      expect(heard.map((event) => event.id)).toEqual(ids)
      expect(heard.map((event) => JSON.parse(event.body).n)).toEqual([0, 1, 2, 3])
      stop()
    })

    it('keeps the newest events_retained and says a reader after a dropped id missed some', async () => {
      const log = await open({ events_retained: 3 })
      const ids: string[] = []
      for (let n = 0; n < 6; n++) ids.push(await log.append(JSON.stringify({ n })))
      const all = await log.read('0', 100)
      expect(all.events.map((event) => event.id)).toEqual(ids.slice(3))
      expect(all.missed).toBe(true)
      expect(await log.read(ids[1]!, 100)).toMatchObject({ missed: true })
      // The newest dropped id: nothing after it was dropped.
      expect(await log.read(ids[2]!, 100)).toEqual({ events: all.events, missed: false })
    })

    it('keeps at most events_retained_kb of events', async () => {
      const log = await open({ events_retained_kb: 1 })
      const body = JSON.stringify({ pad: 'x'.repeat(290) })
      const ids: string[] = []
      for (let n = 0; n < 10; n++) ids.push(await log.append(body))
      const kept = await log.read('0', 100)
      expect(kept.events.length).toBe(3)
      expect(kept.events.map((event) => event.id)).toEqual(ids.slice(7))
    })
  })

  describe('WebhookStore', () => {
    let backend: Backend | null = null
    const open = async () => (backend = await makeBackend()).webhooks
    afterEach(async () => {
      await backend?.close()
      backend = null
    })

    it('keeps subscriptions per tenant, bounded, and removes one with its deliveries', async () => {
      const store = await open()
      const [first, second, third] = [subscription('client:a'), subscription('client:a', ['job.created']), subscription('client:a')]
      expect(await store.createSubscription(first, 2)).toBe(true)
      expect(await store.createSubscription(second, 2)).toBe(true)
      expect(await store.createSubscription(third, 2)).toBe(false)
      expect(await store.getSubscription(third.id)).toBeNull()
      expect(await store.createSubscription(subscription('client:b'), 2)).toBe(true)
      expect((await store.listSubscriptions('client:a')).map((item) => item.id)).toEqual([first.id, second.id])
      expect(await store.getSubscription(second.id)).toEqual(second)
      expect(await store.addDelivery(delivery(first.id), 10)).toBe(true)
      expect(await store.deleteSubscription(first.id)).toBe(true)
      expect(await store.deleteSubscription(first.id)).toBe(false)
      expect(await store.claimDeliveries(Date.now(), Date.now() + 1000, 10)).toEqual([])
      expect(await store.addDelivery(delivery(first.id), 10)).toBe(false)
    })

    it('bounds the deliveries one subscription holds, pending and dead', async () => {
      const store = await open()
      const sub = subscription('client:a')
      await store.createSubscription(sub, 5)
      const [one, two] = [delivery(sub.id), delivery(sub.id)]
      expect(await store.addDelivery(one, 2)).toBe(true)
      expect(await store.addDelivery(two, 2)).toBe(true)
      expect(await store.addDelivery(delivery(sub.id), 2)).toBe(false)
      await store.failDelivery(one.id, 3, 'refused', null, Date.now())
      expect(await store.addDelivery(delivery(sub.id), 2)).toBe(false)
      await store.completeDelivery(two.id)
      expect(await store.addDelivery(delivery(sub.id), 2)).toBe(true)
    })

    it('leases a due delivery to one claim until its lease ends, then it is due again', async () => {
      const store = await open()
      const sub = subscription('client:a')
      await store.createSubscription(sub, 5)
      const due = delivery(sub.id)
      await store.addDelivery(due, 10)
      await store.addDelivery(delivery(sub.id, Date.now() + 60_000), 10)
      const now = Date.now()
      const [taken, other] = await Promise.all([store.claimDeliveries(now, now + 200, 10), store.claimDeliveries(now, now + 200, 10)])
      expect([...taken, ...other].map((item) => item.id)).toEqual([due.id])
      expect([...taken, ...other][0]).toMatchObject({ body: due.body, eventId: '1', attempts: 0, dueAt: now + 200 })
      expect(await store.claimDeliveries(now + 100, now + 400, 10)).toEqual([])
      expect((await store.claimDeliveries(now + 250, now + 400, 10)).map((item) => item.id)).toEqual([due.id])
      await store.completeDelivery(due.id)
      expect(await store.claimDeliveries(now + 1000, now + 2000, 10)).toEqual([])
    })

    it('retries a failed delivery when due, dead-letters it, and redelivers or drops a dead letter', async () => {
      const store = await open()
      const sub = subscription('client:a')
      await store.createSubscription(sub, 5)
      const [first, second] = [delivery(sub.id), delivery(sub.id)]
      await store.addDelivery(first, 10)
      await store.addDelivery(second, 10)
      const now = Date.now()
      await store.claimDeliveries(now, now + 1000, 10)
      await store.failDelivery(first.id, 1, 'HTTP 500', now + 50, now)
      expect((await store.claimDeliveries(now + 60, now + 1000, 10)).map((item) => ({ id: item.id, attempts: item.attempts, lastError: item.lastError }))).toEqual([
        { id: first.id, attempts: 1, lastError: 'HTTP 500' },
      ])
      await store.failDelivery(first.id, 2, 'connection refused', null, now + 70)
      await store.failDelivery(second.id, 1, 'timed out', null, now + 80)
      expect(await store.claimDeliveries(now + 5000, now + 6000, 10)).toEqual([])
      const dead = await store.deadLetters(sub.id)
      expect(dead.map((item) => ({ id: item.id, attempts: item.attempts, lastError: item.lastError, deadAt: item.deadAt }))).toEqual([
        { id: first.id, attempts: 2, lastError: 'connection refused', deadAt: now + 70 },
        { id: second.id, attempts: 1, lastError: 'timed out', deadAt: now + 80 },
      ])
      expect(await store.redeliver(sub.id, first.id, now + 100)).toBe(true)
      expect(await store.redeliver(sub.id, first.id, now + 100)).toBe(false)
      expect(await store.redeliver('other', second.id, now + 100)).toBe(false)
      expect(await store.dropDeadLetter(sub.id, second.id)).toBe(true)
      expect(await store.dropDeadLetter(sub.id, second.id)).toBe(false)
      expect(await store.deadLetters(sub.id)).toEqual([])
      expect(await store.claimDeliveries(now + 100, now + 1000, 10)).toEqual([expect.objectContaining({ id: first.id, attempts: 0, deadAt: null })])
    })
  })
}
