/** The one logger: JSON lines on stderr (and the log_file), filtered by level. */
import { mkdirSync, openSync, writeSync } from 'node:fs'
import { dirname } from 'node:path'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }

export interface Logger {
  readonly level: LogLevel
  debug(message: string, fields?: Record<string, unknown>): void
  info(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
  enabled(level: LogLevel): boolean
}

/** A logger writing one JSON object per line to `write` (stderr by default). */
export function createLogger(level: LogLevel, write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  const threshold = RANK[level]
  const emit = (at: Exclude<LogLevel, 'silent'>, message: string, fields?: Record<string, unknown>) => {
    if (RANK[at] < threshold) return
    write(JSON.stringify({ time: new Date().toISOString(), level: at, msg: message, ...fields }) + '\n')
  }
  return {
    level,
    debug: (message, fields) => emit('debug', message, fields),
    info: (message, fields) => emit('info', message, fields),
    warn: (message, fields) => emit('warn', message, fields),
    error: (message, fields) => emit('error', message, fields),
    enabled: (at) => RANK[at] >= threshold,
  }
}

/** A repeated log line, written at most once per interval; see `throttled`. */
export interface ThrottledLine {
  /** Writes the line, or counts it when one was written less than the interval ago. */
  note(fields: Record<string, unknown>): void
  /** Writes how many lines were left out since the last one written, if any (e.g. when their source goes away). */
  flush(fields: Record<string, unknown>): void
}

/**
 * A line that one peer can make Switchboard repeat (a worker's ignored frames): written at most once per
 * `intervalMs`, the next one written saying in `suppressed` how many were left out, so no peer can flood the log.
 */
export function throttled(write: (fields: Record<string, unknown>) => void, intervalMs: number, now: () => number = () => performance.now()): ThrottledLine {
  let last = Number.NEGATIVE_INFINITY
  let suppressed = 0
  const emit = (fields: Record<string, unknown>) => {
    write(suppressed > 0 ? { ...fields, suppressed } : fields)
    suppressed = 0
  }
  return {
    note(fields) {
      const at = now()
      if (at - last < intervalMs) {
        suppressed++
        return
      }
      last = at
      emit(fields)
    },
    flush(fields) {
      if (suppressed > 0) emit(fields)
    },
  }
}

/**
 * Where the switchboard command's log lines go: stderr, and also `file`
 * (appended to, its folder created) when given. Lines are written together
 * once per turn of the event loop: one line per request at info level would
 * otherwise cost one write call each. Whatever is pending is written before
 * the process exits. Throws when the file cannot be opened.
 */
export function logWriter(file?: string): (line: string) => void {
  let fd: number | undefined
  if (file !== undefined) {
    mkdirSync(dirname(file), { recursive: true })
    fd = openSync(file, 'a')
  }
  let pending = ''
  const flush = () => {
    if (pending === '') return
    const text = pending
    pending = ''
    process.stderr.write(text)
    if (fd === undefined) return
    try {
      writeSync(fd, text)
    } catch (error) {
      // A full disk or a vanished volume must not stop the server; stderr still has every line.
      fd = undefined
      process.stderr.write(`switchboard: stopped writing log_file ${file}: ${(error as Error).message}\n`)
    }
  }
  process.on('exit', flush)
  return (line) => {
    if (pending === '') setImmediate(flush)
    pending += line
  }
}
