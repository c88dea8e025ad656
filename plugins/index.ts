/**
 * The built-in backend plugins and the loader: a name (`memory`, `sqlite`,
 * `redis`) or a path to a plugin file (`.ts` or `.js`), loaded at startup.
 * It lives beside the plugins, outside the contract (src/backend), so that
 * the plugins can import the contract without an import circle.
 */
import * as v from 'valibot'
import * as errors from '../src/errors'
import { PluginError, pluginProblems, type BackendPlugin, type PluginFactory, type PluginHost } from '../src/backend/index'
import { LocalEventBus } from '../src/backend/events'
import { LocalInstances } from '../src/backend/instances'
import { Waiters, takeOrWait } from '../src/backend/waiters'
import { canAccess, isOwner, mailboxKey, mailboxStats, matchesAgent } from '../src/backend/mailboxes'

const BUILT_IN: Record<string, () => Promise<{ default: unknown }>> = {
  memory: () => import('./memory/index'),
  sqlite: () => import('./sqlite/index'),
  redis: () => import('./redis/index'),
}

export const BUILT_IN_BACKENDS = Object.keys(BUILT_IN)

const host: PluginHost = {
  v,
  errors,
  async builtIn(name) {
    if (!BUILT_IN[name]) throw new PluginError(`unknown built-in backend "${name}": use one of ${BUILT_IN_BACKENDS.join(', ')}`)
    return loadPlugin(name)
  },
  LocalEventBus,
  LocalInstances,
  Waiters,
  takeOrWait,
  mailboxKey,
  canAccess,
  isOwner,
  matchesAgent,
  mailboxStats,
}

/** Resolves a built-in name or a file path to a plugin, checking it against the contract. */
export async function loadPlugin(spec: string): Promise<BackendPlugin> {
  let module: { default?: unknown }
  const builtIn = BUILT_IN[spec]
  if (builtIn) {
    module = await builtIn()
  } else if (/[\\/.]/.test(spec)) {
    const path = await import('node:path')
    const file = path.resolve(process.cwd(), spec)
    try {
      module = await import(file)
    } catch (error) {
      throw new PluginError(`cannot load backend plugin ${file}: ${(error as Error).message}`)
    }
  } else {
    throw new PluginError(`unknown backend "${spec}": use one of ${BUILT_IN_BACKENDS.join(', ')} or a path to a plugin file`)
  }
  let exported = module.default
  if (typeof exported === 'function') {
    try {
      exported = await (exported as PluginFactory)(host)
    } catch (error) {
      throw new PluginError(`backend plugin "${spec}" failed while building itself: ${(error as Error)?.message ?? String(error)}`)
    }
  }
  const problems = pluginProblems(exported)
  if (problems.length > 0) throw new PluginError(`backend plugin "${spec}" does not follow the plugin contract: ${problems.join('; ')}`)
  return exported as BackendPlugin
}

