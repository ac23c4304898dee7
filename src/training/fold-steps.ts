/**
 * The steps of one fold's training (`trainFold` in trainer.ts runs them in this order):
 *
 * 1. `openFoldRun`: the run folder, train.log, the fold's split and the device;
 * 2. `resumeRun`: continue from `last.ckpt` (else the trainer builds the initial model);
 * 3. `openLoaders`, `startEngine`: batches read ahead, the native engine (optimizer state,
 *    data-parallel attachment);
 * 4. per epoch: `trainEpoch` (the steps), `validateEpoch` (score, best, plateau schedule),
 *    `keepCheckpoints` (top-K, best.ckpt, averaged epochs), `endEpoch` (history, `last.ckpt`,
 *    curves, early stopping);
 * 5. `foldResult`: the outcome.
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { deriveSeed } from '../core/random.js';
import { defaultDevice, manualSeed, setCudnnOptions } from '../core/runtime.js';
import type { Tensor } from '../core/tensor.js';
import type { ProcessGroup } from '../distributed/index.js';
import { shardEpoch } from '../distributed/index.js';
import { Model } from '../models/model.js';
import type { AugmentPipeline } from './augment/pipeline.js';
import type { ExperimentConfig } from './config.js';
import { renderCurves } from './curves.js';
import { TrainEngine } from './engine.js';
import type { TrainEngineOptions } from './engine.js';
import { BatchLoader, splitFold } from './loader.js';
import type { PreparedDataset, TrainingSample } from './loader.js';
import type { LrControl } from './lr-control.js';
import { RunFiles, copyAtomic, writeAtomic } from './run-files.js';
import type { EpochRecord, ValidationRecord } from './run-files.js';
import type { EpochSampler } from './sampler.js';
import type { FoldResult, KeptCheckpoint, TrainerState, TrainEvent, TrainOptions } from './trainer.js';
import { validate } from './validation.js';

/** Thrown when the loss becomes NaN or infinite: the run stops, its last good checkpoint kept. */
export class TrainingDivergedError extends Error {
  constructor(
    message: string,
    /** The last good checkpoint (`last.ckpt`), or null when none was written yet. */
    readonly lastCheckpoint: string | null,
  ) {
    super(message);
    this.name = 'TrainingDivergedError';
  }
}

/** The text of a validation for logs: the score beside the all-empty baseline. */
export function describeValidation(v: ValidationRecord, task: ExperimentConfig['task'] = 'segment'): string {
  if (task === 'classify') return `val AUC ${v.score.toFixed(4)}, accuracy ${(v.accuracy ?? NaN).toFixed(4)} (all-negative accuracy ${v.emptyBaseline.toFixed(4)})`;
  const t = v.triplet ? ` at (${v.triplet.join(', ')})` : '';
  const pos = v.dicePositive === null ? '' : `, Dice on positive images ${v.dicePositive.toFixed(4)}`;
  return `val Dice ${v.score.toFixed(4)}${t} (all-empty baseline ${v.emptyBaseline.toFixed(4)})${pos}`;
}

/** One fold's run: its folder, its log, its split and where it trains. */
export interface FoldRun {
  config: ExperimentConfig;
  fold: number;
  files: RunFiles;
  /** Only rank 0 writes (checkpoints, logs, curves); every rank reads. */
  writer: boolean;
  distributed: TrainOptions['distributed'];
  group: ProcessGroup | undefined;
  started: number;
  emit: (event: TrainEvent) => void;
  /** Reports a line and appends it to train.log (rank 0), in order. */
  log: (message: string) => void;
  /** Resolves once every line logged so far is in train.log. */
  logged: () => Promise<void>;
  train: TrainingSample[];
  val: TrainingSample[];
  device: string;
}

/** What a fold starts from: a fresh trainer state and model, or those of `last.ckpt`. */
export interface FoldStart {
  state: TrainerState;
  model: Model;
  optimizerState: Map<string, Tensor> | null;
  resumedAt: number | null;
}

/** What the epoch steps share once the fold is set up. */
export interface FoldTraining {
  model: Model;
  engine: TrainEngine;
  trainLoader: BatchLoader;
  valLoader: BatchLoader;
  sampler: EpochSampler;
  lr: LrControl;
  state: TrainerState;
  /** Whether the steps feed the images' labels (the classifier, or the joint label loss). */
  labels: boolean;
  rank: number;
  worldSize: number;
}

export function emptyState(): TrainerState {
  return { version: 1, epoch: 0, best: null, sinceImprovement: 0, topK: [], lr: { plateau: null }, history: [], finished: null };
}

