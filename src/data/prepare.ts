/**
 * The prepare step of the first-place pipeline (SPEC section 4): decode every DICOM once, resize
 * it to the training size and write `train/<id>.png`, `mask/<id>.png` (union of the image's RLE
 * rows, 255 inside) and `test/<id>.png`, in parallel worker threads.
 *
 * Batch semantics: a bad file is recorded with its reason and the run goes on. Resumable: an
 * image whose outputs exist is skipped; outputs are written under a temporary name and renamed.
 * `prepare.json` in the output directory records the size, so a resumed run cannot mix sizes.
 */
import { availableParallelism } from 'node:os';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { FileWriteError, cleanStaleTemps, makeDir, writeFileAtomic } from '../core/atomic-write.js';
import { assertInteger, invalidParameterError, is } from '../core/validate.js';
import type { ClaheOptions } from './clahe.js';
import { DicomError } from './dicom/errors.js';
import { findDicoms } from './dicom.js';
import { readTrainLabels } from './labels.js';
import { type PrepareTask, runTask } from './prepare/task.js';
import type { WorkerReply } from './prepare/worker.js';

export type { PrepareTask } from './prepare/task.js';

/** Options of {@link prepare}. */
export interface PrepareOptions {
  /** Root of the training DICOMs (`dicom-images-train`); needs `labels`. */
  trainDicom?: string;
  /** Root of the test DICOMs (`dicom-images-test`). */
  testDicom?: string;
  /** Train labels CSV (stage 1 `train-rle.csv` or stage 2 `stage_2_train.csv`). */
  labels?: string;
  /** Output directory (created): `train/`, `mask/`, `test/`. */
  out: string;
  /** Output width and height in pixels. */
  imgSize: number;
  /**
   * CLAHE preprocessing of every image after the resize (the UNet++ seed; OpenCV's algorithm,
   * `clahe.ts`), so training, validation and inference read the same equalised PNGs. Masks are
   * unchanged. Recorded in `prepare.json`: a folder is never resumed with other settings.
   */
  clahe?: ClaheOptions;
  /** Worker threads (default: available parallelism); 0 runs in this thread. */
  workers?: number;
  /** Called after each image with the counts so far (for a progress bar). */
  onProgress?: (finished: number, total: number) => void;
}

/** Counts for one split. */
export interface PrepareCounts {
  /** DICOMs to prepare in this split (labelled ones only, for train). */
  total: number;
  /** Written in this run. */
  done: number;
  /** Already present from an earlier run. */
  skipped: number;
  failed: number;
}

/** A file that could not be prepared. */
export interface PrepareFailure {
  split: 'train' | 'test';
  id: string;
  file: string;
  reason: string;
}

/** What {@link prepare} did. */
export interface PrepareReport {
  out: string;
  imgSize: number;
  workers: number;
  train: PrepareCounts;
  test: PrepareCounts;
  failures: PrepareFailure[];
  /** Training DICOMs with no row in the labels file (not prepared). */
  unlabeled: string[];
  /** Label ids with no training DICOM. */
  missingDicoms: string[];
  seconds: number;
}

const MANIFEST = 'prepare.json';

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

