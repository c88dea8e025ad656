/** Switchboard's public API for hosts that embed it in their own Bun process. */
export { createApp, type CreateAppOptions, type SwitchboardApp, type SwitchboardRuntime } from './app'
export { serve, type RunningServer, type ServeOptions } from './server'
export { createBackend, loadPlugin, BUILT_IN_BACKENDS, type Backend, type BackendPlugin, type PluginContext } from './backend/index'
export { resolveConfig, ConfigSchema, type Config } from './config'
export { createLogger, type Logger, type LogLevel } from './logger'
export * from './errors'
