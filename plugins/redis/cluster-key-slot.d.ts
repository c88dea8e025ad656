/** The Redis Cluster hash slot of a key (what ioredis routes by), from the package ioredis itself depends on. */
declare module 'cluster-key-slot' {
  export default function calculateSlot(key: string | Buffer): number
}
