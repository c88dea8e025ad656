import { describe } from 'bun:test'
import { testBackend } from './conformance'
import { makeBackend } from '../support/backend'
import { testRedis } from '../support/redis'

const redis = await testRedis()

describe.skipIf(redis.url === null)('redis backend', () => {
  testBackend(() => makeBackend('redis'))
})
