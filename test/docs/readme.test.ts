/**
 * The README as a newcomer runs it: in a fresh copy of the repository, with
 * only Node and npm, every shell block it shows, in order, as written.
 *
 * The convention, a fence's info string (a fence opens at the start of a line
 * with three backticks):
 * - `sh runnable`: runs to its end in `bash -euo pipefail`; it must exit 0
 *   within a minute (so its `curl`s say `-f`: an HTTP error fails the block).
 * - `sh runnable server`: starts Switchboard and keeps it running; the test
 *   waits for its startup line (`listening on <url>`), and stops it (SIGTERM
 *   to its process group) when the next server block starts or at the end.
 * - `sh runnable background`: a helper that keeps running (a worker); the test
 *   waits for its first line of output and stops it with the current server.
 * Any other shell block (sh, bash, shell, console) in README.md fails the
 * test: the README shows no command that is not run. Examples that cannot run
 * here (a Python client, a release download) are not shell, or live in docs/.
 *
 * Substitutions: the blocks are written for Switchboard's default address,
 * 127.0.0.1:8700. Each runs with SWITCHBOARD_PORT set to a free loopback port
 * and every `8700` of its text replaced by that port; nothing else changes.
 *
 * The environment is a newcomer's: the files git would commit (tracked, and
 * untracked ones not ignored) as the working tree holds them, copied into a
 * temporary folder with no node_modules; PATH without any node_modules/.bin
 * and with `bun` shadowed by a command that fails, so only Node, npm and the
 * system's tools are there until `npm install` brings the rest; none of the
 * caller's npm_*, BUN_*, SWITCHBOARD_* variables. npm runs with
 * npm_config_offline=true, so `npm install` never reaches the network: it
 * installs from npm's cache (which `npm ci` fills), through a cache folder of
 * its own that shares the cached packages, so npx's links and npm's logs stay
 * in the temporary folder. Only loopback traffic.
 *
 * The links of README.md and docs/ (files and #anchors) are checked too.
 */
import { describe, expect, it } from 'bun:test'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { delimiter, dirname, join, resolve } from 'node:path'
import { LAUNCHER_FILES } from '../../scripts/release'
import { ROOT } from '../support/process'
import { tempDir } from '../support/temp'
import { freePort } from '../support/wait'

interface Block {
  /** 1-based line of the opening fence. */
  line: number
  info: string
  text: string
}

/** The fenced blocks of a markdown text, with their info strings. */
function fencedBlocks(markdown: string): Block[] {
  const blocks: Block[] = []
  let open: { line: number; info: string; lines: string[] } | null = null
  markdown.split('\n').forEach((line, index) => {
    if (open === null) {
      const fence = /^```(.*)$/.exec(line)
      if (fence) open = { line: index + 1, info: fence[1]!.trim(), lines: [] }
    } else if (/^```\s*$/.test(line)) {
      blocks.push({ line: open.line, info: open.info, text: open.lines.join('\n') })
      open = null
    } else open.lines.push(line)
  })
  if (open !== null) throw new Error(`the fence opened at line ${(open as { line: number }).line} is never closed`)
  return blocks
}

const SHELL = new Set(['sh', 'bash', 'shell', 'console', 'zsh'])
type Kind = 'run' | 'server' | 'background'

/** How a block is run, or null when it is no shell block; throws for a shell block not marked runnable. */
function kindOf(block: Block): Kind | null {
  const [language = '', ...marks] = block.info.split(/\s+/)
  if (!SHELL.has(language)) return null
  const mark = marks.join(' ')
  if (mark === 'runnable') return 'run'
  if (mark === 'runnable server') return 'server'
  if (mark === 'runnable background') return 'background'
  throw new Error(`README.md line ${block.line}: a shell block must be marked "runnable", "runnable server" or "runnable background" (see test/docs/readme.test.ts), not "${block.info}"`)
}

/** The block's text for a server on `port` (see the header). */
const substitute = (text: string, port: number) => text.replace(/\b8700\b/g, String(port))

const README = join(ROOT, 'README.md')
const DOCS = join(ROOT, 'docs')

// ---------------------------------------------------------------- links

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  const text = heading.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
  return text
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-')
}

