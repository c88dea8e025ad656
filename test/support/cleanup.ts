/** Preloaded by bunfig.toml for every test run: what the tests leave in the temp folder, and the Sentinel groups they started, go when the run ends. */
import { afterAll } from 'bun:test'
import { stopSentinelGroups } from './sentinel'
import { removeTempDirs } from './temp'

afterAll(() => {
  stopSentinelGroups()
  removeTempDirs()
})
