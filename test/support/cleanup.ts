/** Preloaded by bunfig.toml for every test run: what the tests leave in the temp folder, and the Sentinel groups and Redis Clusters they started, go when the run ends. */
import { afterAll } from 'bun:test'
import { stopRedisClusters } from './cluster'
import { stopSentinelGroups } from './sentinel'
import { removeTempDirs } from './temp'

afterAll(() => {
  stopSentinelGroups()
  stopRedisClusters()
  removeTempDirs()
})
