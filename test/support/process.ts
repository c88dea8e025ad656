/** Starting Switchboard as a real process (from source or the compiled binary) for tests. */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'

export const ROOT = resolve(import.meta.dir, '../..')
export const BUN = process.execPath

export interface RunningProcess {
  process: ReturnType<typeof Bun.spawn>
  url: string
  /** Everything printed on stdout so far. */
  stdout(): string
  /** Everything printed on stderr so far. */
  stderr(): string
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number>
}

/** Starts `command` (which must print Switchboard's startup line) and resolves once it listens. */
export async function startProcess(command: string[], env: Record<string, string> = {}, options: { cwd?: string; timeoutMs?: number } = {}): Promise<RunningProcess> {
  const timeoutMs = options.timeoutMs ?? 15_000
  const child = Bun.spawn(command, { cwd: options.cwd ?? ROOT, env: { ...process.env, ...env }, stdout: 'pipe', stderr: 'pipe' })
  let out = ''
  let err = ''
  const decoder = new TextDecoder()
  const pump = async (stream: ReadableStream<Uint8Array>, append: (text: string) => void) => {
    for await (const chunk of stream) append(decoder.decode(chunk))
  }
  void pump(child.stdout as ReadableStream<Uint8Array>, (text) => (out += text))
  void pump(child.stderr as ReadableStream<Uint8Array>, (text) => (err += text))
  const started = Date.now()
  for (;;) {
    const match = /listening on (\S+)/.exec(out)
    if (match) {
      return {
        process: child,
        url: match[1]!,
        stdout: () => out,
        stderr: () => err,
        async stop(signal = 'SIGTERM') {
          child.kill(signal)
          return child.exited
        },
      }
    }
    if (child.exitCode !== null || Date.now() - started > timeoutMs) {
      child.kill('SIGKILL')
      throw new Error(`switchboard did not start (exit ${child.exitCode}): ${out}\n${err}`)
    }
    await Bun.sleep(20)
  }
}

/**
 * The command `npm run build` runs (package.json's `build` script), writing
 * the binary to `outfile` instead of dist/: tests and benchmarks build the
 * binary users build.
 */
export async function buildCommand(outfile: string): Promise<string[]> {
  const { scripts } = (await Bun.file(resolve(ROOT, 'package.json')).json()) as { scripts: { build: string } }
  const words = scripts.build.split(/\s+/)
  const at = words.indexOf('--outfile')
  if (words[0] !== 'bun' || at === -1) throw new Error(`package.json's build script is not "bun <bun build or scripts/build.ts> ... --outfile <path>": ${scripts.build}`)
  words[at + 1] = outfile
  return [BUN, ...words.slice(1).map((word) => (word.endsWith('.ts') ? resolve(ROOT, word) : word))]
}

/** Runs a command to completion and returns its exit code and output. */
export async function runToEnd(command: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn(command, { cwd: ROOT, env: { ...process.env, ...env }, stdout: 'pipe', stderr: 'pipe' })
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited])
  return { code, stdout, stderr }
}

/** Resident memory of a process, now and at its peak, in MiB (Linux: /proc/<pid>/status). */
export function memoryOf(pid: number): { now: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN)
  return { now: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 }
}
