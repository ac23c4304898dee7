/**
 * A generic micro-batcher: single requests, submitted at any time, are queued and handed to one
 * handler in batches, each request settled on its own promise.
 *
 * ```ts
 * const batcher = new MicroBatcher<Job, Answer>({
 *   maxBatchSize: 8, maxWaitMs: 5, maxQueue: 64,
 *   key: (job) => job.size,                       // only equal keys share a batch
 *   run: async (batch) => {
 *     const outputs = await forward(batch.items.map((item) => item.value));
 *     batch.release();                            // the next batch may start now
 *     batch.items.forEach((item, i) => item.resolve(outputs[i]));
 *   },
 * });
 * const answer = await batcher.submit(job, { signal });
 * ```
 *
 * - Batching: a batch starts as soon as the queue holds `maxBatchSize` requests of the oldest
 *   request's key, or once the oldest has waited `maxWaitMs`, whichever comes first. It takes the
 *   oldest request and then the next ones of the same key in arrival order, up to `maxBatchSize`;
 *   requests of other keys keep their places.
 * - One batch at a time: the next batch starts when the running one calls `release()` (or its
 *   handler returns), so a handler can let the next batch's work overlap its own finishing steps.
 * - Ordering: requests join the queue in submission order; one submitted with `submitAsync` (its
 *   value still being prepared) joins when its preparation resolves, and counts against
 *   `maxQueue` from submission.
 * - The handler runs on the turn that makes a batch due (a `submit`, a `release()`, a timer).
 * - Errors: when the handler throws (or rejects), every request of its batch not yet settled is
 *   rejected with that error. A request the handler leaves unsettled is rejected too.
 * - Cancellation: a request's `signal` rejects it at once, wherever it is; a request already in a
 *   running batch stays in `batch.items` with `settled` true, and its result is dropped.
 * - `drain()` runs what is queued without waiting for windows and resolves once nothing is
 *   pending; `dispose()` rejects every pending request and starts no further batch.
 */

/** One request inside a running batch. */
export interface BatchItem<T, R> {
  readonly value: T;
  /** `performance.now()` when the request joined the queue (its value ready). */
  readonly enqueuedAt: number;
  /** Whether the request is already resolved or rejected (answered, aborted or disposed). */
  readonly settled: boolean;
  /** Fulfils the request's promise (no effect once settled). */
  resolve(result: R): void;
  /** Rejects the request's promise (no effect once settled). */
  reject(error: unknown): void;
}

/** What the handler receives: the requests of one batch, oldest first. */
export interface MicroBatch<T, R> {
  readonly items: readonly BatchItem<T, R>[];
  /** The key the batch's requests share. */
  readonly key: unknown;
  /** `performance.now()` when the batch was taken from the queue. */
  readonly startedAt: number;
  /** Lets the next batch start while this handler finishes (idempotent). */
  release(): void;
}

/** The errors the batcher rejects requests with; each defaults to a {@link MicroBatcherError}. */
export interface MicroBatcherErrors {
  /** A request refused because `maxQueue` requests are waiting. */
  queueFull?: (maxQueue: number) => Error;
  /** A request whose signal aborted (before or after it was accepted). */
  aborted?: (signal: AbortSignal) => Error;
  /** A request pending when `dispose()` was called, or submitted after it. */
  disposed?: () => Error;
}

export interface MicroBatcherOptions<T, R> {
  /** Most requests in one batch (at least 1). */
  maxBatchSize: number;
  /** Longest the oldest request waits for companions before its batch runs anyway, ms (>= 0). */
  maxWaitMs: number;
  /** Most requests accepted and not yet in a batch (default unlimited); more are refused. */
  maxQueue?: number;
  /** Requests batch together only when their keys are equal (`===`); default: all together. */
  key?: (value: T) => unknown;
  /** Processes one batch: settles each item, and may call `release()` before it returns. */
  run: (batch: MicroBatch<T, R>) => Promise<void> | void;
  errors?: MicroBatcherErrors;
}

export type MicroBatcherErrorCode = 'QUEUE_FULL' | 'ABORTED' | 'DISPOSED';

/** The default error of a refused, aborted or disposed request. */
export class MicroBatcherError extends Error {
  constructor(
    readonly code: MicroBatcherErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'MicroBatcherError';
  }
}

/** Counters of a {@link MicroBatcher}. */
export interface MicroBatcherStats {
  /** Accepted and waiting: value being prepared, or queued. */
  queued: number;
  /** Taken into a batch and not yet settled. */
  running: number;
  /** Accepted requests resolved. */
  completed: number;
  /** Accepted requests rejected (by the handler, an abort or `dispose()`); refusals are not counted. */
  failed: number;
  /** Batches handed to the handler. */
  batches: number;
}

