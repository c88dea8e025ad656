/**
 * A small metrics registry rendered in the Prometheus text format (0.0.4):
 * counters, gauges and histograms with fixed buckets. Label sets are kept
 * in maps keyed by their joined values, so recording costs one lookup, and
 * none through a series a caller keeps (`series(labels)`).
 */
export type Labels = Record<string, string>

/** `make` kept per key: each key's value is made on first use and returned from then on (for series recorded again and again). */
export function memoized<K, V>(make: (key: K) => V): (key: K) => V {
  const made = new Map<K, V>()
  return (key) => {
    let value = made.get(key)
    if (value === undefined) made.set(key, (value = make(key)))
    return value
  }
}

const escapeLabel = (value: string) => value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')
const formatValue = (value: number) => (Number.isFinite(value) ? String(value) : value > 0 ? '+Inf' : value < 0 ? '-Inf' : 'NaN')

abstract class Metric {
  abstract readonly type: 'counter' | 'gauge' | 'histogram'

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  // On the request path: plain concatenation, no intermediate array.
  protected keyOf(labels: Labels): string {
    let key = ''
    for (const name of this.labelNames) key += (labels[name] ?? '') + '\u0000'
    return key
  }

  protected renderLabels(labels: Labels, extra?: [string, string]): string {
    const pairs = this.labelNames.map((name) => `${name}="${escapeLabel(labels[name] ?? '')}"`)
    if (extra) pairs.push(`${extra[0]}="${escapeLabel(extra[1])}"`)
    return pairs.length === 0 ? '' : `{${pairs.join(',')}}`
  }

  /** The sample lines of this metric (without HELP and TYPE). */
  abstract samples(): string[]

  render(): string {
    return [`# HELP ${this.name} ${this.help.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')}`, `# TYPE ${this.name} ${this.type}`, ...this.samples()].join('\n')
  }
}

/** One label set of a counter: a caller that records the same labels again and again keeps it and skips the lookup. */
export class CounterSeries {
  value = 0

  constructor(readonly labels: Labels) {}

  inc(by = 1): void {
    this.value += by
  }
}

/** A value that only goes up (reset on restart). */
export class Counter extends Metric {
  readonly type = 'counter'
  private readonly values = new Map<string, CounterSeries>()

  inc(labels: Labels = {}, by = 1): void {
    this.series(labels).inc(by)
  }

  /** The series of one label set, made (at 0) when first asked for. */
  series(labels: Labels = {}): CounterSeries {
    const key = this.keyOf(labels)
    let entry = this.values.get(key)
    if (!entry) {
      entry = new CounterSeries({ ...labels })
      this.values.set(key, entry)
    }
    return entry
  }

  /** The current value of one label set (0 when never incremented). */
  get(labels: Labels = {}): number {
    return this.values.get(this.keyOf(labels))?.value ?? 0
  }

  samples(): string[] {
    return [...this.values.values()].map((entry) => `${this.name}${this.renderLabels(entry.labels)} ${formatValue(entry.value)}`)
  }
}

/** A value that goes up and down; gauges read at scrape time are `reset` and `set` by a collector. */
export class Gauge extends Metric {
  readonly type = 'gauge'
  private readonly values = new Map<string, { labels: Labels; value: number }>()

  set(labels: Labels, value: number): void {
    this.values.set(this.keyOf(labels), { labels: { ...labels }, value })
  }

  reset(): void {
    this.values.clear()
  }

  samples(): string[] {
    return [...this.values.values()].map((entry) => `${this.name}${this.renderLabels(entry.labels)} ${formatValue(entry.value)}`)
  }
}

/** One label set of a histogram; like CounterSeries, kept by a caller that observes the same labels again and again. */
export class HistogramSeries {
  /** Per bucket, not cumulative (made so when rendered); a value above every bound is counted only in `count`. */
  readonly counts: number[]
  sum = 0
  count = 0

