/**
 * Runs the API and wire-compatibility tests again on the SQLite and Redis
 * backends (`npm test` calls it after the main run). Without a Redis the
 * Redis run is skipped with the reason printed, except under CI=true.
 */
import { testRedis } from './support/redis'

const SUITES = ['test/modules', 'test/compat']
let failed = false
for (const backend of ['sqlite', 'redis']) {
  const env: Record<string, string | undefined> = { ...process.env, TEST_BACKEND: backend }
  if (backend === 'redis') {
    const redis = await testRedis()
    if (redis.url === null) {
      if (process.env.CI === 'true') throw new Error(`the Redis run needs a Redis: ${redis.reason}`)
      console.warn(`skipping the Redis run of ${SUITES.join(' ')}: ${redis.reason}`)
      continue
    }
    env.REDIS_URL = redis.url
  }
  console.log(`\n${SUITES.join(' ')} on ${backend}`)
  const run = Bun.spawn([process.execPath, 'test', ...SUITES], { env, stdout: 'inherit', stderr: 'inherit' })
  if ((await run.exited) !== 0) failed = true
}
process.exit(failed ? 1 : 0)
