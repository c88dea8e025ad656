/**
 * Runs the API and wire-compatibility tests again on the SQLite and Redis
 * backends (`npm test` calls it after the main run). Without a Redis the
 * Redis run is skipped with the reason printed, except under CI=true. The
 * Redis run must leave no test key behind: every backend a test opens there
 * is closed and its prefix deleted.
 */
import { keysMatching, testRedis } from './support/redis'

/** The keys under test prefixes (`sbtest-…`, random per backend) at `url`. */
const testKeys = (url: string) => keysMatching(url, 'sbtest-*')

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
  const before = backend === 'redis' ? new Set(await testKeys(env.REDIS_URL!)) : null
  const run = Bun.spawn([process.execPath, 'test', '--timeout', '20000', ...SUITES], { env, stdout: 'inherit', stderr: 'inherit' })
  if ((await run.exited) !== 0) failed = true
  if (before !== null) {
    const left = (await testKeys(env.REDIS_URL!)).filter((key) => !before.has(key))
    if (left.length > 0) {
      console.error(`the Redis run left ${left.length} test keys behind, e.g. ${left.slice(0, 5).join(', ')}: a backend a test opened was not closed`)
      failed = true
    }
  }
}
process.exit(failed ? 1 : 0)