/** The anchors of a markdown file's headings (fenced code skipped), repeats numbered as GitHub does. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  let fenced = false
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced
    const heading = fenced ? null : /^#{1,6} (.*)$/.exec(line)
    if (!heading) continue
    const base = slug(heading[1]!)
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    anchors.add(count === 0 ? base : `${base}-${count}`)
  }
  return anchors
}

/** The relative link targets of a markdown file, outside code. */
function linksOf(markdown: string): { line: number; target: string }[] {
  const links: { line: number; target: string }[] = []
  let fenced = false
  markdown.split('\n').forEach((line, index) => {
    if (line.startsWith('```')) fenced = !fenced
    if (fenced) return
    for (const match of line.replace(/`[^`]*`/g, '').matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = match[1]!
      if (!/^[a-z][a-z0-9+.-]*:/i.test(target)) links.push({ line: index + 1, target })
    }
  })
  return links
}

/** Whether the npm launcher package holds this file, so that a link to it works from the installed README too. */
const shippedWithLauncher = (file: string) => LAUNCHER_FILES.some((shipped) => file === join(ROOT, shipped) || file.startsWith(join(ROOT, shipped) + '/'))

const markdownFiles = () => [README, ...readdirSync(DOCS).filter((name) => name.endsWith('.md')).map((name) => join(DOCS, name))]

describe('the README and docs/', () => {
  it('link only to files that exist, ship in the npm package beside the README, and to headings that exist', () => {
    const broken: string[] = []
    let checked = 0
    for (const file of markdownFiles()) {
      const text = readFileSync(file, 'utf8')
      for (const { line, target } of linksOf(text)) {
        checked++
        const [path = '', anchor] = target.split('#')
        const goal = path === '' ? file : resolve(dirname(file), decodeURI(path))
        const where = `${file.slice(ROOT.length + 1)}:${line} → ${target}`
        if (!goal.startsWith(ROOT + '/') || !existsSync(goal)) broken.push(`${where}: no such file`)
        else if (!shippedWithLauncher(goal)) broken.push(`${where}: not in the npm package (scripts/release.ts LAUNCHER_FILES)`)
        else if (anchor !== undefined && !(goal.endsWith('.md') && anchorsOf(readFileSync(goal, 'utf8')).has(anchor))) broken.push(`${where}: no such heading`)
      }
    }
    expect(broken).toEqual([])
    expect(checked).toBeGreaterThan(30)
  })

  it('every docs page is linked from the README and links back to it', () => {
    const readme = readFileSync(README, 'utf8')
    const pages = readdirSync(DOCS).filter((entry) => entry.endsWith('.md'))
    expect(pages.length).toBeGreaterThan(5)
    expect(pages.filter((name) => !readme.includes(`](docs/${name})`))).toEqual([])
    expect(pages.filter((name) => !readFileSync(join(DOCS, name), 'utf8').includes('](../README.md)'))).toEqual([])
  })

  it('marks every shell block of the README runnable, the Quick start first', () => {
    const blocks = fencedBlocks(readFileSync(README, 'utf8'))
    const kinds = blocks.map(kindOf).filter((kind) => kind !== null)
    expect(kinds[0]).toBe('server')
    const quickStart = blocks.find((block) => kindOf(block) !== null)!
    expect(quickStart.text).toContain('npm install')
    expect(quickStart.text).toContain('npm start')
  })
})

// ---------------------------------------------------------------- running the README

/** The files a clone of the working tree, committed as it is, would hold, copied into a new folder. */
function freshCopy(): string {
  const listed = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
  if (listed.status !== 0) throw new Error(`git ls-files failed (the README test copies the repository's files): ${listed.stderr}`)
  const copy = join(tempDir('readme'), 'switchboard')
  for (const file of listed.stdout.split('\0').filter(Boolean)) {
    const from = join(ROOT, file)
    if (!existsSync(from)) continue // deleted in the working tree
    mkdirSync(dirname(join(copy, file)), { recursive: true })
    copyFileSync(from, join(copy, file))
    chmodSync(join(copy, file), statSync(from).mode & 0o777)
  }
  return copy
}

/** PATH with no node_modules/.bin and a `bun` that fails, and an environment without the caller's npm, Bun and Switchboard settings. */
function newcomerEnv(home: string, port: number): Record<string, string> {
  const shadow = join(home, 'no-bun')
  mkdirSync(shadow, { recursive: true })
  for (const name of ['bun', 'bunx']) {
    writeFileSync(join(shadow, name), `#!/bin/sh\necho "${name}: not installed (the README promises Node and npm only)" >&2\nexit 127\n`)
    chmodSync(join(shadow, name), 0o755)
  }
  const path = (process.env.PATH ?? '').split(delimiter).filter((entry) => entry !== '' && !entry.includes('node_modules') && !existsSync(join(entry, 'bun')))
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || /^(npm_|bun_|switchboard_)/i.test(key) || ['TEST_BACKEND', 'NODE_ENV', 'NODE_OPTIONS', 'INIT_CWD', 'NODE'].includes(key)) continue
    env[key] = value
  }
  // npm's cache: the user's cached packages, seen through a folder of this run's own.
  const cache = spawnSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8', env: { ...env, PATH: path.join(delimiter) } })
  if (cache.status !== 0) throw new Error(`npm is not on PATH (${path.join(delimiter)}): ${cache.stderr}`)
  const npmCache = join(home, 'npm-cache')
  mkdirSync(npmCache)
  symlinkSync(join(cache.stdout.trim(), '_cacache'), join(npmCache, '_cacache'))
  return { ...env, PATH: [shadow, ...path].join(delimiter), SWITCHBOARD_PORT: String(port), npm_config_offline: 'true', npm_config_cache: npmCache, npm_config_update_notifier: 'false' }
}

interface Running {
  child: ChildProcess
  output: () => string
  exited: Promise<number | null>
}

function start(text: string, cwd: string, env: Record<string, string>): Running {
  const child = spawn('bash', ['-euo', 'pipefail', '-c', text], { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)))
  return { child, output: () => output, exited }
}

