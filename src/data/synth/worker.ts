/**
 * Worker-thread entry of `synthesize`: runs the tasks it is sent, one at a time, and answers each
 * with its RLE rows or the error. libvips gets one thread per worker, since the pool already has
 * one worker per core.
 */
import { parentPort } from 'node:worker_threads';
import sharp from 'sharp';
import { runSynthTask } from './task.js';
import type { SynthTask, SynthTaskResult } from './task.js';

/** Messages from a worker to the pool. */
export type SynthWorkerReply = { index: number; ok: true; result: SynthTaskResult } | { index: number; ok: false; error: string };

sharp.concurrency(1);
const port = parentPort;
if (!port) throw new Error('synth/worker.js must run in a worker thread');
port.on('message', (message: { index: number; task: SynthTask }) => {
  runSynthTask(message.task).then(
    (result) => port.postMessage({ index: message.index, ok: true, result } satisfies SynthWorkerReply),
    (err: unknown) => port.postMessage({ index: message.index, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies SynthWorkerReply),
  );
});