interface Entry<T, R> extends BatchItem<T, R> {
  state: 'preparing' | 'queued' | 'running' | 'settled';
  value: T;
  enqueuedAt: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  key: unknown;
}

/** Queues requests and hands them to one handler in batches. See the module comment. */
export class MicroBatcher<T, R> {
  readonly #maxBatchSize: number;
  readonly #maxWaitMs: number;
  readonly #maxQueue: number;
  readonly #key: (value: T) => unknown;
  readonly #run: (batch: MicroBatch<T, R>) => Promise<void> | void;
  readonly #errors: Required<MicroBatcherErrors>;
  #preparing = new Set<Entry<T, R>>();
  #queue: Entry<T, R>[] = [];
  #running = new Set<Entry<T, R>>();
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  #draining = false;
  #disposed = false;
  #idle: (() => void)[] = [];
  #completed = 0;
  #failed = 0;
  #batches = 0;

  constructor(options: MicroBatcherOptions<T, R>) {
    const { maxBatchSize, maxWaitMs, maxQueue = Infinity } = options;
    if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1) throw new RangeError(`Expected maxBatchSize to be an integer >= 1 but received ${String(maxBatchSize)}`);
    if (typeof maxWaitMs !== 'number' || !(maxWaitMs >= 0) || !Number.isFinite(maxWaitMs)) throw new RangeError(`Expected maxWaitMs to be a finite number >= 0 but received ${String(maxWaitMs)}`);
    if (maxQueue !== Infinity && (!Number.isInteger(maxQueue) || maxQueue < 1)) throw new RangeError(`Expected maxQueue to be an integer >= 1 but received ${String(maxQueue)}`);
    if (typeof options.run !== 'function') throw new TypeError('Expected run to be a function');
    this.#maxBatchSize = maxBatchSize;
    this.#maxWaitMs = maxWaitMs;
    this.#maxQueue = maxQueue;
    this.#key = options.key ?? (() => undefined);
    this.#run = options.run;
    this.#errors = {
      queueFull: options.errors?.queueFull ?? ((n) => new MicroBatcherError('QUEUE_FULL', `The queue is full (${n} requests waiting)`)),
      aborted: options.errors?.aborted ?? ((signal) => new MicroBatcherError('ABORTED', 'The request was aborted', { cause: signal.reason })),
      disposed: options.errors?.disposed ?? (() => new MicroBatcherError('DISPOSED', 'The batcher was disposed before the request completed')),
    };
  }

  /** Requests accepted and not yet settled (queued or running). */
  get pending(): number {
    return this.#preparing.size + this.#queue.length + this.#running.size;
  }

  /** Whether a batch holds the batcher (started and not yet released). */
  get busy(): boolean {
    return this.#busy;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  stats(): MicroBatcherStats {
    return { queued: this.#preparing.size + this.#queue.length, running: this.#running.size, completed: this.#completed, failed: this.#failed, batches: this.#batches };
  }

  /**
   * Submits one request. Resolves with what the handler resolves it with.
   * @throws (rejects) the `disposed`, `aborted` or `queueFull` error when refused at once
   */
  submit(value: T, options: { signal?: AbortSignal | undefined } = {}): Promise<R> {
    return this.#submit(options.signal, (entry) => this.#enqueue(entry, value));
  }

  /**
   * Submits one request whose value is still to be prepared: `prepare` is called only once the
   * request is accepted (so a refused request costs nothing); the request counts as queued from
   * then and joins the queue when its promise resolves. A rejection (or a throw) of `prepare`
   * rejects the request.
   * @throws (rejects) the `disposed`, `aborted` or `queueFull` error when refused at once
   */
  submitAsync(prepare: () => PromiseLike<T>, options: { signal?: AbortSignal | undefined } = {}): Promise<R> {
    return this.#submit(options.signal, (entry) => {
      this.#preparing.add(entry);
      let ready: PromiseLike<T>;
      try {
        ready = prepare();
      } catch (err) {
        this.#preparing.delete(entry);
        entry.reject(err);
        return;
      }
      ready.then(
        (value) => {
          this.#preparing.delete(entry);
          if (entry.state !== 'settled') this.#enqueue(entry, value);
        },
        (err: unknown) => {
          this.#preparing.delete(entry);
          entry.reject(err);
        },
      );
    });
  }

  #submit(signal: AbortSignal | undefined, accept: (entry: Entry<T, R>) => void): Promise<R> {
    if (this.#disposed) return Promise.reject(this.#errors.disposed());
    if (signal?.aborted) return Promise.reject(this.#errors.aborted(signal));
    if (this.#preparing.size + this.#queue.length >= this.#maxQueue) return Promise.reject(this.#errors.queueFull(this.#maxQueue));
    return new Promise<R>((resolve, reject) => {
      const entry: Entry<T, R> = {
        state: 'preparing',
        value: undefined as T,
        enqueuedAt: 0,
        key: undefined,
        signal,
        onAbort: undefined,
        get settled() {
          return entry.state === 'settled';
        },
        resolve: (result) => this.#settle(entry, () => resolve(result), true),
        reject: (error) => this.#settle(entry, () => reject(error), false),
      };
      if (signal) {
        entry.onAbort = () => this.#abort(entry);
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      accept(entry);
    });
  }

  /**
   * Runs every queued request without waiting for batch windows (requests submitted meanwhile
   * too) and resolves once none is pending, or when the batcher is disposed.
   */
  drain(): Promise<void> {
    if (this.#disposed) return Promise.resolve();
    const idle = new Promise<void>((resolve) => this.#idle.push(resolve));
    this.#draining = true;
    if (this.pending === 0) this.#notifyIdle();
    else this.#schedule();
    return idle;
  }

  /**
   * Rejects every pending request (queued or running) with the `disposed` error and starts no
   * further batch; a handler already running goes on, its answers dropped. Idempotent.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const entry of [...this.#preparing, ...this.#queue, ...this.#running]) entry.reject(this.#errors.disposed());
    this.#preparing.clear();
    this.#queue = [];
    this.#running.clear();
    this.#notifyIdle();
  }

  #enqueue(entry: Entry<T, R>, value: T): void {
    entry.value = value;
    entry.key = this.#key(value);
    entry.state = 'queued';
    entry.enqueuedAt = performance.now();
    this.#queue.push(entry);
    this.#schedule();
  }

  #abort(entry: Entry<T, R>): void {
    if (entry.state === 'settled' || !entry.signal) return;
    if (entry.state === 'queued') this.#queue = this.#queue.filter((e) => e !== entry);
    if (entry.state === 'preparing') this.#preparing.delete(entry);
    entry.reject(this.#errors.aborted(entry.signal));
  }

  #settle(entry: Entry<T, R>, answer: () => void, ok: boolean): void {
    if (entry.state === 'settled') return;
    entry.state = 'settled';
    this.#running.delete(entry);
    if (entry.signal && entry.onAbort) entry.signal.removeEventListener('abort', entry.onAbort);
    if (ok) this.#completed += 1;
    else this.#failed += 1;
    answer();
    if (this.#draining && this.pending === 0) this.#notifyIdle();
  }

  #notifyIdle(): void {
    const waiters = this.#idle;
    this.#idle = [];
    for (const w of waiters) w();
  }

  /** Starts a batch now if one is due, else arms the timer for the oldest request's deadline. */
  #schedule(): void {
    if (this.#disposed || this.#busy || this.#queue.length === 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const head = this.#queue[0]!;
    let sameKey = 0;
    for (const e of this.#queue) if (e.key === head.key) sameKey += 1;
    const waited = performance.now() - head.enqueuedAt;
    if (sameKey >= this.#maxBatchSize || waited >= this.#maxWaitMs || this.#draining) {
      void this.#runBatch();
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#schedule();
    }, Math.max(0, this.#maxWaitMs - waited));
  }

  /** Takes the oldest request and the next ones of its key, up to maxBatchSize. */
  #takeBatch(): Entry<T, R>[] {
    const key = this.#queue[0]!.key;
    const batch: Entry<T, R>[] = [];
    const rest: Entry<T, R>[] = [];
    for (const e of this.#queue) {
      if (batch.length < this.#maxBatchSize && e.key === key) batch.push(e);
      else rest.push(e);
    }
    this.#queue = rest;
    return batch;
  }

  async #runBatch(): Promise<void> {
    this.#busy = true;
    const entries = this.#takeBatch();
    for (const e of entries) {
      e.state = 'running';
      this.#running.add(e);
    }
    this.#batches += 1;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#busy = false;
      this.#schedule();
    };
    const batch: MicroBatch<T, R> = { items: entries, key: entries[0]!.key, startedAt: performance.now(), release };
    try {
      await this.#run(batch);
      for (const e of entries) e.reject(new Error('The batch handler returned without settling this request'));
    } catch (err) {
      for (const e of entries) e.reject(err);
    } finally {
      release();
    }
  }
}
