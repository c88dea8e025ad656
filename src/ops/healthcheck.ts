/**
 * `switchboard healthcheck`: asks the server these settings describe for
 * GET /readyz on its own host (loopback when it listens on every address)
 * and exits 0 on a 200, 1 otherwise. It reads the same flags, environment
 * and config file as the server, so it follows the port and TLS it serves
 * with: the container image's HEALTHCHECK needs nothing else in the image.
 */
import http from 'node:http'
import https from 'node:https'
import type { Config } from '../config'

/** How long the check waits for an answer. */
const CHECK_TIMEOUT_MS = 2000

/** The address the server of `config` answers on from this host. */
export function readyUrl(config: Pick<Config, 'host' | 'port' | 'tls_cert'>): string {
  const wildcard = config.host === '0.0.0.0' || config.host === '::' || config.host === ''
  const host = wildcard ? '127.0.0.1' : config.host.includes(':') ? `[${config.host}]` : config.host
  return `${config.tls_cert ? 'https' : 'http'}://${host}:${config.port}/readyz`
}

/** GET /readyz of the server `config` describes: null when it answered 200, else why not. */
export function checkReady(config: Pick<Config, 'host' | 'port' | 'tls_cert'>): Promise<string | null> {
  const url = readyUrl(config)
  return new Promise((resolve) => {
    // The check asks this host's own server whether it is ready, not who it is: its certificate names the
    // public host, not the address asked here, so it is not verified.
    const request = (url.startsWith('https:') ? https : http).get(url, { timeout: CHECK_TIMEOUT_MS, rejectUnauthorized: false }, (response) => {
      response.resume()
      resolve(response.statusCode === 200 ? null : `${url} answered ${response.statusCode}`)
    })
    request.on('timeout', () => {
      request.destroy()
      resolve(`${url} did not answer within ${CHECK_TIMEOUT_MS / 1000} s`)
    })
    request.on('error', (error) => resolve(`${url}: ${error.message}`))
  })
}
