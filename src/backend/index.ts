/**
 * The backend plugin contract: a plugin is a module whose default export is
 * `{ name, options, create(options, context) }`; `create` returns a Backend.
 * The built-in plugins and the loader live in plugins/index.ts, so this
 * contract imports no plugin.
 *
 * A plugin file may instead default-export a function that receives the
 * PluginHost and returns the plugin. That is the form that works everywhere:
 * the compiled binary resolves no packages for a file it loads (`import
 * 'valibot'` fails there), and a plugin must throw Switchboard's own error
 * classes (copies bundled into the plugin are not recognised and would be
 * answered 500). So a plugin file imports nothing at run time (type-only
 * imports are erased) and takes valibot, the errors and the building blocks
 * from the host. test/fixtures/plugins/renamed-memory.ts is a worked example.
 */
import * as v from 'valibot'
import * as errors from '../errors'
import type { LocalEventBus } from './events'
import type { LocalInstances } from './instances'
import type { Waiters, takeOrWait } from './waiters'
import type { canAccess, isOwner, mailboxKey, mailboxStats, matchesAgent } from './mailboxes'
import type { MailboxStore } from './mailboxes'
import type { WorkerStore } from './workers'
import type { AgentStore } from './agents'
import type { EventBus } from './events'
import type { InstanceStore } from './instances'
import type { EventLogStore, WebhookStore } from './journal'
import type { Logger } from '../ops/logger'

export type * from './mailboxes'
export type * from './workers'
export type * from './agents'
export type * from './events'
export type * from './instances'
export type * from './journal'

export interface Backend {
  readonly name: string
  readonly mailboxes: MailboxStore
  readonly workers: WorkerStore
  readonly agents: AgentStore
  readonly events: EventBus
  /** The heartbeats of the instances sharing the store. */
  readonly instances: InstanceStore
  /** The retained event log (GET /events, resume by Last-Event-ID). */
  readonly eventLog: EventLogStore
  /** Webhook subscriptions and their pending and dead-lettered deliveries. */
  readonly webhooks: WebhookStore
  /** True while the store is reachable and consistent (drives /readyz). */
  ready(): Promise<boolean>
  /** Flush and release everything; waiters are woken. */
  close(): Promise<void>
  /** Store failures so far, kept by `createBackend` (a plugin leaves it out). */
  readonly failures?: BackendFailures
}

/** Store operations that failed other than by refusing the caller, by kind (only ever go up). */
export interface BackendFailures {
  /** UnavailableError: the store could not be reached (connection lost, Redis down). */
  unavailable: number
  /** Anything else that is not a client error: an error Redis or SQLite replied with, a closed database, a bug. */
  error: number
}

export interface PluginContext {
  logger: Logger
}

export interface BackendPlugin<Options = unknown> {
  name: string
  /** Valibot schema of the plugin's options; it is given the whole Switchboard config (plus `backend_options` from the config file) and picks its own keys. */
  options: v.GenericSchema<unknown, Options>
  create(options: Options, context: PluginContext): Backend | Promise<Backend>
}

/** What Switchboard lends a plugin file, so that the file needs no run-time imports of its own. */
export interface PluginHost {
  /** The valibot namespace, to write the plugin's `options` schema. */
  v: typeof v
  /** Switchboard's error classes; a backend throws these so every surface renders them. */
  errors: typeof errors
  /** A built-in plugin by name (`memory`, `sqlite`, …), to wrap or extend. */
  builtIn(name: string): Promise<BackendPlugin>
  /** The pieces single-process backends are built from. */
  LocalEventBus: typeof LocalEventBus
  LocalInstances: typeof LocalInstances
  Waiters: typeof Waiters
  takeOrWait: typeof takeOrWait
  mailboxKey: typeof mailboxKey
  canAccess: typeof canAccess
  isOwner: typeof isOwner
  matchesAgent: typeof matchesAgent
  mailboxStats: typeof mailboxStats
}

/** The default export of a plugin file that takes what it needs from the host. */
export type PluginFactory = (host: PluginHost) => BackendPlugin | Promise<BackendPlugin>

const STORE_METHODS: Record<'mailboxes' | 'workers' | 'agents' | 'events' | 'instances' | 'eventLog' | 'webhooks', readonly string[]> = {
  mailboxes: ['create', 'status', 'terminate', 'put', 'take', 'restore', 'discover', 'heartbeat', 'stats', 'share', 'unshare', 'shares', 'counts'],
  workers: ['upsertWorker', 'getWorker', 'listWorkers', 'updateWorker', 'setDraining', 'deleteWorker', 'reserveSlot', 'releaseSlot', 'assignSlot', 'createJob', 'getJob', 'listJobs', 'transitionJob', 'enqueueJob', 'claimQueuedJob', 'releaseQueuedJob', 'dequeueJob', 'listQueues', 'rememberDispatch', 'forgetDispatch'],
  agents: ['createWorkspace', 'getWorkspace', 'listWorkspaces', 'listChildren', 'updateWorkspace', 'removeWorkspace', 'rotateToken', 'workspaceOfToken', 'hasToken', 'recordActivity', 'listActivity', 'cardSigningKey'],
  events: ['publish', 'subscribe'],
  instances: ['beat', 'alive', 'leave'],
  eventLog: ['append', 'read', 'subscribe'],
  webhooks: ['createSubscription', 'listSubscriptions', 'getSubscription', 'deleteSubscription', 'addDelivery', 'claimDeliveries', 'completeDelivery', 'failDelivery', 'deadLetters', 'redeliver', 'dropDeadLetter'],
}

