/**
 * A Redis Cluster for tests, from Debian's redis-server: 3 masters and 3
 * replicas (`redis-cli --cluster create … --cluster-replicas 1`) on free
 * loopback ports, their files in a temp folder. Failover is quick: a master
 * silent for 1 s (cluster-node-timeout) is replaced by its replica. Never
 * touches 127.0.0.1:6379.
 */
import Redis from 'ioredis'
import { keysMatching, spawnRedisServer } from './redis'
import { tempDir } from './temp'
import { eventually, freePort } from './wait'

export interface RedisCluster {
  /** `host:port,…` of every node, as redis_cluster takes it. */
  nodes: string
  /** Backend options that reach this cluster. */
  options: { redis_cluster: string }
  /** The port of the master serving the slot of `key` now. */
  masterOf(key: string): Promise<number>
  /** SIGKILLs the master serving `key`; resolves with its port once it is dead. */
  killMasterOf(key: string): Promise<number>
  /** The port of the replica of the master serving `key`. */
  replicaOf(key: string): Promise<number>
  /** Sends `signal` to the node on `port` (SIGSTOP and SIGCONT: a replica that falls behind for a while). */
  signal(port: number, signal: 'SIGSTOP' | 'SIGCONT'): void
  /** Starts the node on `port` again, empty, with its cluster file: it rejoins as a replica of the master that replaced it. */
  restart(port: number): Promise<void>
  /** Resolves with the new master's port once a node other than `port` serves the slot of `key`. */
  failedOver(key: string, port: number, timeoutMs?: number): Promise<number>
  /**
   * Makes the node on `port` announce itself at `announced` (a relay in front of it: CONFIG SET cluster-announce-port);
   * resolves once every node names it so, in its slots and redirections. Its replica then replicates through it too.
   */
  announce(port: number, announced: number): Promise<void>
  stop(): void
}

/** The clusters started and not yet stopped. */
const running = new Set<RedisCluster>()

/** Stops every cluster still running (the preloaded test/support/cleanup.ts calls it when the run ends). */
export function stopRedisClusters(): void {
  for (const cluster of running) cluster.stop()
}

/** The binaries, or why the cluster cannot start. */
export function clusterBinaries(): { server: string; cli: string } | string {
  const server = Bun.which('redis-server')
  const cli = Bun.which('redis-cli')
  if (server && cli) return { server, cli }
  return `no ${server ? 'redis-cli' : 'redis-server'} binary on PATH (Debian package redis-server)`
}

/** Runs `use` on a short-lived connection to the node on `port`. */
async function askNode<T>(port: number, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  client.on('error', () => {})
  try {
    await client.connect()
    return await use(client)
  } finally {
    client.disconnect()
  }
}

/** The ports of the masters that `CLUSTER NODES` of the first node of `ports` that answers lists as connected. */
export async function clusterMasters(ports: readonly number[]): Promise<number[]> {
  for (const port of ports) {
    try {
      const listing = (await askNode(port, (client) => client.call('CLUSTER', 'NODES'))) as string
      return listing
        .split('\n')
        .map((line) => line.split(' '))
        .filter((fields) => fields[2]?.includes('master') && !fields[2].includes('fail') && fields[7] === 'connected')
        .map((fields) => Number(/:(\d+)@/.exec(fields[1]!)![1]))
    } catch {
      // That node may be down: ask the next.
    }
  }
  throw new Error(`no node of ${ports.join(',')} answers`)
}

/** The node ports of a `host:port,…` list. */
export const clusterPorts = (nodes: string): number[] => nodes.split(',').map((node) => Number(node.split(':').pop()))

/** The keys matching `pattern` on every master of the cluster whose nodes are `nodes` (host:port,…). */
export async function clusterKeysMatching(nodes: string, pattern: string): Promise<string[]> {
  const found: string[] = []
  for (const port of await clusterMasters(clusterPorts(nodes))) found.push(...(await keysMatching(`redis://127.0.0.1:${port}`, pattern)))
  return found
}

/** Deletes the keys of the store with key prefix `prefix` from the masters of `nodes`: tagged `{prefix}` (the store's) and `{prefix:m<n>}` (its mailbox buckets'). */
export async function deleteClusterKeys(nodes: string, prefix: string): Promise<number> {
  let deleted = 0
  for (const port of await clusterMasters(clusterPorts(nodes))) {
    // One key per UNLINK: a node holds several of the store's slots, and one command may not span two.
    const keys = await keysMatching(`redis://127.0.0.1:${port}`, `{${prefix}[:}]*`)
    if (keys.length === 0) continue
    await askNode(port, async (client) => {
      const pipeline = client.pipeline()
      for (const key of keys) pipeline.unlink(key)
      await pipeline.exec()
    })
    deleted += keys.length
  }
  return deleted
}

