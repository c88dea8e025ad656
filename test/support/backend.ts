/**
 * Fresh backends for tests. API-level tests call `makeTestBackend()`, which
 * honours TEST_BACKEND (memory | sqlite | redis), so the same suite runs on
 * every plugin: `TEST_BACKEND=redis bun test`.
 */
import { createBackend, type Backend } from '../../src/backend/index'
import { loadPlugin } from '../../plugins/index'
import { createLogger } from '../../src/ops/logger'
import { deleteKeys, randomPrefix, testRedis } from './redis'
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
    default:
      return {}
  }
}

/** A fresh backend of the named plugin. */
export async function makeBackend(name: string, options: Record<string, unknown> = {}): Promise<Backend> {
  const plugin = await loadPlugin(name)
  const isolated = await isolatedOptions(name)
  const backend = await createBackend(plugin, { ...isolated, ...options }, { logger })
  if (name !== 'redis' || options.redis_prefix !== undefined) return backend
  // The random prefix is this backend's alone: its keys go when it closes.
  const { redis_url: url, redis_prefix: prefix } = isolated as { redis_url: string; redis_prefix: string }
  return {
    ...backend,
    async close() {
      await backend.close()
      await deleteKeys(url, prefix)
    },
  }
}

/** The plugin API-level tests run on. */
export const TEST_BACKEND = process.env.TEST_BACKEND ?? 'memory'

export function makeTestBackend(options: Record<string, unknown> = {}): Promise<Backend> {
  return makeBackend(TEST_BACKEND, options)
}