/** Stops a block and everything it started (its process group), SIGKILL after 10 s. */
async function stop(running: Running): Promise<void> {
  const group = -running.child.pid!
  const alive = () => {
    try {
      process.kill(group, 0)
      return true
    } catch {
      return false
    }
  }
  if (!alive()) return
  process.kill(group, 'SIGTERM')
  for (const deadline = Date.now() + 10_000; alive() && Date.now() < deadline; ) await Bun.sleep(50)
  if (alive()) process.kill(group, 'SIGKILL')
  while (alive()) await Bun.sleep(20)
}

/** Waits until `ready(output)` holds; throws when the block exits first or `timeoutMs` passes. */
async function until(running: Running, ready: (output: string) => boolean, timeoutMs: number, what: string): Promise<void> {
  let code: number | null | undefined
  void running.exited.then((exit) => (code = exit))
  for (const deadline = Date.now() + timeoutMs; !ready(running.output()); ) {
    if (code !== undefined) throw new Error(`exited (${code}) before ${what}`)
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs / 1000} s`)
    await Bun.sleep(50)
  }
}

const tail = (text: string) => (text.length > 4000 ? `…${text.slice(-4000)}` : text)

/** Runs `blocks` (README order) in `copy`; returns how long each took. Throws with the block's line and output at the first that fails. */
async function runBlocks(blocks: Block[], copy: string, env: Record<string, string>, port: number): Promise<{ line: number; kind: Kind; seconds: number }[]> {
  const timings: { line: number; kind: Kind; seconds: number }[] = []
  let helpers: Running[] = []
  const stopAll = async () => {
    for (const running of helpers.reverse()) await stop(running)
    helpers = []
  }
  try {
    for (const block of blocks) {
      const kind = kindOf(block)
      if (kind === null) continue
      const started = performance.now()
      if (kind === 'server') await stopAll()
      const running = start(substitute(block.text, port), copy, env)
      try {
        if (kind === 'run') {
          const code = await Promise.race([running.exited, Bun.sleep(60_000).then(() => 'timeout' as const)])
          if (code !== 0) throw new Error(code === 'timeout' ? 'still running after 60 s' : `exit ${code}`)
          await stop(running) // what it left running in the background
        } else {
          helpers.push(running)
          if (kind === 'server') {
            await until(running, (output) => /listening on \S+/.test(output), 300_000, 'startup line ("listening on")')
            const url = /listening on (\S+)/.exec(running.output())![1]
            if (url !== `http://127.0.0.1:${port}`) throw new Error(`listens on ${url}, not on http://127.0.0.1:${port}`)
          } else await until(running, (output) => output.trim() !== '', 30_000, 'first line of output')
        }
      } catch (error) {
        await stop(running)
        const hint = running.output().includes('ENOTCACHED') ? "\n(npm's cache lacks a package this install needs, and this test installs offline: run `npm ci` once to fill it)" : ''
        throw new Error(`README.md line ${block.line} (${block.info}): ${(error as Error).message}\n--- block as run ---\n${substitute(block.text, port)}\n--- its output ---\n${tail(running.output())}${hint}`)
      }
      timings.push({ line: block.line, kind, seconds: (performance.now() - started) / 1000 })
    }
  } finally {
    await stopAll()
  }
  return timings
}

describe('the README, run as written in a fresh copy with only Node and npm', () => {
  it('fails on a block that fails, naming its line, and on a server block that exits before listening', async () => {
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' }
    const port = await freePort()
    await expect(runBlocks([{ line: 7, info: 'sh runnable', text: 'true\nfalse\ntrue' }], ROOT, env, port)).rejects.toThrow(/README.md line 7 \(sh runnable\): exit 1/)
    await expect(runBlocks([{ line: 9, info: 'sh runnable server', text: 'echo "no server here"' }], ROOT, env, port)).rejects.toThrow(/line 9 .*exited \(0\) before startup line/)
  })

  it("gives the blocks no Bun of the caller's: only what npm install brings", async () => {
    const home = tempDir('readme-env')
    const port = await freePort()
    const env = newcomerEnv(home, port)
    expect(env.PATH!.split(delimiter).filter((entry) => entry.includes('node_modules'))).toEqual([])
    await expect(runBlocks([{ line: 3, info: 'sh runnable', text: 'node --version\nnpm --version\nbun --version' }], home, env, port)).rejects.toThrow(/exit 127[\s\S]*bun: not installed/)
  })

  it(
    'installs, starts and answers every command it shows',
    async () => {
      const copy = freshCopy()
      const port = await freePort()
      const env = newcomerEnv(dirname(copy), port)
      const timings = await runBlocks(fencedBlocks(readFileSync(join(copy, 'README.md'), 'utf8')), copy, env, port)
      process.stderr.write(`README blocks (line, kind, seconds): ${timings.map((t) => `${t.line} ${t.kind} ${t.seconds.toFixed(1)}`).join('; ')}\n`)
      expect(timings.length).toBeGreaterThan(5)
      expect(timings[0]!.kind).toBe('server')
    },
    { timeout: 400_000 },
  )
})
