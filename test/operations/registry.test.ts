import { describe, expect, it } from 'bun:test'
import { memoized, MetricsRegistry } from '../../src/ops/metrics'

describe('the metrics registry', () => {
  it('renders histogram buckets cumulatively with +Inf, sum and count', async () => {
    const registry = new MetricsRegistry()
    const histogram = registry.histogram('op_seconds', 'Time.', ['op'], [0.1, 1])
    for (const value of [0.05, 0.5, 0.5, 3]) histogram.observe({ op: 'read' }, value)
    const { text } = await registry.render()
    expect(text).toContain('op_seconds_bucket{op="read",le="0.1"} 1\nop_seconds_bucket{op="read",le="1"} 3\nop_seconds_bucket{op="read",le="+Inf"} 4\n')
    expect(text).toContain('op_seconds_sum{op="read"} 4.05\nop_seconds_count{op="read"} 4')
  })

  it('records through a kept series exactly as through labels: one sample per label set, counts added up', async () => {
    const registry = new MetricsRegistry()
    const counter = registry.counter('calls_total', 'Calls.', ['route', 'status'])
    const series = counter.series({ route: '/a', status: '200' })
    expect(counter.series({ route: '/a', status: '200' })).toBe(series)
    series.inc()
    counter.inc({ route: '/a', status: '200' }, 2)
    counter.series({ route: '/a', status: '404' }).inc()
    expect(counter.get({ route: '/a', status: '200' })).toBe(3)
    const histogram = registry.histogram('wait_seconds', 'Wait.', ['route'], [1])
    histogram.series({ route: '/a' }).observe(0.5)
    histogram.observe({ route: '/a' }, 2)
    const { text } = await registry.render()
    expect(text.match(/^calls_total\{.*$/gm)).toEqual(['calls_total{route="/a",status="200"} 3', 'calls_total{route="/a",status="404"} 1'])
    expect(text).toContain('wait_seconds_bucket{route="/a",le="1"} 1\nwait_seconds_bucket{route="/a",le="+Inf"} 2\nwait_seconds_sum{route="/a"} 2.5\nwait_seconds_count{route="/a"} 2')
  })

  it('memoized makes each key\'s value once and returns it from then on', () => {
    const made: string[] = []
    const lengthOf = memoized((key: string) => {
      made.push(key)
      return { length: key.length }
    })
    const first = lengthOf('abc')
    expect(lengthOf('abc')).toBe(first)
    expect(lengthOf('de').length).toBe(2)
    expect(made).toEqual(['abc', 'de'])
  })

  it('escapes backslashes, quotes and line breaks in label values', async () => {
    const registry = new MetricsRegistry()
    registry.counter('odd_total', 'Odd labels.', ['name']).inc({ name: 'a"b\\c\nd' })
    expect((await registry.render()).text).toContain('odd_total{name="a\\"b\\\\c\\nd"} 1')
  })

  it('leaves out the gauges of a collector that fails and reports the failure', async () => {
    const registry = new MetricsRegistry()
    const gauge = registry.gauge('backend_things', 'Things.', ['kind'])
    let fail = false
    registry.collect([gauge], () => {
      gauge.set({ kind: 'a' }, 1)
      if (fail) throw new Error('backend down')
    })
    expect((await registry.render()).text).toContain('backend_things{kind="a"} 1')
    fail = true
    const { text, failures } = await registry.render()
    expect(text).not.toContain('backend_things{')
    expect(String(failures[0])).toContain('backend down')
  })

  it('leaves out the gauges of a collector that does not finish within the time limit', async () => {
    const registry = new MetricsRegistry()
    const slow = registry.gauge('slow_things', 'Slow.')
    const quick = registry.gauge('quick_things', 'Quick.')
    registry.collect([slow], () => new Promise<void>(() => slow.set({}, 1)))
    registry.collect([quick], () => quick.set({}, 2))
    const started = performance.now()
    const { text, failures } = await registry.render(100)
    expect(performance.now() - started).toBeLessThan(1000)
    expect(text).not.toMatch(/^slow_things /m)
    expect(text).toContain('quick_things 2')
    expect(String(failures[0])).toContain('took longer than 100 ms')
  })

  it('refuses a metric name registered twice and buckets that do not increase', () => {
    const registry = new MetricsRegistry()
    registry.counter('twice_total', 'Once.')
    expect(() => registry.counter('twice_total', 'Twice.')).toThrow('registered twice')
    expect(() => registry.histogram('bad_seconds', 'Bad.', [], [1, 1])).toThrow('buckets must increase')
  })
})
