/**
 * The demo: the whole SIIM pipeline on a small synthetic dataset, in one work folder:
 * synth -> prepare -> folds -> train (a small backbone, a few minutes on CPU) -> out-of-fold maps
 * with flip TTA -> threshold search -> test maps -> submission -> score, and an HTML report.
 *
 * Every stage leaves a marker (`stages/<name>.json`) with its parameters; a second run with the
 * same parameters reuses what is done, and a stage interrupted half-way resumes (synth, prepare,
 * train and infer are resumable themselves).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../core/atomic-write.js';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { assertInteger, invalidParameterError } from '../core/validate.js';
import { makeFolds, readFolds, writeFolds } from '../data/folds.js';
import { readSampleSubmission, readTrainLabels } from '../data/labels.js';
import { prepare } from '../data/prepare.js';
import { decodeUnion } from '../data/rle.js';
import { SYNTH_FILES, synthesize } from '../data/synth/dataset.js';
import { writeHeatmap } from '../inference/heatmap.js';
import { inferMaps } from '../inference/infer.js';
import { MapReader } from '../inference/maps.js';
import { searchThresholds } from '../inference/search.js';
import { makeSubmission, postprocessMap } from '../inference/submit.js';
import type { Triplet } from '../scoring/triplet.js';
import { loadConfig } from '../training/config.js';
import { trainExperiment } from '../training/trainer.js';
import type { TrainEvent } from '../training/trainer.js';
import { overlayPng, renderReportHtml } from './report.js';
import { runStage } from './stages.js';
import type { StageMarker } from './stages.js';
import type { ReportContent, ReportFigure, ReportStage, ReportTile } from './report.js';

/** The experiment file the demo trains (a small UNet at 256 px, sized for 2 CPU cores). */
export const DEMO_CONFIG = fileURLToPath(new URL('../../models/experiments/synthetic/small.yaml', import.meta.url));

export interface DemoOptions {
  /** The work folder (created); everything the demo writes goes inside it. */
  workdir: string;
  /** Synthetic training images (default 500, the size of the shipped synthetic recipe). */
  train?: number;
  /** Synthetic test images (default 100). */
  test?: number;
  /** Image side of the synthetic DICOMs, the prepared PNGs and the model (default 256). */
  size?: number;
  /** Seed of the dataset (the folds and the training use the experiment's seed). */
  seed?: number;
  /** Training epochs (default: the experiment file's). */
  epochs?: number;
  /** Another experiment file instead of the shipped small one. */
  config?: string;
  /** "auto", "cpu", "cuda" or "cuda:N" (default: the experiment file's). */
  device?: string;
  /** Test images drawn in the report (default 8). */
  tiles?: number;
  /** Progress lines. */
  onLog?: (message: string) => void;
  /** Training events (for a progress bar). */
  onTrainEvent?: (event: TrainEvent) => void;
  /** Progress of the other long stages. */
  onProgress?: (stage: string, done: number, total: number) => void;
}

/** A score split as the SIIM metric report does. */
export interface DemoScore {
  meanDice: number;
  /** Mean Dice on images with pneumothorax. */
  positiveDice: number | null;
  /** Mean Dice on images without. */
  emptyDice: number | null;
  /** What an all-empty submission scores on the same images. */
  emptyBaseline: number;
}

export interface DemoResult {
  workdir: string;
  report: string;
  submission: string;
  /** The test score of the submission. */
  test: DemoScore & { images: number; positives: number };
  /** The threshold search on the out-of-fold maps. */
  validation: DemoScore & { triplet: Triplet; images: number };
  /** The best validated epoch of training (its triplet-grid score). */
  training: { bestEpoch: number | null; bestScore: number | null; epochsRun: number; imagesPerSecond: number; dataWait: number; checkpoint: string };
  stages: ReportStage[];
  seconds: number;
}

const FOLDS = 5;
const VALIDATION_FOLD = 0;

/** Runs `work` unless its marker says it already ran with `params` (the shared `runStage`). */
function stage<T>(workdir: string, stages: ReportStage[], name: string, params: unknown, log: (m: string) => void, work: () => Promise<{ result: T; detail?: string }>): Promise<T> {
  return runStage(workdir, stages, name, params, log, work, 'demo');
}

function scoreOf(meanDice: number | null, positive: number | null, empty: number | null, baseline: number): DemoScore {
  return { meanDice: meanDice ?? NaN, positiveDice: positive, emptyDice: empty, emptyBaseline: baseline };
}

