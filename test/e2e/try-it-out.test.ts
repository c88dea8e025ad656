/**
 * Swagger UI's "Try it out" as a person uses it, in headless Chromium with
 * every request that does not go to Switchboard refused: create a mailbox,
 * send to it and receive from it (the exchange's query form, since a browser
 * sends no body on GET); authorize with a tokens-file token and see 403 on
 * another client's mailbox; create a workspace with the admin token; and
 * dispatch a job to a worker the test connects. Screenshots go to a temp
 * folder; any error text the UI shows fails the test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { bodies, idJson } from '../support/academy'
import { startServer, writeTokensFile, type TestServer } from '../support/app'
import { rawRequest } from '../support/http'
import { tempDir } from '../support/temp'
import { TestWorker } from '../modules/workers/worker'

const executablePath = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((path) => existsSync(path))
if (!executablePath && process.env.CI === 'true') throw new Error('the Swagger UI browser test needs Chromium under CI (apt-get install chromium)')
if (!executablePath) console.warn('Swagger UI try-it-out test did not run: no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)')

const ADMIN = 'try-admin-token'
// The mailbox the docs' examples name (src/modules/exchange/model.ts), so "Try it out" works with what it fills in.
const EXAMPLE_AGENT = '{"uid":"6f1c2a0e-3b4d-4e5f-8a9b-0c1d2e3f4a5b","name":null,"role":"agent"}'

describe.skipIf(!executablePath)('Swagger UI, try it out', () => {
  let running: TestServer
  let browser: Browser
  let page: Page
  const shots = tempDir('swagger-shots')
  const refused: string[] = []

  beforeAll(async () => {
    const tokens = writeTokensFile([
      { token: 'alice-token', client: 'alice' },
      { token: 'bob-token', client: 'bob' },
    ])
    running = await startServer({ auth: 'token', tokens_file: tokens, admin_token: ADMIN, dispatch_timeout_ms: 5000 })
    browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] })
    page = await browser.newPage({ viewport: { width: 1280, height: 2000 } })
    await page.route('**/*', (route) => {
      const url = route.request().url()
      if (url.startsWith(running.url)) return route.continue()
      refused.push(url)
      return route.abort('internetdisconnected')
    })
    await page.goto(`${running.url}/swagger/`)
    await page.waitForSelector('.opblock', { timeout: 15_000 })
  }, 30_000)

  afterAll(async () => {
    await browser?.close()
    await running?.close()
  })

  /** Opens an operation, fills its fields (by parameter name, or `body` for the request body), executes it, and returns the status shown. */
  async function tryOut(method: string, path: string, fields: Record<string, string> = {}, shot: string): Promise<number> {
    const block = page.locator(`.opblock-${method.toLowerCase()}`).filter({ has: page.locator(`.opblock-summary-path[data-path="${path}"]`) }).first()
    if (!(await block.locator('.try-out').isVisible())) await block.locator('.opblock-summary').click()
    const tryButton = block.locator('button.try-out__btn')
    if ((await tryButton.textContent())?.includes('Try it out')) await tryButton.click()
    for (const [name, value] of Object.entries(fields)) {
      if (name === 'body') await block.locator('textarea.body-param__text').fill(value)
      else await block.locator(`tr[data-param-name="${name}"] input, tr[data-param-name="${name}"] textarea`).first().fill(value)
    }
    await block.locator('button.execute').click()
    const status = block.locator('.live-responses-table .response .response-col_status').first()
    await status.waitFor({ timeout: 10_000 })
    await page.screenshot({ path: join(shots, `${shot}.png`) })
    const errors = await block.locator('.errors-wrapper, .validation-errors').allTextContents()
    expect(errors.map((text) => text.trim()).filter((text) => text !== '')).toEqual([])
    const shown = Number((await status.textContent())?.trim())
    if (Number.isNaN(shown)) throw new Error(`${method} ${path}: the UI shows no status: ${(await block.locator('.live-responses-table').textContent())?.slice(0, 300)}`)
    // Cleared, so the next execution of the same operation waits for its own answer.
    const clear = block.locator('button.btn-clear')
    if (await clear.isVisible()) await clear.click()
    return shown
  }

  async function authorize(values: Record<string, string>) {
    await page.locator('button.authorize').first().click()
    for (const [scheme, value] of Object.entries(values)) {
      const section = page.locator('.auth-container').filter({ hasText: scheme })
      const logout = section.locator('button', { hasText: 'Logout' })
      if (await logout.isVisible()) await logout.click()
      await section.locator('input').first().fill(value)
      await section.locator('button.authorize').click()
    }
    await page.locator('.modal-ux button.btn-done').first().click()
  }

  it('creates a mailbox, sends to it and receives from it as alice, and is refused on bob\'s', async () => {
    await authorize({ clientToken: 'alice-token' })
    expect(await tryOut('POST', '/mailbox', {}, 'create')).toBe(200)
    expect(await tryOut('PUT', '/message', {}, 'send')).toBe(200)
    expect(await tryOut('GET', '/message', { mailbox: EXAMPLE_AGENT, timeout: '2' }, 'receive')).toBe(200)
    // Bob's mailbox, asked for with alice's token.
    const bobs = { uid: crypto.randomUUID(), name: null, role: 'agent' as const }
    expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(bobs), headers: { authorization: 'Bearer bob-token' } })).status).toBe(200)
    expect(await tryOut('GET', '/mailbox/stats', { mailbox: idJson(bobs) }, 'refused')).toBe(403)
  }, 60_000)

  it('creates a workspace with the admin token', async () => {
    await authorize({ adminToken: ADMIN })
    expect(await tryOut('POST', '/workspaces', {}, 'workspace')).toBe(201)
  }, 30_000)

  it('dispatches a job to a worker the test connected', async () => {
    const worker = await TestWorker.connect(running.url, { agentName: 'support-agent', token: 'alice-token', autoRun: true })
    try {
      await authorize({ videoSdkToken: 'alice-token' })
      expect(await tryOut('POST', '/v2/agent/dispatch', {}, 'dispatch')).toBe(200)
      expect(worker.assignments.length).toBe(1)
    } finally {
      await worker.close()
    }
    expect(refused).toEqual([])
  }, 30_000)
})
