/**
 * The few Prometheus metric kinds the server exposes (counters by label, histograms, gauges),
 * rendered in the text exposition format 0.0.4. No client library: the format is small and
 * stable, and the server keeps no other dependency.
 */

/** Label values escaped as the exposition format requires. */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labelText(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function num(value: number): string {
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return Number.isFinite(value) ? String(value) : 'NaN';
}

/** A counter split by one set of labels. */
export class LabeledCounter {
  readonly #values = new Map<string, { labels: Record<string, string>; value: number }>();

  constructor(
    readonly name: string,
    readonly help: string,
  ) {}

  inc(labels: Record<string, string>, by = 1): void {
    const key = labelText(labels);
    const entry = this.#values.get(key);
    if (entry) entry.value += by;
    else this.#values.set(key, { labels, value: by });
  }

  /** The value for exactly these labels (0 if never incremented). */
  get(labels: Record<string, string>): number {
    return this.#values.get(labelText(labels))?.value ?? 0;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.#values.values()) lines.push(`${this.name}${labelText(labels)} ${num(value)}`);
    return lines.join('\n');
  }
}

/** A histogram with fixed upper bounds (cumulative buckets, sum and count). */
export class Histogram {
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: readonly number[],
  ) {
    this.#counts = new Array<number>(bounds.length).fill(0);
  }

  observe(value: number, times = 1): void {
    for (let i = 0; i < this.bounds.length; i += 1) if (value <= this.bounds[i]!) this.#counts[i]! += times;
    this.#sum += value * times;
    this.#count += times;
  }

  get count(): number {
    return this.#count;
  }

  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.bounds.forEach((b, i) => lines.push(`${this.name}_bucket{le="${num(b)}"} ${this.#counts[i]}`));
    lines.push(`${this.name}_bucket{le="+Inf"} ${this.#count}`, `${this.name}_sum ${num(this.#sum)}`, `${this.name}_count ${this.#count}`);
    return lines.join('\n');
  }
}

/** A counter read when the metrics are rendered (from counts kept elsewhere). */
export function counter(name: string, help: string, samples: [Record<string, string>, number][]): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} counter`];
  for (const [labels, value] of samples) lines.push(`${name}${labelText(labels)} ${num(value)}`);
  return lines.join('\n');
}

/** A gauge read when the metrics are rendered. */
export function gauge(name: string, help: string, samples: [Record<string, string>, number][]): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`];
  for (const [labels, value] of samples) lines.push(`${name}${labelText(labels)} ${num(value)}`);
  return lines.join('\n');
}