/** Picks report tiles: mostly images with pneumothorax, a few without, in a fixed order. */
function pickTiles(ids: readonly string[], positive: ReadonlySet<string>, count: number): string[] {
  const pos = ids.filter((id) => positive.has(id));
  const neg = ids.filter((id) => !positive.has(id));
  const nNeg = Math.min(neg.length, Math.max(1, Math.round(count / 4)));
  return [...pos.slice(0, count - nNeg), ...neg.slice(0, nNeg)].slice(0, count);
}

/** Runs the demo (see the module comment); resolves with the scores and the report's path. */
export async function runDemo(options: DemoOptions): Promise<DemoResult> {
  if (typeof options?.workdir !== 'string' || options.workdir === '') throw invalidParameterError('workdir', 'a folder path', options?.workdir);
  const train = options.train ?? 500;
  const test = options.test ?? 100;
  const size = options.size ?? 256;
  const seed = options.seed ?? 7;
  const tileCount = options.tiles ?? 8;
  assertInteger('train', train, 20, 100_000);
  assertInteger('test', test, 1, 100_000);
  assertInteger('size', size, 64, 1024);
  assertInteger('seed', seed, 0, 2 ** 32 - 1);
  assertInteger('tiles', tileCount, 0, 64);
  if (size % 32 !== 0) throw new RangeError(`Expected a size that is a multiple of 32 for size but received ${size}`);
  if (options.epochs !== undefined) assertInteger('epochs', options.epochs, 1, 1000);
  const log = options.onLog ?? (() => {});
  const progress = options.onProgress ?? (() => {});
  const workdir = resolve(options.workdir);
  mkdirSync(workdir, { recursive: true });
  const started = performance.now();
  const stages: ReportStage[] = [];

  // 1. Data.
  const dataDir = join(workdir, 'synth');
  await stage(workdir, stages, 'synth', { train, test, size, seed }, log, async () => {
    const r = await synthesize({ out: dataDir, train, test, seed, size, onProgress: (d, t) => progress('synth', d, t) });
    return { result: { train: r.train, test: r.test }, detail: `${r.train.images} train (${r.train.positive} with pneumothorax), ${r.test.images} test` };
  });
  const prepared = join(workdir, `png${size}`);
  await stage(workdir, stages, 'prepare', { size }, log, async () => {
    const r = await prepare({
      trainDicom: join(dataDir, SYNTH_FILES.trainDicom),
      testDicom: join(dataDir, SYNTH_FILES.testDicom),
      labels: join(dataDir, SYNTH_FILES.trainLabels),
      out: prepared,
      imgSize: size,
      onProgress: (d, t) => progress('prepare', d, t),
    });
    if (r.failures.length > 0) throw new Error(`prepare failed on ${r.failures.length} images, first: ${r.failures[0]!.file}: ${r.failures[0]!.reason}`);
    return { result: { train: r.train.total, test: r.test.total } };
  });
  const trainLabels = await readTrainLabels(join(dataDir, SYNTH_FILES.trainLabels));
  const foldsFile = join(prepared, 'folds.csv');
  await stage(workdir, stages, 'folds', { k: FOLDS, seed: 42 }, log, async () => {
    await writeFolds(foldsFile, makeFolds(trainLabels, { k: FOLDS, seed: 42 }));
    return { result: { k: FOLDS } };
  });

  // 2. Training (resumable by itself: an interrupted demo continues from the last epoch).
  const configPath = options.config ?? DEMO_CONFIG;
  const overrides: Record<string, unknown> = {
    data: { dir: prepared, folds: foldsFile, imgSize: size },
    output: { dir: join(workdir, 'experiments') },
    folds: { use: [VALIDATION_FOLD] },
    ...(options.device ? { device: options.device } : {}),
    ...(options.epochs ? { training: { epochs: options.epochs } } : {}),
  };
  const config = loadConfig(configPath, overrides);
  const training = await stage(workdir, stages, 'train', { config }, log, async () => {
    const r = await trainExperiment(config, { resume: true, ...(options.onTrainEvent ? { onEvent: options.onTrainEvent } : {}) });
    const fold = r.folds[0]!;
    if (!fold.bestCheckpoint) throw new Error(`training wrote no checkpoint (see ${fold.dir}/train.log)`);
    const result = {
      bestEpoch: fold.best?.epoch ?? null,
      bestScore: fold.best?.score ?? null,
      epochsRun: fold.epochsRun,
      imagesPerSecond: fold.imagesPerSecond,
      dataWait: fold.dataWait,
      checkpoint: fold.bestCheckpoint,
      dir: fold.dir,
    };
    return { result, detail: `${fold.epochsRun} epochs, best epoch ${result.bestEpoch} (score ${result.bestScore?.toFixed(4)}), ${fold.imagesPerSecond.toFixed(1)} images/s, data wait ${(fold.dataWait * 100).toFixed(1)}%` };
  });

  // 3. Out-of-fold maps and the threshold search.
  const mapsDir = join(workdir, 'maps');
  mkdirSync(mapsDir, { recursive: true });
  const oofMaps = join(mapsDir, `oof-fold${VALIDATION_FOLD}.pnm`);
  const models = [{ path: training.checkpoint }];
  await stage(workdir, stages, 'infer-oof', { checkpoint: training.checkpoint, fold: VALIDATION_FOLD }, log, async () => {
    const rows = await readFolds(foldsFile);
    const images = rows.filter((r) => r.fold === VALIDATION_FOLD).map((r) => ({ id: r.id, path: join(prepared, 'train', r.fname) }));
    const r = await inferMaps(models, images, oofMaps, { tta: true, size, overwrite: true, onProgress: (d, t) => progress('infer-oof', d, t) });
    return { result: { images: r.images }, detail: `${r.images} images with flip TTA, ${r.imagesPerSecond.toFixed(1)} images/s` };
  });
  const search = await stage(workdir, stages, 'thresholds', { oofMaps, checkpoint: training.checkpoint }, log, async () => {
    const r = await searchThresholds([oofMaps], trainLabels, { truthSize: size, areaSize: 1024 });
    for (const bottom of [...new Set(r.scores.map((s) => s.triplet[2]))]) {
      await writeHeatmap(join(mapsDir, `thresholds-bottom${bottom}.png`), r.scores.filter((s) => s.triplet[2] === bottom), `Out-of-fold mean Dice, bottom ${bottom}`);
    }
    return {
      result: { best: r.best, emptyBaseline: r.emptyBaseline, images: r.images, bottoms: [...new Set(r.scores.map((s) => s.triplet[2]))] },
      detail: `${r.scores.length} triplets on ${r.images} maps; best (${r.best.triplet.join(', ')}) ${r.best.meanDice?.toFixed(4)}`,
    };
  });

  // 4. Test maps, submission, score.
  const testMaps = join(mapsDir, 'test.pnm');
  const sample = join(dataDir, SYNTH_FILES.sampleSubmission);
  const sampleIds = await readSampleSubmission(sample);
  await stage(workdir, stages, 'infer-test', { checkpoint: training.checkpoint, test }, log, async () => {
    const images = sampleIds.map((id) => ({ id, path: join(prepared, 'test', `${id}.png`) }));
    const r = await inferMaps(models, images, testMaps, { tta: true, size, overwrite: true, onProgress: (d, t) => progress('infer-test', d, t) });
    return { result: { images: r.images }, detail: `${r.images} images with flip TTA, ${r.imagesPerSecond.toFixed(1)} images/s` };
  });
  const testTruth = await readTrainLabels(join(dataDir, SYNTH_FILES.testLabels));
  const submission = join(workdir, 'submission.csv');
  const triplet = search.best.triplet as Triplet;
  const submitted = await stage(workdir, stages, 'submit', { testMaps, triplet, checkpoint: training.checkpoint }, log, async () => {
    const r = await makeSubmission([testMaps], sampleIds, submission, { triplet, size, truth: testTruth });
    if (!r.score) throw new Error('submit returned no score although the truth was given');
    return {
      result: { positives: r.positives, images: r.images, score: r.score },
      detail: `${r.images} images, ${r.positives} with a mask; mean Dice ${r.score.meanDice?.toFixed(4)} (all-empty ${r.score.emptyBaseline.toFixed(4)})`,
    };
  });

  // 5. The report.
  const report = join(workdir, 'report.html');
  const positiveIds = new Set([...testTruth].filter(([, rows]) => rows.some((r) => r.trim() !== '-1')).map(([id]) => id));
  const tiles: ReportTile[] = [];
  const reader = await MapReader.open(testMaps);
  try {
    for (const id of pickTiles(sampleIds, positiveIds, tileCount)) {
      const probs = await reader.read(id);
      const [height, width] = [reader.height, reader.width];
      const predicted = postprocessMap(probs, height, width, { triplet }).mask;
      const truth = decodeUnion(testTruth.get(id) ?? ['-1'], size, size, id);
      const image = new Uint8Array(await sharp(join(prepared, 'test', `${id}.png`)).toColourspace('b-w').resize(width, height).raw().toBuffer());
      const truthAtMap = width === size ? truth : new Uint8Array(await sharp(truth, { raw: { width: size, height: size, channels: 1 } }).resize(width, height, { kernel: 'nearest' }).raw().toBuffer());
      let inter = 0;
      let p = 0;
      let t = 0;
      for (let i = 0; i < predicted.length; i += 1) {
        p += predicted[i]!;
        t += truthAtMap[i]!;
        inter += predicted[i]! & truthAtMap[i]!;
      }
      const dice = p + t === 0 ? 1 : (2 * inter) / (p + t);
      tiles.push({ id, png: await overlayPng({ image, predicted, truth: truthAtMap, size: width }), caption: `Dice ${dice.toFixed(2)} · truth ${t} px · predicted ${p} px` });
    }
  } finally {
    await reader.close();
  }
  const figures: ReportFigure[] = [];
  const curves = join(training.dir, 'curves.png');
  if (existsSync(curves)) figures.push({ title: 'Training curves', png: curves, caption: 'loss by epoch; validation score, Dice on positive images and the all-empty baseline' });
  for (const bottom of search.bottoms) {
    const path = join(mapsDir, `thresholds-bottom${bottom}.png`);
    if (existsSync(path)) figures.push({ title: `Threshold search, bottom ${bottom}`, png: path, caption: 'out-of-fold mean Dice over (top, area)' });
  }
  const score = submitted.score;
  const content: ReportContent = {
    title: 'pneumo-native demo: synthetic pneumothorax segmentation',
    summary: [
      `${train} synthetic training and ${test} test chest X-rays at ${size} x ${size}; ${config.model.backbone} trained on folds 1-4 and validated on fold 0 (${training.epochsRun} epochs).`,
      `Work folder: ${workdir}`,
    ],
    scores: [
      { label: 'test submission', meanDice: score.meanDice ?? NaN, positiveDice: score.nonEmpty.meanDice ?? NaN, emptyDice: score.empty.meanDice ?? NaN },
      { label: 'test, all empty', meanDice: score.emptyBaseline, positiveDice: score.nonEmpty.count > 0 ? 0 : NaN, emptyDice: score.empty.count > 0 ? 1 : NaN },
      { label: 'out-of-fold, best triplet', meanDice: search.best.meanDice ?? NaN, positiveDice: search.best.nonEmpty.meanDice ?? NaN, emptyDice: search.best.empty.meanDice ?? NaN },
      { label: 'out-of-fold, all empty', meanDice: search.emptyBaseline, positiveDice: search.best.nonEmpty.count > 0 ? 0 : NaN, emptyDice: search.best.empty.count > 0 ? 1 : NaN },
    ],
    facts: [
      ['triplet (top, area, bottom)', triplet.join(', ')],
      ['test images with a predicted mask', `${submitted.positives} of ${submitted.images} (${positiveIds.size} truly positive)`],
      ['training speed', `${training.imagesPerSecond.toFixed(1)} images/s, ${(training.dataWait * 100).toFixed(1)}% of step time waiting for data`],
      ['best checkpoint', training.checkpoint],
      ['submission', submission],
    ],
    stages,
    figures,
    tiles,
  };
  await writeFileAtomic(report, renderReportHtml(content));
  log(`demo: report written to ${report}`);

  return {
    workdir,
    report,
    submission,
    test: { ...scoreOf(score.meanDice, score.nonEmpty.meanDice, score.empty.meanDice, score.emptyBaseline), images: submitted.images, positives: submitted.positives },
    validation: { ...scoreOf(search.best.meanDice ?? NaN, search.best.nonEmpty.meanDice, search.best.empty.meanDice, search.emptyBaseline), triplet, images: search.images },
    training: { bestEpoch: training.bestEpoch, bestScore: training.bestScore, epochsRun: training.epochsRun, imagesPerSecond: training.imagesPerSecond, dataWait: training.dataWait, checkpoint: training.checkpoint },
    stages,
    seconds: (performance.now() - started) / 1000,
  };
}

/** Reads a finished demo's result back (for tools that want the numbers without rerunning). */
export async function readDemoStages(workdir: string): Promise<Record<string, StageMarker>> {
  const out: Record<string, StageMarker> = {};
  for (const name of ['synth', 'prepare', 'folds', 'train', 'infer-oof', 'thresholds', 'infer-test', 'submit']) {
    const path = join(resolve(workdir), 'stages', `${name}.json`);
    if (existsSync(path)) out[name] = JSON.parse(await readFile(path, 'utf8')) as StageMarker;
  }
  return out;
}