function validate(options: PrepareOptions): number {
  if (!is.defined(options) || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  if (!is.string(options.out) || options.out === '') throw invalidParameterError('options.out', 'a directory path', options.out);
  assertInteger('options.imgSize', options.imgSize, 1, 65535);
  if (options.trainDicom === undefined && options.testDicom === undefined) {
    throw invalidParameterError('options.trainDicom / options.testDicom', 'at least one DICOM directory', undefined);
  }
  if (options.trainDicom !== undefined && options.labels === undefined) throw invalidParameterError('options.labels', 'a labels CSV path with trainDicom', undefined);
  const workers = options.workers ?? availableParallelism();
  assertInteger('options.workers', workers, 0, 256);
  return workers;
}

/** Records the size in `prepare.json`, refusing an output directory prepared at another size. */
async function claimOutput(out: string, imgSize: number, clahe: ClaheOptions | null): Promise<void> {
  const manifest = join(out, MANIFEST);
  if (await exists(manifest)) {
    const previous = JSON.parse(await readFile(manifest, 'utf8')) as { imgSize?: number; clahe?: ClaheOptions | null };
    if (previous.imgSize !== imgSize) {
      throw new Error(`${out} holds images prepared at ${previous.imgSize}x${previous.imgSize}, not ${imgSize}x${imgSize}: choose another --out or remove it`);
    }
    if (JSON.stringify(previous.clahe ?? null) !== JSON.stringify(clahe)) {
      throw new Error(`${out} holds images prepared with CLAHE ${JSON.stringify(previous.clahe ?? null)}, not ${JSON.stringify(clahe)}: choose another --out or remove it`);
    }
    return;
  }
  await makeDir(out);
  await writeFileAtomic(manifest, `${JSON.stringify({ imgSize, ...(clahe ? { clahe } : {}) }, null, 2)}\n`);
}

/** Runs `tasks` on `workers` threads (or in-process when 0); failures are returned, not thrown. */
async function runPool(
  tasks: PrepareTask[],
  size: number,
  workers: number,
  onFinished: (task: PrepareTask, reason?: string) => void,
): Promise<void> {
  if (workers === 0) {
    for (const task of tasks) {
      try {
        await runTask(task, size);
        onFinished(task);
      } catch (err) {
        if (err instanceof FileWriteError) throw err; // the output cannot be written: stop the run
        onFinished(task, err instanceof DicomError ? err.reason : err instanceof Error ? err.message : String(err));
      }
    }
    return;
  }
  let next = 0;
  let failed = false;
  const url = new URL('./prepare/worker.js', import.meta.url);
  const live = new Set<Worker>();
  const runWorker = () =>
    new Promise<void>((resolve, reject) => {
      const worker = new Worker(url, { workerData: { size } });
      live.add(worker);
      let current = -1;
      let replied = false;
      const feed = () => {
        if (failed) return;
        if (next >= tasks.length) {
          live.delete(worker);
          void worker.terminate().then(() => resolve());
          return;
        }
        current = next++;
        worker.postMessage({ index: current, task: tasks[current] });
      };
      worker.on('message', (reply: WorkerReply) => {
        replied = true;
        if (!reply.ok && reply.writeError) {
          // Not a bad input but an output that cannot be written (full disk, read-only folder):
          // every other image would fail alike, so the whole run stops with that error.
          failed = true;
          for (const other of live) void other.terminate();
          live.clear();
          reject(new FileWriteError(reply.writeError.path, reply.writeError.code));
          return;
        }
        onFinished(tasks[reply.index]!, reply.ok ? undefined : reply.reason);
        current = -1;
        feed();
      });
      worker.on('error', (err) => {
        live.delete(worker);
        if (!replied) {
          // A worker that dies before finishing anything cannot start at all (e.g. a missing build).
          for (const other of live) void other.terminate();
          reject(new Error(`cannot run the prepare worker ${url.pathname}: ${err.message}`));
          return;
        }
        // A worker that crashes mid-run fails its current task; a fresh worker takes the rest.
        if (current >= 0) onFinished(tasks[current]!, `the worker thread crashed: ${err.message}`);
        runWorker().then(resolve, reject);
      });
      feed();
    });
  await Promise.all(Array.from({ length: Math.min(workers, tasks.length) }, runWorker));
}

/**
 * Prepares PNGs from SIIM DICOMs at `imgSize` x `imgSize` (see the module comment).
 *
 * Images are resized bilinearly with JPEG shrink-on-load when smaller than the source; masks are
 * the union of the image's RLE rows decoded at the DICOM's own size, resized bilinearly and
 * thresholded at 127. Training DICOMs without label rows are listed in `unlabeled`, not prepared.
 *
 * @returns the counts and every failure with its reason; never throws for a bad image
 * @throws Error for bad options, unreadable directories or labels, duplicate image ids
 */
export async function prepare(options: PrepareOptions): Promise<PrepareReport> {
  const workers = validate(options);
  const started = Date.now();
  const { out, imgSize } = options;
  const [trainFiles, testFiles, labels] = await Promise.all([
    options.trainDicom !== undefined ? findDicoms(options.trainDicom) : new Map<string, string>(),
    options.testDicom !== undefined ? findDicoms(options.testDicom) : new Map<string, string>(),
    options.labels !== undefined && options.trainDicom !== undefined ? readTrainLabels(options.labels) : new Map<string, string[]>(),
  ]);
  const claheOptions = options.clahe ? { clipLimit: options.clahe.clipLimit ?? 2, tileGrid: options.clahe.tileGrid ?? 8 } : null;
  await claimOutput(out, imgSize, claheOptions);
  const dirs = { train: join(out, 'train'), mask: join(out, 'mask'), test: join(out, 'test') };
  for (const dir of [...(options.trainDicom !== undefined ? [dirs.train, dirs.mask] : []), ...(options.testDicom !== undefined ? [dirs.test] : [])]) {
    await makeDir(dir);
  }
  for (const dir of Object.values(dirs)) await cleanStaleTemps(dir);

  const report: PrepareReport = {
    out,
    imgSize,
    workers,
    train: { total: 0, done: 0, skipped: 0, failed: 0 },
    test: { total: 0, done: 0, skipped: 0, failed: 0 },
    failures: [],
    unlabeled: [],
    missingDicoms: [...labels.keys()].filter((id) => !trainFiles.has(id)),
    seconds: 0,
  };
  const tasks: PrepareTask[] = [];
  for (const [id, path] of trainFiles) {
    const rles = labels.get(id);
    if (rles === undefined) {
      report.unlabeled.push(id);
      continue;
    }
    report.train.total += 1;
    const task: PrepareTask = { kind: 'train', id, path, rles, imageOut: join(dirs.train, `${id}.png`), maskOut: join(dirs.mask, `${id}.png`), ...(claheOptions ? { clahe: claheOptions } : {}) };
    if ((await exists(task.imageOut)) && (await exists(task.maskOut))) report.train.skipped += 1;
    else tasks.push(task);
  }
  for (const [id, path] of testFiles) {
    report.test.total += 1;
    const task: PrepareTask = { kind: 'test', id, path, imageOut: join(dirs.test, `${id}.png`), ...(claheOptions ? { clahe: claheOptions } : {}) };
    if (await exists(task.imageOut)) report.test.skipped += 1;
    else tasks.push(task);
  }

  const total = report.train.total + report.test.total;
  let finished = report.train.skipped + report.test.skipped;
  options.onProgress?.(finished, total);
  await runPool(tasks, imgSize, workers, (task, reason) => {
    const counts = report[task.kind];
    if (reason === undefined) counts.done += 1;
    else {
      counts.failed += 1;
      report.failures.push({ split: task.kind, id: task.id, file: task.path, reason });
    }
    finished += 1;
    options.onProgress?.(finished, total);
  });
  report.failures.sort((a, b) => a.file.localeCompare(b.file));
  report.seconds = (Date.now() - started) / 1000;
  return report;
}
