/**
 * The redis backend on a Redis Cluster (3 masters, 3 replicas the test
 * starts): where the settings say the nodes are, and the backend contract
 * with WAIT on.
 */
import { describe, expect, it } from 'bun:test'
import { describeTarget, redisTarget } from '../../plugins/redis/connection'
import { makeBackend } from '../support/backend'
import { clusterBinaries } from '../support/cluster'
import { testBackend } from './conformance'

describe('where the settings say the cluster is', () => {
  it('takes redis_cluster, and refuses it with Sentinels', () => {
    const target = redisTarget({ redis_url: 'redis://ignored:6379', redis_cluster: '10.0.0.1:7000, [::1]:7001' })
    expect(target).toEqual({ cluster: [{ host: '10.0.0.1', port: 7000 }, { host: '::1', port: 7001 }] })
    expect(describeTarget(target)).toBe('Redis Cluster of 10.0.0.1:7000,[::1]:7001')
    expect(() => redisTarget({ redis_url: 'redis://x', redis_cluster: 'a:1', redis_sentinels: 'b:2', redis_master_name: 'main' })).toThrow('redis_cluster and redis_sentinels exclude each other')
    expect(() => redisTarget({ redis_url: 'redis://x', redis_cluster: 'a' })).toThrow('redis_cluster: "a" is not host:port')
  })
})

const binaries = clusterBinaries()
if (typeof binaries === 'string') {
  if (process.env.CI === 'true') throw new Error(`the Redis Cluster tests need ${binaries}`)
  console.warn(`skipping the Redis Cluster tests: ${binaries}`)
}

// The backend contract on a Cluster, with every answered write acknowledged by the slot's replica (WAIT 1).
describe.skipIf(typeof binaries === 'string')('redis backend on a Redis Cluster, with redis_wait_replicas = 1', () => {
  testBackend((options) => makeBackend('redis-cluster', { redis_wait_replicas: 1, ...options }))
})