function formatLr(lr: number): string {
  return lr.toExponential(2);
}

/** Dotted paths whose values differ between two configs (for the resume note). */
function changedPaths(before: unknown, after: unknown, prefix = ''): string[] {
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    return keys.flatMap((k) => changedPaths(before[k], after[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [prefix || '(root)'];
}

/** Creates the fold's folder (rank 0), its ordered train.log, its split and its device. */
export async function openFoldRun(config: ExperimentConfig, dataset: PreparedDataset, fold: number, dir: string, options: TrainOptions): Promise<FoldRun> {
  const emit = options.onEvent ?? (() => undefined);
  const group = options.distributed?.group;
  const writer = group === undefined || group.isMain;
  const files = new RunFiles(dir);
  if (writer) await files.create();
  const started = performance.now();
  // train.log lines are appended in order; the fold waits for them before it returns.
  let logged: Promise<void> = Promise.resolve();
  const log = (message: string): void => {
    emit({ type: 'log', fold, message });
    if (writer) logged = logged.then(() => files.appendLog(message)).catch(() => undefined);
  };
  const { train, val } = splitFold(dataset, fold);
  const device = config.device === 'auto' ? await defaultDevice() : config.device;
  if (device.startsWith('cuda')) {
    // Fixed-size batches: let cuDNN autotune, unless a reproducible run is asked for.
    setCudnnOptions({ benchmark: !config.training.deterministic, deterministic: config.training.deterministic });
  }
  return { config, fold, files, writer, distributed: options.distributed, group, started, emit, log, logged: () => logged, train, val, device };
}

/**
 * The fold's `last.ckpt` as its start (epoch checkpoints it does not record removed), or null
 * when the fold has none.
 * @throws Error when `last.ckpt` exists without `resume`, or was not written by the trainer
 */
export async function resumeRun(run: FoldRun, resume: boolean): Promise<FoldStart | null> {
  const { config, files, writer, log } = run;
  if (!existsSync(files.last)) return null;
  if (!resume) {
    throw new Error(`${files.dir} already holds a run (last.ckpt): pass --resume to continue it, or remove the folder (or change name/output.dir) to start over`);
  }
  const loaded = await Model.loadCheckpoint(files.last, { device: run.device });
  const saved = loaded.metadata.trainer as TrainerState | undefined;
  if (!saved || saved.version !== 1) throw new Error(`${files.last} holds no trainer state: it was not written by pneumo-native train`);
  const state = saved;
  // The run folder may have moved: checkpoints are found by name in it.
  state.topK = state.topK.map((c) => ({ ...c, path: join(files.dir, basename(c.path)) }));
  // Epoch checkpoints of an epoch that was interrupted before last.ckpt recorded it.
  const kept = new Set(state.topK.map((c) => basename(c.path)));
  if (writer) {
    for (const name of readdirSync(files.dir)) {
      const m = /^epoch(\d+)\.ckpt$/.exec(name);
      if (m && !kept.has(name) && !(config.checkpoints.keepEpochs.includes(Number(m[1])) && Number(m[1]) < state.epoch)) await files.remove(join(files.dir, name));
    }
  }
  log(`resuming ${files.dir} at epoch ${state.epoch}`);
  const changed = changedPaths(loaded.metadata.config, config);
  if (changed.length > 0) log(`note: the config differs from the one the run started with (${changed.join(', ')}): the rest of the run follows the new values`);
  return { state, model: loaded.model, optimizerState: loaded.optimizer, resumedAt: state.epoch };
}

/** The fold's outcome from its trainer state. */
export function foldResult(run: FoldRun, state: TrainerState, stopped: FoldResult['stopped']): FoldResult {
  const bestRecord = state.best ? state.history.find((r) => r.epoch === state.best!.epoch)?.validation ?? null : null;
  const trainSeconds = state.history.reduce((a, r) => a + r.seconds, 0);
  const waited = state.history.reduce((a, r) => a + r.dataWait * r.seconds, 0);
  const images = state.history.reduce((a, r) => a + r.images, 0);
  return {
    fold: run.fold,
    dir: run.files.dir,
    epochsRun: state.history.length,
    stopped,
    best: state.best && bestRecord ? { ...state.best, validation: bestRecord } : null,
    bestCheckpoint: state.best ? run.files.best : null,
    topK: state.topK,
    dataWait: trainSeconds > 0 ? waited / trainSeconds : 0,
    imagesPerSecond: trainSeconds > 0 ? images / trainSeconds : 0,
    seconds: (performance.now() - run.started) / 1000,
  };
}

/** The training and validation batch loaders of the fold (validation: normalisation only). */
export function openLoaders(run: FoldRun, dataset: PreparedDataset, pipelines: { train: AugmentPipeline; val: AugmentPipeline }, channels: 1 | 3): { trainLoader: BatchLoader; valLoader: BatchLoader } {
  const { config, device } = run;
  const trainLoader = new BatchLoader(run.train, {
    size: config.data.imgSize,
    batchSize: config.training.batchSize,
    pipeline: pipelines.train,
    channels,
    depth: Math.max(1, config.data.workers),
    device,
    preparedSize: dataset.preparedSize,
    maskDilation: config.data.maskDilation,
  });
  const valLoader = new BatchLoader(run.val, {
    size: config.data.imgSize,
    batchSize: Math.max(config.training.batchSize, 4),
    pipeline: pipelines.val,
    channels,
    depth: Math.max(1, config.data.workers),
    device,
    preparedSize: dataset.preparedSize,
    maskDilation: config.data.maskDilation,
  });
  return { trainLoader, valLoader };
}

/**
 * The native engine over `model`, with the resumed optimizer state (whose tensors it then frees)
 * and, data-parallel, rank 0's weights and c10d's Reducer. The engine is freed if a step fails.
 */
export async function startEngine(run: FoldRun, model: Model, options: TrainEngineOptions, optimizerState: Map<string, Tensor> | null): Promise<TrainEngine> {
  const engine = TrainEngine.create(model, options);
  try {
    if (optimizerState) {
      await engine.loadOptimizerState(optimizerState);
      for (const t of optimizerState.values()) t.dispose();
    }
    const { group, distributed: dist, config, log } = run;
    if (group) {
      // Every rank starts from rank 0's weights and statistics; c10d's Reducer averages gradients.
      await group.broadcastModel(model, 0);
      const syncBatchNorm = dist?.syncBatchNorm ?? config.training.syncBatchNorm;
      const synced = engine.attachDistributed(group, { ...(dist?.bucketMb !== undefined ? { bucketMb: dist.bucketMb } : {}), broadcastBuffers: dist?.broadcastBuffers ?? true, syncBatchNorm });
      if (syncBatchNorm) log(`SyncBatchNorm: ${synced} BatchNorm layers normalise over the global batch of ${group.worldSize} ranks`);
    } else if (config.training.syncBatchNorm) {
      log('training.syncBatchNorm: one process, so BatchNorm is unchanged (it synchronises only in a data-parallel run)');
    }
  } catch (err) {
    engine.dispose();
    throw err;
  }
  return engine;
}

/**
 * One epoch of steps: the sampler's plan (this rank's shard of it), the learning rate per step,
 * the native step, divergence checks; the epoch's record (validation still null).
 * @throws TrainingDivergedError when the loss becomes NaN or infinite
 */
export async function trainEpoch(run: FoldRun, t: FoldTraining, epoch: number): Promise<EpochRecord> {
  const { config, fold, files, group, emit } = run;
  const { model, engine, trainLoader, sampler, lr, state, rank, worldSize } = t;
  const epochs = config.training.epochs;
  manualSeed(deriveSeed(config.seed, config.part, fold, epoch));
  const frozen = epoch < config.training.freezeEncoderEpochs;
  model.freezeEncoder(frozen);
  model.train();
  const plan = sampler.epoch(epoch);
  // Data-parallel: this rank's slice of every global batch (batch x ranks), same step count on every rank.
  const shard = group ? shardEpoch(plan.indices, config.training.batchSize, rank, worldSize) : null;
  let steps = shard ? shard.steps : Math.ceil(plan.indices.length / config.training.batchSize);
  if (config.training.maxStepsPerEpoch > 0) steps = Math.min(steps, config.training.maxStepsPerEpoch);
  // Whole accumulation cycles only: no gradients left over across an epoch (or a resume).
  const acc = config.training.accumulation;
  if (steps >= acc) steps -= steps % acc;
  emit({ type: 'epoch-start', fold, epoch, epochs, steps, images: Math.min(plan.indices.length, steps * config.training.batchSize * worldSize), sampleRate: plan.sampleRate ?? null, encoderFrozen: frozen });

  const epochStart = performance.now();
  trainLoader.resetCounters();
  let lossSum = 0;
  let gradSum = 0;
  let gradCount = 0;
  let images = 0;
  let step = 0;
  let currentLr = config.optimizer.lr;
  let waitShare: number | null = null;
  // Each rank augments its batches from its own seed (rank 0, and a 1-process run: the plain seed).
  const augmentSeed = rank === 0 ? deriveSeed(config.seed, config.part, fold, epoch, 1) : deriveSeed(config.seed, config.part, fold, epoch, 1, rank);
  for await (const batch of trainLoader.epoch(shard ? shard.indices : plan.indices, augmentSeed, steps)) {
    try {
      const factor = lr.factor(epoch, step, steps);
      engine.scaleLr(factor);
      currentLr = config.optimizer.lr * factor;
      const out = await engine.step(batch.images, batch.masks, t.labels ? batch.labels : undefined).catch((err: unknown) => {
        // A collective inside backward (c10d's Reducer) failed: say where, and why it usually happens.
        const message = err instanceof Error ? err.message : String(err);
        if (!group || /failed on rank/.test(message)) throw err;
        throw new Error(`data-parallel step ${step} of epoch ${epoch} failed on rank ${rank} of ${worldSize}: ${message} (another rank probably stopped: see its log)`);
      });
      if (!out.finite || !Number.isFinite(out.loss)) {
        const last = state.epoch > 0 && existsSync(files.last) ? files.last : null;
        const keep = last ? `the last good checkpoint is ${last} (after epoch ${state.epoch - 1})` : 'no checkpoint was written (it diverged in the first epoch)';
        const message = `training diverged: the loss is ${out.loss} at epoch ${epoch}, step ${step} (lr ${formatLr(currentLr)}); stopped without saving this epoch; ${keep}. Lower optimizer.lr or check the input images.`;
        run.log(message);
        throw new TrainingDivergedError(message, last);
      }
      lossSum += out.loss;
      if (out.stepped && Number.isFinite(out.gradNorm)) {
        gradSum += out.gradNorm;
        gradCount++;
      }
      images += batch.ids.length;
      step++;
      const elapsed = (performance.now() - epochStart) / 1000;
      emit({ type: 'step', fold, epoch, step, steps, loss: lossSum / step, lr: currentLr, imagesPerSecond: images / elapsed, dataWait: trainLoader.waitSeconds / elapsed });
    } finally {
      batch.dispose();
    }
  }
  const seconds = (performance.now() - epochStart) / 1000;
  if (group) {
    // The epoch's figures over every rank: mean loss and gradient norm, images summed.
    const [l, ls, g, gs, im, w] = await group.allReduceSum([lossSum, step, gradSum, gradCount, images, trainLoader.waitSeconds]);
    lossSum = (l! / ls!) * step;
    gradSum = g!;
    gradCount = gs!;
    images = im!;
    waitShare = w! / worldSize;
  }
  const groups = engine.groups;
  const encoderGroup = config.optimizer.encoderLr !== null ? groups.find((g) => g.lr !== groups[0]?.lr) : undefined;
  return {
    epoch,
    loss: step > 0 ? lossSum / step : NaN,
    lr: currentLr,
    encoderLr: encoderGroup ? encoderGroup.lr : null,
    encoderFrozen: frozen,
    images,
    steps: step,
    sampleRate: plan.sampleRate ?? null,
    gradNorm: gradCount > 0 ? gradSum / gradCount : NaN,
    seconds,
    imagesPerSecond: seconds > 0 ? images / seconds : 0,
    dataWait: seconds > 0 ? (waitShare ?? trainLoader.waitSeconds) / seconds : 0,
    validation: null,
  };
}

/**
 * Validates after `epoch` (sharded and gathered when data-parallel) into `record.validation`,
 * feeds the plateau schedule and tracks the best score. Resolves with whether it improved.
 */
export async function validateEpoch(run: FoldRun, t: FoldTraining, epoch: number, record: EpochRecord): Promise<boolean> {
  const { config, fold, group } = run;
  const { state, rank, worldSize } = t;
  run.emit({ type: 'validation-start', fold, epoch, images: run.val.length });
  const v = await validate(t.model, t.valLoader, config, group ? { rank, worldSize, gather: (bytes) => group.allGatherBytes(bytes) } : undefined);
  record.validation = v;
  t.lr.onValidation(v.score);
  const improved = state.best === null || v.score > state.best.score;
  if (improved) {
    state.best = { score: v.score, epoch };
    state.sinceImprovement = 0;
  } else {
    state.sinceImprovement += 1;
  }
  return improved;
}

/**
 * The checkpoint policy after an epoch: a validated epoch enters the top K when there is room or
 * it beats the worst kept (which is then removed, unless `checkpoints.keepEpochs` keeps it), a new
 * best is copied to `best.ckpt`, and an epoch of `checkpoints.keepEpochs` is always saved.
 */
export async function keepCheckpoints(run: FoldRun, t: FoldTraining, epoch: number, record: EpochRecord, improved: boolean): Promise<void> {
  const { config, fold, files, writer } = run;
  const { model, engine, state } = t;
  const v = record.validation;
  if (v) {
    const worst = state.topK.reduce<KeptCheckpoint | null>((w, c) => (w === null || c.score < w.score || (c.score === w.score && c.epoch > w.epoch) ? c : w), null);
    if (state.topK.length < config.checkpoints.topK || (worst !== null && v.score > worst.score)) {
      const path = files.epochCheckpoint(epoch);
      if (writer) await saveCheckpoint(model, engine, path, checkpointMetadata(config, fold, epoch, v));
      state.topK.push({ epoch, score: v.score, path });
      state.topK.sort((a, b) => b.score - a.score || a.epoch - b.epoch);
      while (state.topK.length > config.checkpoints.topK) {
        const dropped = state.topK.pop()!;
        // An epoch kept for averaging (checkpoints.keepEpochs) leaves the top K but not the disk.
        if (writer && !config.checkpoints.keepEpochs.includes(dropped.epoch)) await files.remove(dropped.path);
      }
      if (improved && writer) await copyAtomic(path, files.best);
    }
  }
  // Rank 0 alone writes: every rank holds the same weights, and one file has one writer.
  if (writer && config.checkpoints.keepEpochs.includes(epoch) && !existsSync(files.epochCheckpoint(epoch))) {
    await saveCheckpoint(model, engine, files.epochCheckpoint(epoch), checkpointMetadata(config, fold, epoch, record.validation));
  }
}

/**
 * Closes an epoch: its record in the history, the fold finished (completed or early-stopped) or
 * not, the resume point `last.ckpt` with summary files and curves (rank 0), the log line and the
 * `epoch-end` event. Resolves with whether early stopping ends the fold.
 */
export async function endEpoch(run: FoldRun, t: FoldTraining, epoch: number, record: EpochRecord, improved: boolean): Promise<boolean> {
  const { config, fold, files, writer, log } = run;
  const { model, engine, state } = t;
  state.history.push(record);
  state.epoch = epoch + 1;
  state.lr = t.lr.toJSON();
  const earlyStop = config.training.earlyStopping > 0 && state.sinceImprovement >= config.training.earlyStopping;
  if (earlyStop) state.finished = 'early-stopped';
  else if (state.epoch >= config.training.epochs) state.finished = 'completed';
  // The resume point: weights, optimizer and trainer state in one atomic file.
  if (writer) {
    await saveCheckpoint(model, engine, files.last, { ...checkpointMetadata(config, fold, epoch, record.validation), trainer: state });
    await files.writeHistory(state.history);
    await writeAtomic(files.curves, await renderCurves(state.history, `${config.name} part ${config.part} fold ${fold}`));
  }
  const parts = [`epoch ${epoch}: loss ${record.loss.toFixed(4)}, lr ${formatLr(record.lr)}, ${record.imagesPerSecond.toFixed(1)} images/s, data wait ${(100 * record.dataWait).toFixed(1)}%`];
  if (record.validation) parts.push(describeValidation(record.validation, config.task) + (improved ? ' (best)' : ''));
  if (String(run.device).startsWith('cuda')) {
    const graph = engine.graphStatus();
    parts.push(graph.active ? `CUDA graph (${graph.captures} captured, ${graph.replays} replays)` : `eager steps: ${graph.reason}`);
  }
  log(parts.join('; '));
  run.emit({ type: 'epoch-end', fold, record, best: state.best, improved });
  if (earlyStop) {
    log(`early stopping: no improvement in ${state.sinceImprovement} validations (best ${state.best?.score.toFixed(4)} at epoch ${state.best?.epoch})`);
  }
  return earlyStop;
}

/** Model.save with the engine's optimizer state (copies, freed after writing). */
async function saveCheckpoint(model: Model, engine: TrainEngine, path: string, metadata: Record<string, unknown>): Promise<void> {
  const optimizer = await engine.optimizerState();
  try {
    await model.save(path, { metadata, optimizer });
  } finally {
    for (const t of optimizer.values()) t.dispose();
  }
}

function checkpointMetadata(config: ExperimentConfig, fold: number, epoch: number, validation: ValidationRecord | null): Record<string, unknown> {
  return { writer: 'pneumo-native train', name: config.name, part: config.part, fold, epoch, task: config.task, imgSize: config.data.imgSize, score: validation?.score ?? null, validation, config };
}
