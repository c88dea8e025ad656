/**
 * Builds the single binary: `bun build --compile` with the code compiled
 * ahead to bytecode, laid out in the order the binary runs it at startup.
 * That order is recorded by the binary itself: a first build is started
 * once (memory backend, a free port, one /healthz), writes the functions it
 * ran as it ran them, and the binary is built again with that order, so the
 * pages a start touches sit together and fewer of the binary's pages become
 * resident. The order is recorded afresh at every build, so it always
 * matches the code.
 *
 *   bun scripts/build.ts [--outfile dist/switchboard] [--no-order] [--no-bytecode]
 *
 * `--no-order` and `--no-bytecode` build the variants the footprint
 * benchmark compares the shipped build with.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const ROOT = resolve(import.meta.dir, '..')
const ENTRY = resolve(ROOT, 'src/main.ts')

interface BuildOptions {
  outfile: string
  bytecode: boolean
  order: boolean
}

function parseArgs(args: string[]): BuildOptions {
  const options: BuildOptions = { outfile: 'dist/switchboard', bytecode: true, order: true }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === '--outfile' && args[i + 1] !== undefined) options.outfile = args[++i]!
    else if (arg.startsWith('--outfile=')) options.outfile = arg.slice('--outfile='.length)
    else if (arg === '--no-order') options.order = false
    else if (arg === '--no-bytecode') options.bytecode = false
    else throw new Error(`unknown argument ${JSON.stringify(arg)}; usage: bun scripts/build.ts [--outfile PATH] [--no-order] [--no-bytecode]`)
  }
  return options
}

/** Runs `bun build --compile` into `outfile`; with `order`, lays the bytecode out by that order file. */
function compile(outfile: string, bytecode: boolean, order?: string): void {
  const command = [process.execPath, 'build', ENTRY, '--compile', '--minify', ...(bytecode ? ['--bytecode'] : []), ...(order ? [`--bytecode-order=${order}`] : []), '--outfile', outfile]
  const built = Bun.spawnSync(command, { cwd: ROOT, stdout: 'inherit', stderr: 'inherit' })
  if (built.exitCode !== 0) throw new Error(`bun build failed (exit ${built.exitCode}): ${command.join(' ')}`)
}

/**
 * Starts the binary once with BUN_BYTECODE_ORDER_OUT set, waits for its
 * listening line, asks /healthz once and stops it; resolves once the order
 * file is written. The environment is cleared of any SWITCHBOARD_* setting,
 * so the run is the default start.
 */
async function recordStartupOrder(binary: string, orderFile: string): Promise<void> {
  const env: Record<string, string> = { BUN_BYTECODE_ORDER_OUT: orderFile }
  for (const name of ['PATH', 'HOME', 'TMPDIR']) if (process.env[name] !== undefined) env[name] = process.env[name]!
  const child = Bun.spawn([binary, '--host', '127.0.0.1', '--port', '0', '--log-level', 'error'], { env, stdout: 'pipe', stderr: 'pipe' })
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  try {
    const reader = (child.stdout as ReadableStream<Uint8Array>).getReader()
    const decoder = new TextDecoder()
    let text = ''
    let url: string | undefined
    while (url === undefined) {
      const { value, done } = await reader.read()
      if (done) throw new Error(`the binary exited before it listened: ${text}${await new Response(child.stderr).text()}`)
      text += decoder.decode(value, { stream: true })
      url = /listening on (\S+)/.exec(text)?.[1]
    }
    const health = await fetch(`${url}/healthz`)
    await health.arrayBuffer()
    if (health.status !== 200) throw new Error(`/healthz answered ${health.status}`)
    child.kill('SIGTERM')
    const code = await child.exited
    if (code !== 0) throw new Error(`the binary exited with ${code} on SIGTERM`)
  } finally {
    clearTimeout(killer)
    child.kill('SIGKILL')
  }
  if (!(await Bun.file(orderFile).exists())) throw new Error('the binary wrote no startup order')
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2))
  const outfile = resolve(ROOT, options.outfile)
  compile(outfile, options.bytecode)
  if (!options.bytecode || !options.order) return
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-build-'))
  try {
    const orderFile = join(dir, 'startup.order')
    await recordStartupOrder(outfile, orderFile).catch((error: Error) => {
      throw new Error(`could not record the startup order: ${error.message} (bun scripts/build.ts --no-order builds without it)`)
    })
    compile(outfile, true, orderFile)
    process.stdout.write(`laid the bytecode out in startup order: ${outfile}\n`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

await main().catch((error: Error) => {
  process.stderr.write(`build: ${error.message}\n`)
  process.exit(1)
})
