/**
 * The layout stays a layering: no import circle in src/ or plugins/ (type
 * imports and dynamic imports count too), and the store contract imports no
 * plugin. dpdm reads the imports; the test only judges them.
 */
import { describe, expect, it } from 'bun:test'
import { parseCircular, parseDependencyTree } from 'dpdm'
import { join } from 'node:path'

const ROOT = join(import.meta.dir, '..', '..')

async function importsOf(patterns: string[]) {
  return parseDependencyTree(patterns, { context: ROOT, cwd: ROOT, transform: false, skipDynamicImports: false })
}

describe('the import graph', () => {
  it('has no circle in src/ and plugins/', async () => {
    const tree = await importsOf(['./src/**/*.ts', './plugins/**/*.ts'])
    expect(Object.keys(tree).length).toBeGreaterThan(60)
    expect(parseCircular(tree, false)).toEqual([])
  }, 20_000)

  it('keeps the store contract (src/backend) free of plugins and of the HTTP edge', async () => {
    const tree = await importsOf(['./src/backend/**/*.ts'])
    const crossings = Object.entries(tree).flatMap(([file, dependencies]) =>
      (dependencies ?? []).filter((dependency) => dependency.id !== null && /^(plugins|src\/http|src\/modules)\//.test(dependency.id)).map((dependency) => `${file} → ${dependency.id}`),
    )
    expect(crossings).toEqual([])
  }, 20_000)
})
