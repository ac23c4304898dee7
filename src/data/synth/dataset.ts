/**
 * A synthetic SIIM-shaped dataset on disk (`synthesize`):
 *
 *     <out>/dicom-images-train/<StudyInstanceUID>/<SeriesInstanceUID>/<ImageId>.dcm
 *     <out>/dicom-images-test/<StudyInstanceUID>/<SeriesInstanceUID>/<ImageId>.dcm
 *     <out>/train-rle.csv                      stage-1 layout, one row per region, `-1` rows
 *     <out>/stage_2_sample_submission.csv      the test ids, EncodedPixels `-1`
 *     <out>/test-rle.csv                       the test truth, stage-1 layout (for `score`)
 *     <out>/manifest.json                      the parameters and counts
 *
 * The DICOMs are 8-bit MONOCHROME2 JPEG Baseline with SIIM-like tags (CR, CHEST, PA/AP, bare
 * age, per-image pixel spacing). Ids follow SIIM's pattern
 * `1.2.276.0.7230010.3.1.4.8323329.<n>.<time>.<m>` (study `...3.1.2...`, series `...3.1.3...`).
 *
 * Everything follows from (seed, train, test, size, positive rate, quality): the positive images
 * are an exact, seeded choice of round(rate * count) per split, and every image draws from its
 * own streams (see `image.ts`), so the files are byte-identical across runs and independent of
 * the worker count. A run resumes: existing DICOMs are kept (their masks are recomputed for the
 * labels), and a directory generated with other parameters is refused.
 */
import { cpus } from 'node:os';
import { readFile } from 'node:fs/promises';
import { makeDir, writeFileAtomic } from '../../core/atomic-write.js';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { packageVersion } from '../../core/package-info.js';
import { Random, deriveSeed } from '../../core/random.js';
import { assertInteger, assertNumber, invalidParameterError, is } from '../../core/validate.js';
import type { SiimTagOverrides } from '../dicom-write.js';
import { STAGE1_TRAIN_FORMAT, SUBMISSION_FORMAT, writeSubmission } from '../labels.js';
import type { SubmissionRow } from '../labels.js';
import { imageRandom, planImage } from './image.js';
import type { SynthImageSpec, SynthSplit } from './image.js';
import { runSynthTask } from './task.js';
import type { SynthTask, SynthTaskResult } from './task.js';
import type { SynthWorkerReply } from './worker.js';

