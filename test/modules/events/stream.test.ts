/** One GET /events stream over a real memory log: bounded in what waits to be written to a reader that does not read. */
import { afterEach, expect, it } from 'bun:test'
import type { Backend } from '../../../src/backend/index'
import { EventService } from '../../../src/modules/events/service'
import { logger, makeBackend } from '../../support/backend'
import { sseEvents } from '../../support/http'

let backend: Backend | null = null
afterEach(async () => {
  await backend?.close()
  backend = null
})

it('ends a stream whose reader fell event_stream_buffer events behind, after the events it holds and an events.overflow event', async () => {
  backend = await makeBackend('memory')
  const service = new EventService(backend.eventLog, { pingSeconds: 60, streamBuffer: 3, retained: 100 }, logger)
  let closed = 0
  const stream = await service.open({ kind: 'client', id: 'acme' }, { types: null, resource: null }, null, { endsAt: null }, () => closed++)
  for (let n = 0; n < 6; n++) service.emit({ type: 'mailbox.created', tenant: 'acme', resource: { kind: 'mailbox', id: `m${n}` }, data: {} })
  await Bun.sleep(50)
  let text = ''
  for (let chunk = await stream.next(); chunk !== null; chunk = await stream.next()) text += chunk
  const events = sseEvents(text)
  expect(events.map((event) => event.event)).toEqual(['mailbox.created', 'mailbox.created', 'mailbox.created', 'events.overflow'])
  expect(events.slice(0, 3).map((event) => JSON.parse(event.data).resource.id)).toEqual(['m0', 'm1', 'm2'])
  expect(closed).toBe(1)
  await service.stop()
})
