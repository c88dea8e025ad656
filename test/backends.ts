/**
 * Runs the API and wire-compatibility tests again on the SQLite and Redis
 * backends (`npm test` calls it after the main run); on Redis behind
 * Sentinels and on a Redis Cluster when named (`npm run test:replicated`,
 * which CI runs after `npm test`, keeping that under its 10 minutes). Without a Redis (or the redis-sentinel binary) that run is
 * skipped with the reason printed, except under CI=true. A Redis run must
 * leave no test key behind: every backend a test opens there is closed and
 * its prefix deleted. Each pass prints how long it took.
 */
import { keysMatching, testRedis } from './support/redis'
import { clusterBinaries, clusterKeysMatching, startRedisCluster, type RedisCluster } from './support/cluster'
import { masterUrl, sentinelBinaries, startSentinelGroup, type SentinelGroup } from './support/sentinel'

/** The keys under test prefixes (`sbtest-…`, random per backend) at `url`. */
const testKeys = (url: string) => keysMatching(url, 'sbtest-*')

const SUITES = ['test/modules', 'test/compat']
let failed = false
// `bun test/backends.ts redis-sentinel` runs the named passes only; the replicated ones run only when named.
const chosen = process.argv.slice(2)
for (const backend of ['sqlite', 'redis', 'redis-sentinel', 'redis-cluster'].filter((name) => (chosen.length === 0 ? name === 'sqlite' || name === 'redis' : chosen.includes(name)))) {
  const env: Record<string, string | undefined> = { ...process.env, TEST_BACKEND: backend }
  /** Where the run's keys are; null for SQLite. */
  let keysAt: (() => Promise<string>) | null = null
  let group: SentinelGroup | RedisCluster | null = null
  /** The test keys of the run: a Cluster's are on all its masters, in hash tags. */
  let testKeysNow: (() => Promise<string[]>) | null = null
  if (backend === 'redis') {
    const redis = await testRedis()
    if (redis.url === null) {
      if (process.env.CI === 'true') throw new Error(`the Redis run needs a Redis: ${redis.reason}`)
      console.warn(`skipping the Redis run of ${SUITES.join(' ')}: ${redis.reason}`)
      continue
    }
    env.REDIS_URL = redis.url
    keysAt = async () => redis.url!
  }
  if (backend === 'redis-sentinel') {
    const binaries = sentinelBinaries()
    if (typeof binaries === 'string') {
      if (process.env.CI === 'true') throw new Error(`the Redis Sentinel run needs ${binaries}`)
      console.warn(`skipping the Redis Sentinel run of ${SUITES.join(' ')}: ${binaries}`)
      continue
    }
    group = await startSentinelGroup()
    env.REDIS_SENTINELS = group.options.redis_sentinels
    env.REDIS_MASTER_NAME = group.options.redis_master_name
    const sentinels = group
    keysAt = async () => masterUrl(sentinels.sentinels)
  }
  if (backend === 'redis-cluster') {
    const binaries = clusterBinaries()
    if (typeof binaries === 'string') {
      if (process.env.CI === 'true') throw new Error(`the Redis Cluster run needs ${binaries}`)
      console.warn(`skipping the Redis Cluster run of ${SUITES.join(' ')}: ${binaries}`)
      continue
    }
    const cluster = await startRedisCluster()
    group = cluster
    env.REDIS_CLUSTER = cluster.nodes
    testKeysNow = () => clusterKeysMatching(cluster.nodes, '{sbtest-*')
  }
  if (keysAt !== null) {
    const at = keysAt
    testKeysNow = async () => testKeys(await at())
  }
  console.log(`\n${SUITES.join(' ')} on ${backend}`)
  const started = Date.now()
  const before = testKeysNow === null ? null : new Set(await testKeysNow())
  const run = Bun.spawn([process.execPath, 'test', '--timeout', '20000', ...SUITES], { env, stdout: 'inherit', stderr: 'inherit' })
  if ((await run.exited) !== 0) failed = true
  console.log(`${SUITES.join(' ')} on ${backend} took ${((Date.now() - started) / 1000).toFixed(1)} s`)
  if (testKeysNow !== null && before !== null) {
    const left = (await testKeysNow()).filter((key) => !before.has(key))
    if (left.length > 0) {
      console.error(`the ${backend} run left ${left.length} test keys behind, e.g. ${left.slice(0, 5).join(', ')}: a backend a test opened was not closed`)
      failed = true
    }
  }
  group?.stop()
}
process.exit(failed ? 1 : 0)
