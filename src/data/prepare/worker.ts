/**
 * Worker-thread entry of `prepare`: runs the tasks it is sent, one at a time, and answers each
 * with success or the failure reason. libvips gets one thread per worker, since the pool already
 * has one worker per core.
 */
import { parentPort, workerData } from 'node:worker_threads';
import sharp from 'sharp';
import { FileWriteError } from '../../core/atomic-write.js';
import { DicomError } from '../dicom/errors.js';
import { type PrepareTask, runTask } from './task.js';

/**
 * Messages from a worker to the pool. `writeError` marks a failure to write the output (a full
 * disk, a read-only folder): not a bad input, so the pool stops the whole run.
 */
export type WorkerReply = { index: number; ok: true } | { index: number; ok: false; reason: string; writeError?: { path: string; code: string } };

/** The reason to report: a DicomError's reason (the pool names the file), else the message. */
function failureReason(err: unknown): string {
  if (err instanceof DicomError) return err.reason;
  return err instanceof Error ? err.message : String(err);
}

const { size } = workerData as { size: number };
sharp.concurrency(1);
const port = parentPort;
if (!port) throw new Error('prepare/worker.js must run in a worker thread');
port.on('message', (message: { index: number; task: PrepareTask }) => {
  runTask(message.task, size).then(
    () => port.postMessage({ index: message.index, ok: true } satisfies WorkerReply),
    (err: unknown) =>
      port.postMessage({
        index: message.index,
        ok: false,
        reason: failureReason(err),
        ...(err instanceof FileWriteError ? { writeError: { path: err.path, code: err.code } } : {}),
      } satisfies WorkerReply),
  );
});
