/**
 * The Swagger UI as a person sees it: headless Chromium, with every request
 * that does not go to Switchboard itself refused, loads /swagger and shows
 * the exchange operations. Runs when Chromium is installed (Debian package
 * `chromium`, or CHROMIUM_PATH) and says so when it is not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'
import { startServer, type TestServer } from '../support/app'

const executablePath = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path))
if (!executablePath) console.warn('Swagger UI browser test did not run: no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)')

describe.skipIf(!executablePath)('the Swagger UI page', () => {
  let running: TestServer
  let browser: Browser

  beforeAll(async () => {
    running = await startServer()
    browser = await chromium.launch({
      executablePath,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    })
  }, 30_000)

  afterAll(async () => {
    await browser?.close()
    await running?.close()
  })

  it('renders every exchange operation with the network cut off', async () => {
    const page = await browser.newPage()
    const refused: string[] = []
    await page.route('**/*', (route) => {
      const url = route.request().url()
      if (url.startsWith(running.url)) return route.continue()
      refused.push(url)
      return route.abort('internetdisconnected')
    })
    await page.goto(`${running.url}/swagger`)
    await page.waitForSelector('.opblock', { timeout: 15_000 })
    const operations = await page.$$eval('.opblock-summary-path', (nodes) => nodes.map((node) => node.textContent?.replace(/\u200b/g, '').trim()))
    for (const path of ['/mailbox', '/message', '/mailbox/listen', '/discover', '/mailbox/heartbeat', '/mailbox/stats', '/mailbox/share']) {
      expect(operations).toContain(path)
    }
    expect(await page.title()).toBe('Switchboard')
    expect(refused).toEqual([])
    await page.close()
  }, 30_000)
})