  constructor(
    readonly labels: Labels,
    private readonly buckets: readonly number[],
  ) {
    this.counts = new Array<number>(buckets.length).fill(0)
  }

  observe(value: number): void {
    const { buckets } = this
    let index = 0
    while (index < buckets.length && value > buckets[index]!) index++
    if (index < buckets.length) this.counts[index]!++
    this.sum += value
    this.count++
  }
}

/** Observations counted into fixed, cumulative buckets (upper bounds, `+Inf` implied). */
export class Histogram extends Metric {
  readonly type = 'histogram'
  private readonly values = new Map<string, HistogramSeries>()

  constructor(name: string, help: string, labelNames: readonly string[], readonly buckets: readonly number[]) {
    super(name, help, labelNames)
    if (buckets.some((bound, index) => index > 0 && bound <= buckets[index - 1]!)) throw new Error(`histogram ${name}: buckets must increase`)
  }

  observe(labels: Labels, value: number): void {
    this.series(labels).observe(value)
  }

  /** The series of one label set, made (empty) when first asked for. */
  series(labels: Labels): HistogramSeries {
    const key = this.keyOf(labels)
    let entry = this.values.get(key)
    if (!entry) {
      entry = new HistogramSeries({ ...labels }, this.buckets)
      this.values.set(key, entry)
    }
    return entry
  }

  samples(): string[] {
    const lines: string[] = []
    for (const entry of this.values.values()) {
      let cumulative = 0
      this.buckets.forEach((bound, index) => {
        cumulative += entry.counts[index]!
        lines.push(`${this.name}_bucket${this.renderLabels(entry.labels, ['le', formatValue(bound)])} ${cumulative}`)
      })
      lines.push(`${this.name}_bucket${this.renderLabels(entry.labels, ['le', '+Inf'])} ${entry.count}`)
      lines.push(`${this.name}_sum${this.renderLabels(entry.labels)} ${formatValue(entry.sum)}`)
      lines.push(`${this.name}_count${this.renderLabels(entry.labels)} ${entry.count}`)
    }
    return lines
  }
}

/** Refreshes gauges right before a scrape; a collector that throws leaves its gauges empty for that scrape. */
export type Collector = () => Promise<void> | void

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** The metrics of one process, in registration order. */
export class MetricsRegistry {
  private readonly metrics: Metric[] = []
  private readonly collectors: { gauges: Gauge[]; collect: Collector }[] = []

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames))
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames))
  }

  histogram(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets))
  }

  /** Runs `collect` before each scrape; `gauges` are the ones it sets (cleared first). */
  collect(gauges: Gauge[], collect: Collector): void {
    this.collectors.push({ gauges, collect })
  }

  /**
   * Runs the collectors side by side, then renders every metric; resolves
   * with the collectors' failures too. A collector still running after
   * `timeLimitMs` (a backend that does not answer) counts as failed, so a
   * scrape answers well within Prometheus' own 10 s scrape timeout.
   */
  async render(timeLimitMs = 2000): Promise<{ text: string; failures: unknown[] }> {
    const failures: unknown[] = []
    await Promise.all(
      this.collectors.map(async ({ gauges, collect }) => {
        for (const gauge of gauges) gauge.reset()
        let timer: ReturnType<typeof setTimeout> | undefined
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`a metrics collector took longer than ${timeLimitMs} ms`)), timeLimitMs)
        })
        try {
          await Promise.race([collect(), late])
        } catch (error) {
          for (const gauge of gauges) gauge.reset()
          failures.push(error)
        } finally {
          clearTimeout(timer)
        }
      }),
    )
    return { text: this.metrics.map((metric) => metric.render()).join('\n') + '\n', failures }
  }

  private add<M extends Metric>(metric: M): M {
    if (this.metrics.some((existing) => existing.name === metric.name)) throw new Error(`metric ${metric.name} is registered twice`)
    this.metrics.push(metric)
    return metric
  }
}
