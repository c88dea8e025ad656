/**
 * Wake-up latency on a Redis Cluster (started here, 3 masters + 3 replicas on loopback): a PUBLISH (classic
 * pub/sub, carried to every node over the cluster bus) against an SPUBLISH (sharded, Redis ≥ 7, heard on the
 * shard of the channel's slot), each sent from a Lua script as the mailbox scripts do, heard by a subscriber on
 * another connection. Prints p50/p99 over 2000 wake-ups each, beside a single Redis's PUBLISH.
 */
import Redis, { Cluster } from 'ioredis'
import { startRedisCluster, clusterPorts } from '../test/support/cluster'
import { testRedis } from '../test/support/redis'

const ROUNDS = 2000
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(3)

/** Sends ROUNDS wake-ups one at a time through `send`, timing each until `heard` delivers it. */
async function measure(name: string, send: (payload: string) => Promise<unknown>, heard: (handler: (payload: string) => void) => void): Promise<void> {
  const waiting = new Map<string, () => void>()
  heard((payload) => waiting.get(payload)?.())
  const times: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    const payload = String(i)
    const started = performance.now()
    await new Promise<void>((resolve) => {
      waiting.set(payload, resolve)
      void send(payload)
    })
    times.push(performance.now() - started)
  }
  times.sort((a, b) => a - b)
  console.log(`${name.padEnd(44)} p50 ${quantile(times, 0.5)} ms  p99 ${quantile(times, 0.99)} ms`)
}

const single = await testRedis()
if (single.url) {
  const [command, subscriber] = [new Redis(single.url), new Redis(single.url)]
  await subscriber.subscribe('sbbench:wake')
  await measure('single Redis, PUBLISH from a script', (payload) => command.eval("return redis.call('PUBLISH', ARGV[1], ARGV[2])", 0, 'sbbench:wake', payload), (handler) => subscriber.on('message', (_, payload) => handler(payload)))
  command.disconnect()
  subscriber.disconnect()
}
const cluster = await startRedisCluster()
try {
  const nodes = clusterPorts(cluster.nodes).map((port) => ({ host: '127.0.0.1', port }))
  const command = new Cluster(nodes)
  const classic = new Cluster(nodes)
  await classic.subscribe('{sbbench}:wake')
  await measure('Cluster, PUBLISH from a script (classic)', (payload) => command.eval("return redis.call('PUBLISH', ARGV[1], ARGV[2])", 1, '{sbbench}:store', '{sbbench}:wake', payload), (handler) => classic.on('message', (_, payload) => handler(payload)))
  const sharded = new Cluster(nodes, { shardedSubscribers: true })
  await sharded.ssubscribe('{sbbench}:wake')
  await measure('Cluster, SPUBLISH from a script (sharded)', (payload) => command.eval("return redis.call('SPUBLISH', ARGV[1], ARGV[2])", 1, '{sbbench}:store', '{sbbench}:wake', payload), (handler) => sharded.on('smessage', (_, payload) => handler(payload)))
  for (const client of [command, classic, sharded]) client.disconnect()
} finally {
  cluster.stop()
}
