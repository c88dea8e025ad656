/**
 * A route's `quickBody` reads the usual shape of its body faster than its
 * schema; it must never disagree with the schema. For every route that has
 * one, generated bodies (the usual shape, near misses, anything) give either
 * null (left to the schema) or exactly what the schema gives.
 */
import { describe, expect, it } from 'bun:test'
import fc from 'fast-check'
import * as v from 'valibot'
import { makeApp } from '../support/app'

// What JSON.parse can give, which is all a quick reader is ever handed: no NaN, no Infinity.
const number = fc.double({ noNaN: true, noDefaultInfinity: true })
const field = fc.oneof(fc.string(), fc.integer(), number, fc.constant(null), fc.boolean(), fc.array(fc.string(), { maxLength: 2 }), fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }))
/** Bodies shaped like the exchange's: the usual keys with values of every type, extra keys, or any JSON at all. */
const body = fc.oneof(
  fc.record({ mailbox: fc.oneof(fc.string(), field), timeout: fc.option(fc.oneof(number, field), { nil: undefined }) }, { requiredKeys: ['mailbox'] }),
  fc.record({ message: fc.oneof(fc.string(), field) }),
  fc.dictionary(fc.constantFrom('mailbox', 'message', 'timeout', 'agent', 'extra'), field),
  fc.jsonValue(),
)

describe('quick body readers', () => {
  it('agree with their route\'s schema on every generated body', async () => {
    const app = await makeApp()
    try {
      const routes = app.decorator.switchboard.pipeline.routes.filter((route) => route.quickBody !== undefined)
      expect(routes.length).toBeGreaterThanOrEqual(8)
      for (const route of routes) {
        const schema = route.body as v.GenericSchema
        fc.assert(
          fc.property(body, (data) => {
            const quick = route.quickBody!(structuredClone(data))
            if (quick === null) return true
            const parsed = v.safeParse(schema, structuredClone(data))
            expect({ route: `${route.method} ${route.path}`, data, parsed: parsed.success ? parsed.output : 'refused' }).toEqual({ route: `${route.method} ${route.path}`, data, parsed: quick })
            return true
          }),
          { numRuns: 2000 },
        )
      }
    } finally {
      await app.decorator.switchboard.close()
    }
  })
})
