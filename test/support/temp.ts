/**
 * Temporary folders for tests, removed when the whole run ends: bunfig.toml
 * preloads test/support/cleanup.ts, whose afterAll removes them (bun test
 * runs no `exit` handlers of its own, so nothing else would).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const made: string[] = []

/** A new empty folder under the system's temp folder, named `switchboard-<name>-…`. */
export function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `switchboard-${name}-`))
  made.push(dir)
  return dir
}

/** Removes every folder `tempDir` made so far. */
export function removeTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true })
}
