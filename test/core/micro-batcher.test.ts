import { afterEach, describe, expect, it, vi } from 'vitest';
import { MicroBatcher, MicroBatcherError } from '../../src/core/micro-batcher.js';
import type { MicroBatch, MicroBatcherOptions } from '../../src/core/micro-batcher.js';

interface Job {
  id: string;
  key?: string;
}

/** A batcher whose handler records each batch's ids and answers every job with `id!`. */
function recording(options: Partial<MicroBatcherOptions<Job, string>> = {}) {
  const batches: string[][] = [];
  const batcher = new MicroBatcher<Job, string>({
    maxBatchSize: 3,
    maxWaitMs: 60_000,
    key: (job) => job.key,
    run: async (batch) => {
      batches.push(batch.items.map((item) => item.value.id));
      await Promise.resolve();
      for (const item of batch.items) item.resolve(`${item.value.id}!`);
    },
    ...options,
  });
  return { batcher, batches };
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
};

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

describe('MicroBatcher', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs a batch as soon as maxBatchSize requests of one key are queued', async () => {
    const { batcher, batches } = recording();
    const answers = Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((id) => batcher.submit({ id })));
    expect(await answers).toEqual(['a!', 'b!', 'c!', 'd!', 'e!', 'f!']);
    expect(batches).toEqual([
      ['a', 'b', 'c'],
      ['d', 'e', 'f'],
    ]);
    expect(batcher.stats()).toEqual({ queued: 0, running: 0, completed: 6, failed: 0, batches: 2 });
  });

  it('runs a smaller batch once its oldest request has waited maxWaitMs', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const { batcher, batches } = recording({ maxBatchSize: 8, maxWaitMs: 1000 });
    const a = batcher.submit({ id: 'a' });
    vi.advanceTimersByTime(400);
    const b = batcher.submit({ id: 'b' });
    await flush();
    vi.advanceTimersByTime(599);
    await flush();
    expect(batches).toEqual([]);
    expect(batcher.stats().queued).toBe(2);
    vi.advanceTimersByTime(1); // a's window ends: a and b go together
    expect(await Promise.all([a, b])).toEqual(['a!', 'b!']);
    expect(batches).toEqual([['a', 'b']]);
  });

  it('batches only equal keys, oldest first, leaving other keys in their places', async () => {
    const { batcher, batches } = recording({ maxBatchSize: 2 });
    const answers = Promise.all([
      batcher.submit({ id: 'x1', key: 'x' }),
      batcher.submit({ id: 'y1', key: 'y' }),
      batcher.submit({ id: 'x2', key: 'x' }), // x is full: [x1, x2] runs now
      batcher.submit({ id: 'y2', key: 'y' }), // y is full too, but waits for the running batch
      batcher.submit({ id: 'x3', key: 'x' }),
    ]);
    await batcher.drain();
    expect(await answers).toEqual(['x1!', 'y1!', 'x2!', 'y2!', 'x3!']);
    expect(batches).toEqual([['x1', 'x2'], ['y1', 'y2'], ['x3']]);
  });

  it('answers each request with its own result, whatever order the handler settles them in', async () => {
    const batcher = new MicroBatcher<number, number>({
      maxBatchSize: 4,
      maxWaitMs: 0,
      run: (batch) => {
        for (const item of [...batch.items].reverse()) item.resolve(item.value * 10);
      },
    });
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => batcher.submit(n)));
    expect(results).toEqual([10, 20, 30, 40, 50]);
  });

  it('rejects every unsettled request of a failed batch with its error, and goes on with the next batch', async () => {
    const failure = new Error('forward failed');
    let calls = 0;
    const batcher = new MicroBatcher<string, string>({
      maxBatchSize: 3,
      maxWaitMs: 60_000,
      run: async (batch) => {
        calls += 1;
        if (calls === 1) {
          batch.items[0]!.resolve('early');
          throw failure;
        }
        for (const item of batch.items) item.resolve(item.value);
      },
    });
    const first = ['a', 'b', 'c'].map((id) => batcher.submit(id));
    const second = ['d', 'e', 'f'].map((id) => batcher.submit(id));
    expect(await first[0]).toBe('early');
    expect(await rejection(first[1]!)).toBe(failure);
    expect(await rejection(first[2]!)).toBe(failure);
    expect(await Promise.all(second)).toEqual(['d', 'e', 'f']);
    expect(batcher.stats()).toMatchObject({ completed: 4, failed: 2, batches: 2 });
  });

  it('rejects a request its handler leaves unsettled', async () => {
    const batcher = new MicroBatcher<string, string>({ maxBatchSize: 2, maxWaitMs: 0, run: () => undefined });
    expect(String(await rejection(batcher.submit('a')))).toMatch(/without settling/);
  });

  it('starts the next batch when the running one releases, before it finishes', async () => {
    const events: string[] = [];
    let finishFirst!: () => void;
    const batcher = new MicroBatcher<string, string>({
      maxBatchSize: 1,
      maxWaitMs: 0,
      run: async (batch: MicroBatch<string, string>) => {
        const id = batch.items[0]!.value;
        events.push(`start ${id}`);
        batch.release();
        if (id === 'a') await new Promise<void>((resolve) => (finishFirst = resolve));
        events.push(`end ${id}`);
        batch.items[0]!.resolve(id);
      },
    });
    const a = batcher.submit('a');
    const b = batcher.submit('b');
    expect(await b).toBe('b');
    expect(events).toEqual(['start a', 'start b', 'end b']);
    expect(batcher.stats().running).toBe(1); // a, released but not yet answered
    finishFirst();
    expect(await a).toBe('a');
  });

  it('holds the next batch until the running handler releases or returns', async () => {
    let resume!: () => void;
    const started: string[] = [];
    const batcher = new MicroBatcher<string, string>({
      maxBatchSize: 1,
      maxWaitMs: 0,
      run: async (batch) => {
        started.push(batch.items[0]!.value);
        if (batch.items[0]!.value === 'a') await new Promise<void>((resolve) => (resume = resolve));
        batch.items[0]!.resolve(batch.items[0]!.value);
      },
    });
    const a = batcher.submit('a');
    const b = batcher.submit('b');
    await flush();
    expect(started).toEqual(['a']);
    expect(batcher.busy).toBe(true);
    expect(batcher.stats()).toMatchObject({ queued: 1, running: 1 });
    resume();
    expect(await Promise.all([a, b])).toEqual(['a', 'b']);
    expect(started).toEqual(['a', 'b']);
  });

  it('dispose() rejects queued and running requests, and later ones, with the disposed error', async () => {
    let running!: () => void;
    const batcher = new MicroBatcher<string, string>({
      maxBatchSize: 1,
      maxWaitMs: 0,
      run: async (batch) => {
        await new Promise<void>((resolve) => (running = resolve));
        batch.items[0]!.resolve('too late'); // dropped: the request was rejected by dispose()
      },
    });
    const inBatch = batcher.submit('a');
    const queued = batcher.submit('b');
    let prepared = false;
    const preparing = batcher.submitAsync(() => new Promise<string>((resolve) => setTimeout(() => resolve('c'), 5)).finally(() => (prepared = true)));
    const drained = batcher.drain();
    batcher.dispose();
    for (const p of [inBatch, queued, preparing]) {
      const err = await rejection(p);
      expect(err).toBeInstanceOf(MicroBatcherError);
      expect((err as MicroBatcherError).code).toBe('DISPOSED');
    }
    await drained; // drain() resolves when the batcher is disposed
    expect(((await rejection(batcher.submit('d'))) as MicroBatcherError).code).toBe('DISPOSED');
    expect(batcher.stats()).toEqual({ queued: 0, running: 0, completed: 0, failed: 3, batches: 1 });
    running();
    await vi.waitFor(() => expect(prepared).toBe(true));
    expect(batcher.stats()).toMatchObject({ queued: 0, completed: 0 });
  });

  it('drain() runs what is queued without waiting for the window and resolves when nothing is pending', async () => {
    const { batcher, batches } = recording({ maxBatchSize: 8, maxWaitMs: 3_600_000 });
    const answers = Promise.all(['a', 'b'].map((id) => batcher.submit({ id })));
    await batcher.drain();
    expect(batcher.pending).toBe(0);
    expect(await answers).toEqual(['a!', 'b!']);
    expect(batches).toEqual([['a', 'b']]);
  });

  it('an aborted request leaves the queue and rejects at once; one aborted before is refused', async () => {
    const { batcher, batches } = recording({ maxBatchSize: 8 });
    const controller = new AbortController();
    const a = batcher.submit({ id: 'a' }, { signal: controller.signal });
    const b = batcher.submit({ id: 'b' });
    controller.abort();
    expect(((await rejection(a)) as MicroBatcherError).code).toBe('ABORTED');
    expect(batcher.stats().queued).toBe(1);
    expect(((await rejection(batcher.submit({ id: 'c' }, { signal: controller.signal }))) as MicroBatcherError).code).toBe('ABORTED');
    await batcher.drain();
    expect(await b).toBe('b!');
    expect(batches).toEqual([['b']]);
    expect(batcher.stats()).toMatchObject({ completed: 1, failed: 1 }); // the refused call is not counted
  });

  it('refuses requests beyond maxQueue, counting preparing ones, and never prepares a refused one', async () => {
    const { batcher } = recording({ maxQueue: 2, errors: { queueFull: (n) => new RangeError(`full at ${n}`) } });
    const a = batcher.submitAsync(() => Promise.resolve({ id: 'a' }));
    const b = batcher.submit({ id: 'b' });
    const prepare = vi.fn(() => Promise.resolve({ id: 'c' }));
    const refused = await rejection(batcher.submitAsync(prepare));
    expect(refused).toBeInstanceOf(RangeError);
    expect(String(refused)).toMatch(/full at 2/);
    expect(prepare).not.toHaveBeenCalled();
    await batcher.drain();
    expect(await Promise.all([a, b])).toEqual(['a!', 'b!']);
  });

  it('queues prepared requests in the order their preparation ends, and rejects failed preparations', async () => {
    const { batcher, batches } = recording({ maxBatchSize: 8 });
    let finishSlow!: () => void;
    const slow = batcher.submitAsync(() => new Promise<Job>((resolve) => (finishSlow = () => resolve({ id: 'slow' }))));
    const fast = batcher.submitAsync(() => Promise.resolve({ id: 'fast' }));
    const broken = batcher.submitAsync(() => Promise.reject(new Error('cannot decode')));
    const thrown = batcher.submitAsync(() => {
      throw new Error('thrown');
    });
    expect(String(await rejection(broken))).toMatch(/cannot decode/);
    expect(String(await rejection(thrown))).toMatch(/thrown/);
    await flush();
    finishSlow();
    await flush();
    expect(batcher.stats().queued).toBe(2);
    await batcher.drain();
    expect(await Promise.all([slow, fast])).toEqual(['slow!', 'fast!']);
    expect(batches).toEqual([['fast', 'slow']]);
  });

  it('checks its options', () => {
    const run = (): void => undefined;
    expect(() => new MicroBatcher({ maxBatchSize: 0, maxWaitMs: 1, run })).toThrow(/maxBatchSize/);
    expect(() => new MicroBatcher({ maxBatchSize: 1, maxWaitMs: -1, run })).toThrow(/maxWaitMs/);
    expect(() => new MicroBatcher({ maxBatchSize: 1, maxWaitMs: 1, maxQueue: 0, run })).toThrow(/maxQueue/);
  });
});

describe('the package root', () => {
  it('exports the micro-batcher for other services', async () => {
    const root = await import('../../src/index.js');
    expect(root.MicroBatcher).toBe(MicroBatcher);
    expect(root.MicroBatcherError).toBe(MicroBatcherError);
  });
});
