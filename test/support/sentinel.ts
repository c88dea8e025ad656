/**
 * A Redis Sentinel group for tests, from Debian's redis-server and
 * redis-sentinel: 1 master, 1 replica and 3 Sentinels (quorum 2) on free
 * loopback ports, their files in a temp folder. Failover is quick: a master
 * silent for 1 s is down. Never touches 127.0.0.1:6379.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import Redis from 'ioredis'
import { spawnRedisServer } from './redis'
import { tempDir } from './temp'
import { eventually, freePort } from './wait'

/** The name the Sentinels know the master by. */
export const MASTER_NAME = 'sbtest'

export interface SentinelGroup {
  /** `host:port,…` of the Sentinels, as redis_sentinels takes it. */
  sentinels: string
  /** Backend options that reach this group's master through its Sentinels. */
  options: { redis_sentinels: string; redis_master_name: string }
  /** The port of the server the Sentinels name master now. */
  masterPort(): Promise<number>
  /** The port of the server the Sentinels do not name master (the replica). */
  replicaPort(): Promise<number>
  /** Sends `signal` to the server on `port` (SIGSTOP and SIGCONT: a replica that falls behind for a while). */
  signal(port: number, signal: 'SIGSTOP' | 'SIGCONT'): void
  /** Asks the Sentinels for a failover while the master stays up (as for maintenance); resolves with the old master's port. */
  switchMaster(): Promise<number>
  /** SIGKILLs the master the Sentinels name now; resolves with its port once it is dead. */
  killMaster(): Promise<number>
  /** Starts a server again on `port` (empty, as after a crash without persistence); the Sentinels make it a replica of the master they name. */
  restart(port: number): Promise<void>
  /** Resolves with the new master's port once the Sentinels name a master other than `port`. */
  failedOver(port: number, timeoutMs?: number): Promise<number>
  stop(): void
}

/** The groups started and not yet stopped. */
const running = new Set<SentinelGroup>()

/** Stops every group still running (the preloaded test/support/cleanup.ts calls it when the run ends). */
export function stopSentinelGroups(): void {
  for (const group of running) group.stop()
}

/** The binaries, or why the group cannot start. */
export function sentinelBinaries(): { server: string; sentinel: string } | string {
  const server = Bun.which('redis-server')
  const sentinel = Bun.which('redis-sentinel')
  if (server && sentinel) return { server, sentinel }
  return `no ${server ? 'redis-sentinel' : 'redis-server'} binary on PATH (Debian packages redis-server and redis-sentinel)`
}

/** Asks the Sentinel at `host`:`port` a question; resolves with its answer. */
async function askSentinel<T>(host: string, port: number, ask: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ host, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  // A Sentinel that is down rejects `connect`; the error event would be reported unhandled too.
  client.on('error', () => {})
  try {
    await client.connect()
    return await ask(client)
  } finally {
    client.disconnect()
  }
}

/** The master's fields as `SENTINEL MASTER` lists them. */
async function masterInfo(port: number): Promise<Record<string, string>> {
  const fields = (await askSentinel('127.0.0.1', port, (client) => client.call('SENTINEL', 'MASTER', MASTER_NAME))) as string[]
  const info: Record<string, string> = {}
  for (let i = 0; i + 1 < fields.length; i += 2) info[fields[i]!] = fields[i + 1]!
  return info
}

/** The URL of the master `name` as the first Sentinel of `sentinels` (host:port,…) that answers names it. */
export async function masterUrl(sentinels: string, name = MASTER_NAME): Promise<string> {
  for (const sentinel of sentinels.split(',')) {
    const [host, port] = sentinel.split(':')
    try {
      const [masterHost, masterPort] = (await askSentinel(host!, Number(port), (client) => client.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name))) as [string, string]
      return `redis://${masterHost}:${masterPort}`
    } catch {
      // That Sentinel may be down: ask the next.
    }
  }
  throw new Error(`no Sentinel of ${sentinels} names master "${name}"`)
}

/** Starts a master, its replica and 3 Sentinels; resolves once every Sentinel sees the replica and the two other Sentinels. */
export async function startSentinelGroup(): Promise<SentinelGroup> {
  const binaries = sentinelBinaries()
  if (typeof binaries === 'string') throw new Error(binaries)
  const dir = tempDir('sentinel')
  const servers = new Map<number, ReturnType<typeof Bun.spawn>>()
  const sentinels: ReturnType<typeof Bun.spawn>[] = []
  let group: SentinelGroup | null = null
  const stop = () => {
    for (const child of [...servers.values(), ...sentinels]) child.kill('SIGKILL')
    if (group) running.delete(group)
  }
  try {
    const quick = ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0', '--dir', dir]
    const master = await spawnRedisServer(binaries.server, undefined, quick)
    if (!master) throw new Error('the master redis-server did not start')
    servers.set(master.port, master.process)
    const replica = await spawnRedisServer(binaries.server, undefined, [...quick, '--replicaof', '127.0.0.1', String(master.port)])
    if (!replica) throw new Error('the replica redis-server did not start')
    servers.set(replica.port, replica.process)
    const ports: number[] = []
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const file = join(dir, `sentinel-${port}.conf`)
      writeFileSync(
        file,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${master.port} 2`,
          `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
          `sentinel failover-timeout ${MASTER_NAME} 5000`,
          `sentinel parallel-syncs ${MASTER_NAME} 1`,
          '',
        ].join('\n'),
      )
      const child = Bun.spawn([binaries.sentinel, file], { stdout: 'ignore', stderr: 'ignore' })
      process.on('exit', () => child.kill())
      sentinels.push(child)
      ports.push(port)
    }
    const seesAll = async (port: number) => {
      try {
        const info = await masterInfo(port)
        return info['num-slaves'] === '1' && info['num-other-sentinels'] === '2'
      } catch {
        return false
      }
    }
    await eventually(async () => (await Promise.all(ports.map(seesAll))).every(Boolean), 60_000, 'every Sentinel sees the replica and the other Sentinels')
    const list = ports.map((port) => `127.0.0.1:${port}`).join(',')
    const masterPort = async () => Number(new URL(await masterUrl(list)).port)
    group = {
      sentinels: list,
      options: { redis_sentinels: list, redis_master_name: MASTER_NAME },
      masterPort,
      async replicaPort() {
        const master = await masterPort()
        const replica = [...servers.keys()].find((port) => port !== master)
        if (replica === undefined) throw new Error('the group has no replica running')
        return replica
      },
      signal(port, signal) {
        servers.get(port)?.kill(signal)
      },
      async switchMaster() {
        const port = await masterPort()
        await askSentinel('127.0.0.1', ports[0]!, (client) => client.call('SENTINEL', 'FAILOVER', MASTER_NAME))
        return port
      },
      async killMaster() {
        const port = await masterPort()
        const child = servers.get(port)
        if (!child) throw new Error(`the master on port ${port} is not one this group started`)
        child.kill('SIGKILL')
        await child.exited
        servers.delete(port)
        return port
      },
      async restart(port) {
        const started = await spawnRedisServer(binaries.server, port, quick)
        if (!started) throw new Error(`redis-server did not start again on port ${port}`)
        servers.set(port, started.process)
      },
      async failedOver(port, timeoutMs = 30_000) {
        let now = port
        await eventually(
          async () => {
            now = await masterPort()
            return now !== port
          },
          timeoutMs,
          `the Sentinels promote a master other than ${port}`,
        )
        return now
      },
      stop,
    }
    running.add(group)
    return group
  } catch (error) {
    stop()
    throw error
  }
}
