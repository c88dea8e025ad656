/** Preloaded by bunfig.toml for every test run: what the tests leave in the temp folder goes when the run ends. */
import { afterAll } from 'bun:test'
import { removeTempDirs } from './temp'

afterAll(removeTempDirs)