/** Starts 6 nodes and joins them into 3 masters with a replica each; resolves once every node sees the cluster ok. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const binaries = clusterBinaries()
  if (typeof binaries === 'string') throw new Error(binaries)
  const dir = tempDir('cluster')
  const servers = new Map<number, ReturnType<typeof Bun.spawn>>()
  const settingsOf = new Map<number, string[]>()
  let cluster: RedisCluster | null = null
  const stop = () => {
    for (const child of servers.values()) child.kill('SIGKILL')
    if (cluster) running.delete(cluster)
  }
  try {
    for (let i = 0; i < 6; i++) {
      // The cluster bus gets its own free port (port + 10000 may be out of range or taken).
      const settings = ['--cluster-enabled', 'yes', '--cluster-port', String(await freePort()), '--cluster-config-file', `${dir}/nodes-${i}.conf`, '--cluster-node-timeout', '1000', '--dir', dir, '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0']
      const node = await spawnRedisServer(binaries.server, undefined, settings)
      if (!node) throw new Error('a cluster redis-server did not start')
      servers.set(node.port, node.process)
      settingsOf.set(node.port, settings)
    }
    const ports = [...servers.keys()]
    const create = Bun.spawn([binaries.cli, '--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '1', '--cluster-yes'], { stdout: 'pipe', stderr: 'pipe' })
    if ((await create.exited) !== 0) throw new Error(`redis-cli --cluster create failed: ${await new Response(create.stdout).text()}${await new Response(create.stderr).text()}`)
    const ok = async (port: number) => {
      try {
        const info = (await askNode(port, (client) => client.call('CLUSTER', 'INFO'))) as string
        return info.includes('cluster_state:ok') && /cluster_known_nodes:6/.test(info)
      } catch {
        return false
      }
    }
    await eventually(async () => (await Promise.all(ports.map(ok))).every(Boolean), 30_000, 'every cluster node sees the cluster ok')
    // Each master sees its replica in sync, so a write WAIT asks for is acknowledged.
    await eventually(
      async () => {
        const masters = await clusterMasters(ports)
        const synced = await Promise.all(masters.map((port) => askNode(port, (client) => client.info('replication')).then((info) => /slave0:.*state=online/.test(info))))
        return masters.length === 3 && synced.every(Boolean)
      },
      30_000,
      'every master has its replica online',
    )
    const list = ports.map((port) => `127.0.0.1:${port}`).join(',')
    const nodeOf = async (key: string, role: 'master' | 'replica'): Promise<number> => {
      for (const port of servers.keys()) {
        try {
          const slot = (await askNode(port, (client) => client.call('CLUSTER', 'KEYSLOT', key))) as number
          const slots = (await askNode(port, (client) => client.call('CLUSTER', 'SLOTS'))) as [number, number, ...[string, number][]][]
          const range = slots.find(([from, to]) => slot >= from && slot <= to)
          // The master first, then its replicas.
          const node = range?.[role === 'master' ? 2 : 3]
          if (node) return node[1]
        } catch {
          // That node may be down: ask the next.
        }
      }
      throw new Error(`no node of the cluster names a ${role} for ${key}`)
    }
    const masterOf = (key: string) => nodeOf(key, 'master')
    cluster = {
      nodes: list,
      options: { redis_cluster: list },
      masterOf,
      replicaOf: (key) => nodeOf(key, 'replica'),
      signal(port, signal) {
        servers.get(port)?.kill(signal)
      },
      async restart(port) {
        const started = await spawnRedisServer(binaries.server, port, settingsOf.get(port))
        if (!started) throw new Error(`redis-server did not start again on port ${port}`)
        servers.set(port, started.process)
      },
      async killMasterOf(key) {
        const port = await masterOf(key)
        const child = servers.get(port)
        if (!child) throw new Error(`the master on port ${port} is not one this cluster started`)
        child.kill('SIGKILL')
        await child.exited
        servers.delete(port)
        return port
      },
      async failedOver(key, port, timeoutMs = 30_000) {
        let now = port
        await eventually(
          async () => {
            now = await masterOf(key).catch(() => port)
            return now !== port
          },
          timeoutMs,
          `a node other than ${port} serves ${key}`,
        )
        return now
      },
      async announce(port, announced) {
        await askNode(port, (client) => client.config('SET', 'cluster-announce-port', String(announced)))
        const names = (node: number) => askNode(node, (client) => client.call('CLUSTER', 'NODES')).then((listing) => (listing as string).includes(`127.0.0.1:${announced}@`), () => false)
        await eventually(async () => (await Promise.all([...servers.keys()].map(names))).every(Boolean), 10_000, `every node names port ${announced} for the node on ${port}`)
      },
      stop,
    }
    running.add(cluster)
    return cluster
  } catch (error) {
    stop()
    throw error
  }
}
