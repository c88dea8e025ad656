#!/usr/bin/env bun
/** The switchboard command: parse config → load backend plugin → createApp → listen. */
import { createApp } from './app'
import { createBackend, PluginError } from './backend/index'
import { loadPlugin } from '../plugins/index'
import { checkBackendOptions, ConfigError, helpText, loadConfig, printConfig } from './config'
import { checkReady } from './ops/healthcheck'
import { createLogger, logWriter } from './ops/logger'
import { serve } from './http/node'
import { VERSION, versionLine } from './version'

async function main(): Promise<number> {
  let loaded: Awaited<ReturnType<typeof loadConfig>>
  try {
    loaded = await loadConfig(process.argv.slice(2), process.env)
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`switchboard: ${error.message}\n`)
      return 2
    }
    throw error
  }
  if (loaded.command === 'help') {
    process.stdout.write(helpText(VERSION) + '\n')
    return 0
  }
  if (loaded.command === 'version') {
    process.stdout.write(`${versionLine()}\n`)
    return 0
  }
  const { config } = loaded
  if (loaded.command === 'healthcheck') {
    const problem = await checkReady(config)
    if (problem !== null) process.stderr.write(`switchboard healthcheck: ${problem}\n`)
    return problem === null ? 0 : 1
  }
  let app: ReturnType<typeof createApp>
  let logger: ReturnType<typeof createLogger>
  try {
    const plugin = await loadPlugin(config.backend)
    checkBackendOptions(plugin.name, plugin.options, config.backend_options)
    if (loaded.command === 'config') {
      process.stdout.write(printConfig(config, loaded.sources) + '\n')
      return 0
    }
    try {
      logger = createLogger(config.log_level, logWriter(config.log_file))
    } catch (error) {
      throw new ConfigError(`invalid setting "log_file" (--log-file / SWITCHBOARD_LOG_FILE): cannot open ${config.log_file}: ${(error as Error).message}`)
    }
    const backend = await createBackend(plugin, { ...config, ...config.backend_options }, { logger })
    app = createApp({ backend, config, logger })
  } catch (error) {
    if (error instanceof PluginError || error instanceof ConfigError) {
      process.stderr.write(`switchboard: ${error.message}\n`)
      return 2
    }
    throw error
  }
  const runtime = app.decorator.switchboard
  let server: Awaited<ReturnType<typeof serve>>
  try {
    server = await serve(app, { host: config.host, port: config.port, tlsCert: config.tls_cert, tlsKey: config.tls_key })
  } catch (error) {
    process.stderr.write(`switchboard: cannot listen on ${config.host}:${config.port}: ${(error as Error).message}\n`)
    await runtime.close()
    return 2
  }
  // The signal handlers are in place before the line that says Switchboard is up: a supervisor that stops it
  // as soon as it reads that line gets a clean shutdown, not the default exit on SIGTERM.
  const stopped = new Promise<number>((resolve) => {
    let stopping = false
    const shutdown = async (signal: string) => {
      if (stopping) {
        process.stderr.write(`switchboard: ${signal} again, exiting now\n`)
        process.exit(1)
      }
      stopping = true
      logger.info('shutting down', { signal })
      try {
        await server.stop()
        await runtime.close()
        resolve(0)
      } catch (error) {
        logger.error('shutdown failed', { error: String(error) })
        resolve(1)
      }
    }
    process.on('SIGTERM', () => void shutdown('SIGTERM'))
    process.on('SIGINT', () => void shutdown('SIGINT'))
  })
  process.stdout.write(`switchboard ${VERSION} listening on ${server.url} (backend ${runtime.backend.name}, docs ${server.url}/swagger)\n`)
  return stopped
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`switchboard: ${(error as Error)?.stack ?? error}\n`)
    process.exit(1)
  },
)