/** Options of `synthesize`. */
export interface SynthOptions {
  /** Output directory (created). */
  out: string;
  /** Number of training images. */
  train: number;
  /** Number of test images. */
  test: number;
  /** Seed: the same seed and parameters give byte-identical files. */
  seed: number;
  /** Image width and height in pixels (default 1024, as SIIM). */
  size?: number;
  /** Fraction of images with pneumothorax in each split (default 0.22, as SIIM). */
  positiveRate?: number;
  /** JPEG quality (default 90: a 1024 x 1024 image is about 100-200 KB, as in SIIM). */
  quality?: number;
  /** Worker threads (default: the number of cores; 0 renders in this thread). */
  workers?: number;
  /** Called after each image with the number finished so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** One planned image. */
export interface SynthEntry {
  split: SynthSplit;
  index: number;
  id: string;
  studyUid: string;
  seriesUid: string;
  positive: boolean;
  /** The DICOM's path relative to the output directory. */
  file: string;
  tags: SiimTagOverrides;
}

/** The parameters recorded in `manifest.json` (a resumed run must match them). */
export interface SynthParameters {
  seed: number;
  train: number;
  test: number;
  size: number;
  positiveRate: number;
  quality: number;
}

/** `manifest.json`. */
export interface SynthManifest {
  format: 'pneumo-native-synth';
  version: 1;
  generator: string;
  parameters: SynthParameters;
  files: { trainDicom: string; testDicom: string; trainLabels: string; sampleSubmission: string; testLabels: string };
  counts?: { train: { images: number; positive: number; regions: number }; test: { images: number; positive: number; regions: number } };
}

/** What `synthesize` reports. */
export interface SynthReport {
  out: string;
  parameters: SynthParameters;
  train: { images: number; positive: number; regions: number };
  test: { images: number; positive: number; regions: number };
  /** Images rendered in this run. */
  written: number;
  /** Images kept from an earlier run. */
  skipped: number;
  /** Mean DICOM size in bytes. */
  meanBytes: number;
  workers: number;
  seconds: number;
  files: SynthManifest['files'];
}

/** File and folder names inside the output directory. */
export const SYNTH_FILES: SynthManifest['files'] = {
  trainDicom: 'dicom-images-train',
  testDicom: 'dicom-images-test',
  trainLabels: 'train-rle.csv',
  sampleSubmission: 'stage_2_sample_submission.csv',
  testLabels: 'test-rle.csv',
};

const UID_ROOT = '1.2.276.0.7230010.3.1';
const UID_SITE = '8323329';

function parametersOf(options: SynthOptions): SynthParameters {
  if (!is.defined(options) || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  if (!is.string(options.out) || options.out === '') throw invalidParameterError('options.out', 'a directory path', options.out);
  assertInteger('options.train', options.train, 0, 1_000_000);
  assertInteger('options.test', options.test, 0, 1_000_000);
  if (options.train + options.test === 0) throw invalidParameterError('options.train + options.test', 'at least one image', 0);
  if (!Number.isSafeInteger(options.seed)) throw invalidParameterError('options.seed', 'a safe integer', options.seed);
  const size = options.size ?? 1024;
  assertInteger('options.size', size, 64, 4096);
  const positiveRate = options.positiveRate ?? 0.22;
  assertNumber('options.positiveRate', positiveRate, 0, 1);
  const quality = options.quality ?? 90;
  assertInteger('options.quality', quality, 1, 100);
  if (options.workers !== undefined) assertInteger('options.workers', options.workers, 0, 256);
  return { seed: options.seed, train: options.train, test: options.test, size, positiveRate, quality };
}

/** The indices of the positive images of a split: an exact, seeded choice. */
function positives(seed: number, split: SynthSplit, count: number, rate: number): Set<number> {
  const order = Array.from({ length: count }, (_, i) => i);
  new Random(deriveSeed(seed, split === 'train' ? 0 : 1, -1)).shuffle(order);
  return new Set(order.slice(0, Math.round(rate * count)));
}

function uuid(rng: Random): string {
  const hex = Array.from({ length: 4 }, () => rng.nextUint32().toString(16).padStart(8, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${'89ab'[rng.int(0, 3)]}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Plans every image: ids, UIDs, tags, positives and file paths (no pixels). */
export function planDataset(parameters: SynthParameters): SynthEntry[] {
  const entries: SynthEntry[] = [];
  for (const split of ['train', 'test'] as const) {
    const count = split === 'train' ? parameters.train : parameters.test;
    const chosen = positives(parameters.seed, split, count, parameters.positiveRate);
    for (let index = 0; index < count; index++) {
      const n = 1000 + (split === 'train' ? index : parameters.train + index);
      const rng = imageRandom({ seed: parameters.seed, split, index }, 3);
      const time = 1517875160 + Math.floor(n / 9);
      const id = `${UID_ROOT}.4.${UID_SITE}.${n}.${time}.${rng.int(100, 999999)}`;
      const studyUid = `${UID_ROOT}.2.${UID_SITE}.${n}.${time}.${rng.int(100, 999999)}`;
      const seriesUid = `${UID_ROOT}.3.${UID_SITE}.${n}.${time}.${rng.int(100, 999999)}`;
      const positive = chosen.has(index);
      const spec: SynthImageSpec = { seed: parameters.seed, split, index, positive, size: parameters.size };
      const female = planImage(spec).anatomy.breast > 0;
      const patient = uuid(rng);
      const view = rng.bool(0.6) ? 'PA' : 'AP';
      const spacing = Number((rng.uniform(0.139, 0.168) * (1024 / parameters.size)).toFixed(6));
      entries.push({
        split,
        index,
        id,
        studyUid,
        seriesUid,
        positive,
        file: join(split === 'train' ? SYNTH_FILES.trainDicom : SYNTH_FILES.testDicom, studyUid, seriesUid, `${id}.dcm`),
        tags: {
          sopInstanceUid: id,
          studyInstanceUid: studyUid,
          seriesInstanceUid: seriesUid,
          patientId: patient,
          patientName: patient,
          patientSex: female ? 'F' : 'M',
          patientAge: String(rng.int(18, 90)),
          viewPosition: view,
          seriesDescription: `view: ${view}`,
          pixelSpacing: [spacing, spacing],
        },
      });
    }
  }
  return entries;
}

/** Writes the manifest, or checks that an existing one has the same parameters. */
async function claimOutput(out: string, parameters: SynthParameters): Promise<void> {
  const path = join(out, 'manifest.json');
  let previous: SynthManifest | undefined;
  try {
    previous = JSON.parse(await readFile(path, 'utf8')) as SynthManifest;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${path}: cannot read the manifest (${(err as Error).message})`);
  }
  if (previous) {
    const old = previous.parameters ?? {};
    const changed = (Object.keys(parameters) as (keyof SynthParameters)[]).filter((key) => old[key] !== parameters[key]);
    if (previous.format !== 'pneumo-native-synth' || changed.length > 0) {
      const what = changed.map((key) => `${key} ${String(old[key])} -> ${parameters[key]}`).join(', ');
      throw new Error(`${out} holds a synthetic dataset made with other parameters (${what || 'unknown format'}): choose another --out or remove it`);
    }
    return;
  }
  await makeDir(out);
  await writeJson(path, manifestOf(parameters));
}

function manifestOf(parameters: SynthParameters, counts?: SynthManifest['counts']): SynthManifest {
  return { format: 'pneumo-native-synth', version: 1, generator: `pneumo-native ${packageVersion()}`, parameters, files: SYNTH_FILES, ...(counts ? { counts } : {}) };
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** Runs the tasks on `workers` threads, or in this thread when 0. */
async function runPool(tasks: SynthTask[], workers: number, onResult: (index: number, result: SynthTaskResult) => void): Promise<void> {
  if (workers === 0) {
    for (const [index, task] of tasks.entries()) onResult(index, await runSynthTask(task));
    return;
  }
  const url = new URL('./worker.js', import.meta.url);
  let next = 0;
  let failed = false;
  const live = new Set<Worker>();
  const runWorker = () =>
    new Promise<void>((resolve, reject) => {
      const worker = new Worker(url);
      live.add(worker);
      const stop = (err?: Error) => {
        live.delete(worker);
        void worker.terminate();
        if (err) {
          failed = true;
          for (const other of live) void other.terminate();
          reject(err);
        } else resolve();
      };
      const feed = () => {
        if (failed || next >= tasks.length) return stop();
        const index = next++;
        worker.postMessage({ index, task: tasks[index] });
      };
      worker.on('message', (reply: SynthWorkerReply) => {
        if (!reply.ok) return stop(new Error(`synthetic image ${tasks[reply.index]?.file}: ${reply.error}`));
        onResult(reply.index, reply.result);
        feed();
      });
      worker.on('error', (err) => stop(new Error(`the synth worker ${url.pathname} failed: ${err.message}`)));
      feed();
    });
  await Promise.all(Array.from({ length: Math.min(workers, tasks.length) }, runWorker));
}

function labelRows(entries: SynthEntry[], rles: string[][]): SubmissionRow[] {
  const rows: SubmissionRow[] = [];
  entries.forEach((entry, i) => {
    const regions = rles[i] ?? [];
    if (regions.length === 0) rows.push({ id: entry.id, rle: '-1' });
    else for (const rle of regions) rows.push({ id: entry.id, rle });
  });
  return rows;
}

/** Generates (or completes) a synthetic SIIM-shaped dataset; see the module comment. */
export async function synthesize(options: SynthOptions): Promise<SynthReport> {
  const parameters = parametersOf(options);
  const workers = options.workers ?? Math.max(1, cpus().length);
  const started = Date.now();
  const { out } = options;
  await claimOutput(out, parameters);
  const entries = planDataset(parameters);
  const tasks: SynthTask[] = entries.map((entry) => ({
    spec: { seed: parameters.seed, split: entry.split, index: entry.index, positive: entry.positive, size: parameters.size },
    file: join(out, entry.file),
    tags: entry.tags,
    quality: parameters.quality,
  }));
  const rles: string[][] = new Array(entries.length);
  let written = 0;
  let bytes = 0;
  let done = 0;
  options.onProgress?.(0, tasks.length);
  await runPool(tasks, workers, (index, result) => {
    rles[index] = result.rle;
    if (result.written) written++;
    bytes += result.bytes;
    options.onProgress?.(++done, tasks.length);
  });

  const train = entries.filter((e) => e.split === 'train');
  const test = entries.filter((e) => e.split === 'test');
  const trainRles = rles.slice(0, train.length);
  const testRles = rles.slice(train.length);
  const countsOf = (list: SynthEntry[], r: string[][]) => ({
    images: list.length,
    positive: r.filter((regions) => regions.length > 0).length,
    regions: r.reduce((sum, regions) => sum + regions.length, 0),
  });
  const counts = { train: countsOf(train, trainRles), test: countsOf(test, testRles) };
  await writeSubmission(join(out, SYNTH_FILES.trainLabels), labelRows(train, trainRles), STAGE1_TRAIN_FORMAT);
  await writeSubmission(join(out, SYNTH_FILES.testLabels), labelRows(test, testRles), STAGE1_TRAIN_FORMAT);
  await writeSubmission(join(out, SYNTH_FILES.sampleSubmission), test.map((e) => ({ id: e.id, rle: '-1' })), SUBMISSION_FORMAT);
  await writeJson(join(out, 'manifest.json'), manifestOf(parameters, counts));
  return {
    out,
    parameters,
    ...counts,
    written,
    skipped: entries.length - written,
    meanBytes: entries.length > 0 ? Math.round(bytes / entries.length) : 0,
    workers,
    seconds: (Date.now() - started) / 1000,
    files: SYNTH_FILES,
  };
}
