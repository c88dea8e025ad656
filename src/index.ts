/** Switchboard's public API for hosts that embed it in their own Bun process. */
export { createApp, type CreateAppOptions, type SwitchboardApp, type SwitchboardRuntime } from './app'
export { serve, type RunningServer, type ServeOptions } from './http/node'
export { createBackend, type Backend, type BackendPlugin, type PluginContext } from './backend/index'
export { loadPlugin, BUILT_IN_BACKENDS } from '../plugins/index'
export { resolveConfig, ConfigSchema, type Config } from './config'
export { createLogger, type Logger, type LogLevel } from './ops/logger'
export * from './errors'
export { route, type AnyRoute, type Route, type RouteRequest } from './http/route'