/** Methods a store may offer beyond the contract; used when present (WorkerStore.reserveAny, AgentStore.tokenFits). */
const OPTIONAL_STORE_METHODS: Record<'workers' | 'agents', readonly string[]> = {
  workers: ['reserveAny'],
  agents: ['tokenFits'],
}

/** Thrown when a backend cannot be loaded; the message says what is wrong. */
export class PluginError extends Error {}

/** Names the parts of a plugin export that break the contract (empty when it is sound). */
export function pluginProblems(candidate: unknown): string[] {
  if (typeof candidate !== 'object' || candidate === null) return ['the default export is neither an object { name, options, create } nor a function returning one']
  const plugin = candidate as Record<string, unknown>
  const problems: string[] = []
  if (typeof plugin.name !== 'string' || plugin.name === '') problems.push('`name` (a non-empty string) is missing')
  const options = plugin.options as Record<string, unknown> | undefined
  if (typeof options !== 'object' || options === null || options.kind !== 'schema') problems.push('`options` (a valibot schema) is missing')
  if (typeof plugin.create !== 'function') problems.push('`create(options, context)` is missing')
  return problems
}

/** Names the methods a created backend lacks (empty when it is complete). */
export function backendProblems(candidate: unknown): string[] {
  if (typeof candidate !== 'object' || candidate === null) return ['create() did not return an object']
  const backend = candidate as Record<string, Record<string, unknown> | unknown>
  const problems: string[] = []
  for (const method of ['ready', 'close']) {
    if (typeof backend[method] !== 'function') problems.push(`backend.${method}()`)
  }
  for (const [store, methods] of Object.entries(STORE_METHODS)) {
    const part = backend[store] as Record<string, unknown> | undefined
    if (typeof part !== 'object' || part === null) {
      problems.push(`backend.${store}`)
      continue
    }
    for (const method of methods) if (typeof part[method] !== 'function') problems.push(`backend.${store}.${method}()`)
  }
  return problems
}

/** The kind of store failure `error` is, or null for an ordinary refusal of the caller (an AppError below 500). */
function failureKind(error: unknown): keyof BackendFailures | null {
  if (error instanceof errors.UnavailableError) return 'unavailable'
  if (errors.isAppError(error) && error.status < 500) return null
  return 'error'
}

/**
 * The backend as Switchboard uses it: every contract method of each store
 * counts its failures into `failures` and rethrows them unchanged. This is
 * the one place every store call passes, whoever makes it (requests,
 * background timers, scrapes); the cost is one extra call and promise per
 * operation (about 50 ns on the memory backend's cheapest call, not
 * measurable on an exchange round trip through the app).
 * Each wrapped store inherits from the plugin's own, so anything else the
 * plugin exposes on it stays reachable.
 */
function countingFailures(backend: Backend): Backend {
  const failures: BackendFailures = { unavailable: 0, error: 0 }
  const fail = (error: unknown): never => {
    const kind = failureKind(error)
    if (kind !== null) failures[kind]++
    throw error
  }
  const wrap = <Store extends object>(store: Store, methods: readonly string[]): Store => {
    const wrapped = Object.create(store) as Record<string, unknown>
    for (const name of methods) {
      const method = (store as Record<string, ((...args: unknown[]) => unknown) | undefined>)[name]
      if (typeof method !== 'function') continue
      wrapped[name] = (...args: unknown[]) => {
        let result: unknown
        try {
          result = method.apply(store, args)
        } catch (error) {
          fail(error)
        }
        return result instanceof Promise ? result.catch(fail) : result
      }
    }
    return wrapped as Store
  }
  return {
    name: backend.name,
    mailboxes: wrap(backend.mailboxes, STORE_METHODS.mailboxes),
    workers: wrap(backend.workers, [...STORE_METHODS.workers, ...OPTIONAL_STORE_METHODS.workers]),
    agents: wrap(backend.agents, [...STORE_METHODS.agents, ...OPTIONAL_STORE_METHODS.agents]),
    events: wrap(backend.events, STORE_METHODS.events),
    instances: wrap(backend.instances, STORE_METHODS.instances),
    eventLog: wrap(backend.eventLog, STORE_METHODS.eventLog),
    webhooks: wrap(backend.webhooks, STORE_METHODS.webhooks),
    ready: () => backend.ready(),
    close: () => backend.close(),
    failures,
  }
}

/** Validates the options, creates the backend and checks it is complete. */
export async function createBackend(plugin: BackendPlugin, input: Record<string, unknown>, context: PluginContext): Promise<Backend> {
  const parsed = v.safeParse(plugin.options, input)
  if (!parsed.success) {
    const issue = parsed.issues[0]
    const key = issue.path?.map((item) => String(item.key)).join('.') ?? ''
    throw new PluginError(`backend "${plugin.name}": invalid option ${key ? `"${key}"` : ''}: ${issue.message}`)
  }
  const backend = await plugin.create(parsed.output, context)
  const problems = backendProblems(backend)
  if (problems.length > 0) {
    await (backend as Partial<Backend>)?.close?.()
    throw new PluginError(`backend plugin "${plugin.name}" created a backend that lacks: ${problems.join(', ')}`)
  }
  return countingFailures(backend)
}
