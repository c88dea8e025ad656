/**
 * Fresh backends for tests. API-level tests call `makeTestBackend()`, which
 * honours TEST_BACKEND (memory | sqlite | redis | redis-sentinel |
 * redis-cluster), so the same suite runs on every plugin:
 * `TEST_BACKEND=redis bun test`. redis-sentinel is the redis plugin
 * reaching its master through Sentinels: those of REDIS_SENTINELS (with
 * REDIS_MASTER_NAME) if set, else a group this test process starts
 * (test/support/sentinel.ts). redis-cluster is the redis plugin on a Redis
 * Cluster: REDIS_CLUSTER's nodes if set, else a cluster this test process
 * starts (test/support/cluster.ts).
 */
import { createBackend, type Backend } from '../../src/backend/index'
import { loadPlugin } from '../../plugins/index'
import { createLogger } from '../../src/ops/logger'
import { deleteKeys, randomPrefix, testRedis } from './redis'
import { deleteClusterKeys, startRedisCluster, type RedisCluster } from './cluster'
import { MASTER_NAME, masterUrl, startSentinelGroup, type SentinelGroup } from './sentinel'
import { tempDir } from './temp'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'

export const logger = createLogger((process.env.TEST_LOG_LEVEL as 'debug' | undefined) ?? 'silent')

let sqliteFiles: string | null = null

/** One temp folder per test process for SQLite files, removed when the run ends. */
function sqliteDirectory(): string {
  sqliteFiles ??= tempDir('sqlite')
  return sqliteFiles
}

let sentinelGroup: Promise<SentinelGroup> | null = null

/** The Sentinels tests use: REDIS_SENTINELS's, else a group started once per test process. */
async function testSentinels(): Promise<{ redis_sentinels: string; redis_master_name: string }> {
  if (process.env.REDIS_SENTINELS) return { redis_sentinels: process.env.REDIS_SENTINELS, redis_master_name: process.env.REDIS_MASTER_NAME ?? MASTER_NAME }
  sentinelGroup ??= startSentinelGroup()
  return (await sentinelGroup).options
}

let redisCluster: Promise<RedisCluster> | null = null

/** The Redis Cluster nodes tests use: REDIS_CLUSTER's, else a cluster started once per test process. */
async function testCluster(): Promise<string> {
  if (process.env.REDIS_CLUSTER) return process.env.REDIS_CLUSTER
  redisCluster ??= startRedisCluster()
  return (await redisCluster).nodes
}

/** The plugin a test backend name stands for. */
const pluginOf = (name: string) => (name === 'redis-sentinel' || name === 'redis-cluster' ? 'redis' : name)

/** Plugin options that isolate one backend from every other (temp file, random key prefix). */
async function isolatedOptions(name: string): Promise<Record<string, unknown>> {
  switch (name) {
    case 'sqlite':
      return { db: join(sqliteDirectory(), `${randomUUID()}.db`) }
    case 'redis': {
      const redis = await testRedis()
      if (redis.url === null) throw new Error(`backend redis needs a Redis: ${redis.reason}`)
      return { redis_url: redis.url, redis_prefix: randomPrefix() }
    }
    case 'redis-sentinel':
      return { ...(await testSentinels()), redis_prefix: randomPrefix() }
    case 'redis-cluster':
      return { redis_cluster: await testCluster(), redis_prefix: randomPrefix() }
    default:
      return {}
  }
}

/** A fresh backend of the named plugin. */
export async function makeBackend(name: string, options: Record<string, unknown> = {}): Promise<Backend> {
  const plugin = await loadPlugin(pluginOf(name))
  const isolated = await isolatedOptions(name)
  const backend = await createBackend(plugin, { ...isolated, ...options }, { logger })
  if (pluginOf(name) !== 'redis' || options.redis_prefix !== undefined) return backend
  // The random prefix is this backend's alone: its keys go when it closes.
  const { redis_prefix: prefix } = isolated as { redis_prefix: string }
  const url = name === 'redis' ? (isolated.redis_url as string) : null
  return {
    ...backend,
    async close() {
      await backend.close()
      if (name === 'redis-cluster') return void (await deleteClusterKeys(isolated.redis_cluster as string, prefix))
      await deleteKeys(url ?? (await masterUrl(isolated.redis_sentinels as string, isolated.redis_master_name as string)), prefix)
    },
  }
}

/** The plugin API-level tests run on. */
export const TEST_BACKEND = process.env.TEST_BACKEND ?? 'memory'

export function makeTestBackend(options: Record<string, unknown> = {}): Promise<Backend> {
  return makeBackend(TEST_BACKEND, options)
}
