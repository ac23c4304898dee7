/**
 * A progress bar on stderr for long commands. On a TTY it redraws one line (at most ~10 times a
 * second); otherwise it prints a plain line every few percent, so logs in CI stay short.
 */
export interface ProgressOptions {
  /** What is being counted, e.g. "images". */
  unit?: string;
  /** Write somewhere other than stderr (tests). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Disable all output. */
  silent?: boolean;
}

export class ProgressBar {
  private done = 0;
  private readonly started = Date.now();
  private lastDraw = 0;
  private lastPercentLogged = -1;
  private extra = '';
  private readonly stream: NodeJS.WritableStream & { isTTY?: boolean };

  constructor(
    private readonly label: string,
    private total: number,
    private readonly options: ProgressOptions = {},
  ) {
    this.stream = options.stream ?? process.stderr;
  }

  /** Advances by `n` and sets the free-text suffix (e.g. "loss 0.123"). */
  tick(n = 1, extra?: string): void {
    this.done += n;
    if (extra !== undefined) this.extra = extra;
    this.draw(false);
  }

  /** Sets the absolute position (for resumed work) and optionally a new total. */
  update(done: number, total?: number, extra?: string): void {
    this.done = done;
    if (total !== undefined) this.total = total;
    if (extra !== undefined) this.extra = extra;
    this.draw(false);
  }

  /** Draws the final state and ends the line. */
  finish(extra?: string): void {
    if (extra !== undefined) this.extra = extra;
    this.draw(true);
    if (this.stream.isTTY && !this.options.silent) this.stream.write('\n');
  }

  /** Items per second since the bar started. */
  rate(): number {
    const s = (Date.now() - this.started) / 1000;
    return s > 0 ? this.done / s : 0;
  }

  private draw(force: boolean): void {
    if (this.options.silent) return;
    const now = Date.now();
    const percent = this.total > 0 ? Math.min(100, Math.floor((100 * this.done) / this.total)) : 100;
    const rate = this.rate();
    const eta = rate > 0 && this.total > this.done ? (this.total - this.done) / rate : 0;
    const unit = this.options.unit ?? 'it';
    const text = `${this.label} ${this.done}/${this.total} (${percent}%) ${rate.toFixed(rate < 10 ? 2 : 1)} ${unit}/s ETA ${formatDuration(eta)}${this.extra ? ` ${this.extra}` : ''}`;
    if (this.stream.isTTY) {
      if (!force && now - this.lastDraw < 100) return;
      this.lastDraw = now;
      const width = (process.stderr.columns ?? 100) - 1;
      const barWidth = Math.max(10, Math.min(30, width - text.length - 3));
      const filled = Math.round((barWidth * percent) / 100);
      const line = `[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}] ${text}`;
      this.stream.write(`\r${line.slice(0, width)}\x1b[K`);
    } else {
      const step = Math.floor(percent / 10);
      if (!force && step === this.lastPercentLogged) return;
      this.lastPercentLogged = step;
      this.stream.write(`${text}\n`);
    }
  }
}

/** Formats seconds as `1h02m`, `3m05s` or `12s`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}
