import { describe, expect, it } from 'bun:test'
import * as v from 'valibot'
import { fixtures } from '../../support/academy'
import { canonicalEntityId, canonicalMessageHeader, EntityIdSchema, MailboxBody, MessageSchema, quickMailboxBody, quickReceiveBody, quickSendBody, ReceiveBody, SendBody } from '../../../src/modules/exchange/model'

const UID = '0b6c1f7e-4d2a-4c1e-9f3b-2a7d5e8c9b10'
const TAG = '5f0e3d2c-1b4a-4987-8a6b-7c5d4e3f2a10'
const agent = { uid: UID, name: null, role: 'agent' as const }
const user = { uid: '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d', name: 'alice', role: 'user' }
const message = (header: Record<string, unknown>, body: unknown = { kind: 'action-request', action: 'echo' }) => ({
  header: { src: user, dest: agent, tag: TAG, label: null, kind: 'request', protocol_version: '1', ...header },
  body,
})

/** The schema's header for `data`, or null where the schema refuses it. */
const schemaHeader = (data: unknown) => {
  const parsed = v.safeParse(MessageSchema, data)
  return parsed.success ? parsed.output.header : null
}

describe('the canonical message check', () => {
  it('accepts a message as Academy writes it and gives the header the schema gives', () => {
    const messages = [
      message({}),
      message({ kind: 'response', label: TAG }),
      message({ protocol_version: undefined }),
      message({ protocol_version: null }),
      message({ protocol_version: '1000.0.0', additional_header_info: 'test' }),
      // The body is relayed as sent, so any value is taken as it is.
      ...['text', 7, null, [1, 'two'], {}, { action: 'echo' }, { kind: 7 }].map((body) => message({}, body)),
    ]
    for (const data of messages) {
      const header = canonicalMessageHeader(JSON.parse(JSON.stringify(data)))
      expect(header).not.toBeNull()
      expect(header).toEqual(schemaHeader(JSON.parse(JSON.stringify(data)))!)
    }
  })

  it('leaves everything else to the schema, which then decides and words the error', () => {
    const others: unknown[] = [
      null,
      [],
      'text',
      { header: message({}).header },
      message({ tag: TAG.toUpperCase() }),
      message({ tag: 'not-a-uuid' }),
      message({ label: undefined }),
      message({ label: 'x' }),
      message({ kind: 'event' }),
      message({ protocol_version: 2 }),
      message({ src: { uid: UID.toUpperCase(), name: null, role: 'agent' } }),
      message({ src: { uid: UID, name: null } }),
      message({ src: { uid: UID, role: 'agent' } }),
      message({ dest: { uid: UID, name: null, role: 'agent', extra: true } }),
      message({ dest: { uid: UID, name: 3, role: 'agent' } }),
      message({ dest: { uid: UID, name: null, role: 'robot' } }),
      JSON.parse(`{"header":{"src":${JSON.stringify(user)},"dest":{"uid":"${UID}","name":null,"role":"agent","__proto__":1},"tag":"${TAG}","label":null,"kind":"request"},"body":{"kind":"k"}}`),
    ]
    for (const data of others) expect(canonicalMessageHeader(data)).toBeNull()
    // Some of them the schema still accepts (a missing label or role has a default; an upper-case UUID is lowered):
    expect(schemaHeader(message({ tag: TAG.toUpperCase() }))?.tag).toBe(TAG)
    expect(schemaHeader(message({ src: { uid: UID, name: null } }))?.src).toEqual(agent)
    expect(schemaHeader(message({ kind: 'event' }))).toBeNull()
    expect(schemaHeader({ header: message({}).header })).toBeNull()
  })

  it("reads each message of the fixtures as Academy's Message does: the same verdict, the same header", () => {
    for (const { case: name, message: text, accepted, header } of fixtures.message_acceptance) {
      const data = JSON.parse(text)
      const read = schemaHeader(data)
      expect([name, read === null ? null : { ...read, protocol_version: read.protocol_version === undefined ? '1' : read.protocol_version }]).toEqual([name, accepted ? header! : null])
      // The fast path reads no message differently: it gives the schema's header, or leaves the message to it.
      const quick = canonicalMessageHeader(data)
      if (quick !== null) expect([name, quick]).toEqual([name, read!])
    }
  })

  it("reads each spelling of a mailbox id as Academy does, as the canonical id", () => {
    for (const { case: name, mailbox, accepted, id } of fixtures.mailbox_acceptance) {
      const parsed = v.safeParse(EntityIdSchema, JSON.parse(mailbox))
      expect([name, parsed.success ? parsed.output : null]).toEqual([name, accepted ? id! : null])
    }
  })

  it('accepts an EntityId as Academy writes it, as the schema does, and nothing looser', () => {
    for (const id of [agent, user]) expect(canonicalEntityId(JSON.parse(JSON.stringify(id)))).toEqual(v.parse(EntityIdSchema, id))
    for (const id of [{ uid: UID, name: null }, { uid: UID.toUpperCase(), name: null, role: 'agent' }, { ...agent, extra: 1 }, { ...agent, name: undefined }, [UID], null]) {
      expect(canonicalEntityId(id)).toBeNull()
    }
  })
})

describe('the quick body checks', () => {
  const mailbox = JSON.stringify(agent)
  // Bodies as Academy sends them, looser ones the schemas still accept, and ones they refuse.
  const bodies: unknown[] = [
    { message: JSON.stringify(message({})) },
    { message: '' },
    { message: 'x', extra: 1 },
    { mailbox },
    { mailbox, timeout: 2.5 },
    { mailbox, timeout: null },
    { mailbox, timeout: 0 },
    { mailbox, timeout: '2' },
    { mailbox, timeout: true },
    { mailbox: 3 },
    { message: 3 },
    { message: null },
    [{ message: 'x' }],
    ['x'],
    'message',
    null,
    {},
    JSON.parse('{"message":"x","__proto__":{"message":1}}'),
  ]
  const cases = [
    ['SendBody', SendBody, quickSendBody],
    ['MailboxBody', MailboxBody, quickMailboxBody],
    ['ReceiveBody', ReceiveBody, quickReceiveBody],
  ] as const

  for (const [name, schema, quick] of cases) {
    it(`give what ${name} gives, or leave the body to it`, () => {
      let taken = 0
      for (const data of bodies) {
        const fast = quick(data)
        if (fast === null) continue
        taken++
        const parsed = v.safeParse(schema as v.GenericSchema, data)
        expect(parsed.success).toBe(true)
        expect(fast).toStrictEqual(parsed.output as never)
      }
      // Each check takes the shapes Academy sends, not only the odd ones.
      expect(taken).toBeGreaterThanOrEqual(name === 'ReceiveBody' ? 4 : 3)
    })
  }

  it('refuse what the schemas refuse, leaving the wording of the error to them', () => {
    for (const data of [{ mailbox, timeout: '2' }, { mailbox: 3 }, [{ mailbox }], null]) {
      expect(quickReceiveBody(data)).toBeNull()
      expect(v.safeParse(ReceiveBody, data).success).toBe(false)
    }
    for (const data of [{ message: 3 }, { message: null }, ['x'], 'message']) {
      expect(quickSendBody(data)).toBeNull()
      expect(v.safeParse(SendBody, data).success).toBe(false)
    }
  })
})
