/**
 * The training loop of `pneumo-native train`: one experiment part, fold after fold.
 *
 * Per fold, in `<output.dir>/<name>/part<part>/fold<k>/`: epochs drawn by the sampler (the sample
 * rate sliding as configured), batches read and augmented ahead by `BatchLoader` while the native
 * `TrainEngine` steps (forward, loss, backward, clip, optimizer in one call), the learning rate
 * set per step (`LrControl`), the encoder frozen for the first epochs, validation every N epochs
 * (mean per-image Dice over the triplet grid, computed natively), top-K checkpoints with the best
 * copied to `best.ckpt`, early stopping, `summary.csv`, `metrics.jsonl`, `train.log` and
 * `curves.png`.
 *
 * Determinism: everything random derives from the config's seed, the part, the fold and the epoch
 * (the sampler's order, each batch's augmentation, LibTorch's generator re-seeded per epoch), so a
 * run is reproducible and `last.ckpt` (written atomically after every epoch with the weights, the
 * optimizer state and the trainer state) resumes exactly after a `kill -9`.
 *
 * A non-finite loss stops the run with `TrainingDivergedError`; nothing of the diverged epoch is
 * saved, so `last.ckpt` and `best.ckpt` stay the last good state.
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { deriveSeed } from '../core/random.js';
import { ALWAYS_TRAIN_FOLD } from '../data/folds.js';
import { defaultDevice, setCudnnOptions, manualSeed } from '../core/runtime.js';
import { Tensor } from '../core/tensor.js';
import { Model, readWeightsFile } from '../models/model.js';
import type { EncoderWeightsReport } from '../models/model.js';
import { AugmentPipeline } from './augment/pipeline.js';
import type { AugmentPreset } from './augment/presets.js';
import type { ExperimentConfig } from './config.js';
import { renderCurves } from './curves.js';
import { TrainEngine } from './engine.js';
import type { LossTerm, TrainEngineOptions } from './engine.js';
import { BatchLoader, openPreparedDataset, splitFold } from './loader.js';
import type { PreparedDataset, TrainingSample } from './loader.js';
import { LrControl } from './lr-control.js';
import type { LrControlState } from './lr-control.js';
import type { OptimizerSpec } from './optimizers.js';
import { readPipelineFile } from './preview.js';
import { RunFiles, copyAtomic, writeAtomic } from './run-files.js';
import type { EpochRecord, ValidationRecord } from './run-files.js';
import { EpochSampler } from './sampler.js';
import type { SamplerConfig } from './sampler.js';
import { validate } from './validation.js';
import { shardEpoch } from '../distributed/index.js';
import type { DistributedTraining } from '../distributed/index.js';

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

/** A kept checkpoint of a validated epoch. */
export interface KeptCheckpoint {
  epoch: number;
  score: number;
  path: string;
}

/** What `last.ckpt` stores besides the weights and the optimizer: enough to continue exactly. */
export interface TrainerState {
  version: 1;
  /** The next epoch to run. */
  epoch: number;
  best: { score: number; epoch: number } | null;
  /** Validations since the best one. */
  sinceImprovement: number;
  topK: KeptCheckpoint[];
  lr: LrControlState;
  history: EpochRecord[];
  /** Set when the fold is done: "completed" or "early-stopped". */
  finished: 'completed' | 'early-stopped' | null;
}

/** Progress reported while training (the CLI draws its progress bar from these). */
export type TrainEvent =
  | { type: 'fold-start'; fold: number; dir: string; trainImages: number; valImages: number; epochs: number; resumedAt: number | null; device: string; model: string }
  | { type: 'epoch-start'; fold: number; epoch: number; epochs: number; steps: number; images: number; sampleRate: number | null; encoderFrozen: boolean }
  | { type: 'step'; fold: number; epoch: number; step: number; steps: number; loss: number; lr: number; imagesPerSecond: number; dataWait: number }
  | { type: 'validation-start'; fold: number; epoch: number; images: number }
  | { type: 'epoch-end'; fold: number; record: EpochRecord; best: { score: number; epoch: number } | null; improved: boolean }
  | { type: 'fold-end'; fold: number; result: FoldResult }
  | { type: 'log'; fold: number | null; message: string };

export interface TrainOptions {
  /** Folds to train (default `config.folds.use`). */
  folds?: number[];
  /** Continue from each fold's `last.ckpt` (a fold without one starts fresh). */
  resume?: boolean;
  onEvent?: (event: TrainEvent) => void;
  /**
   * Data-parallel training over a c10d process group (src/distributed): every rank calls
   * `trainExperiment` with the same config; each epoch's sampled order is sharded across the ranks,
   * gradients are averaged by c10d's Reducer during backward, validation is sharded and gathered,
   * and only rank 0 writes files (checkpoints, logs, curves). Every rank reads `last.ckpt` on
   * `resume` (a shared output folder on multi-node runs).
   */
  distributed?: DistributedTraining;
}

/** The outcome of one fold. */
export interface FoldResult {
  fold: number;
  dir: string;
  epochsRun: number;
  stopped: 'completed' | 'early-stopped';
  best: { score: number; epoch: number; validation: ValidationRecord } | null;
  bestCheckpoint: string | null;
  topK: KeptCheckpoint[];
  /** Fraction of training time spent waiting for data, over the whole fold. */
  dataWait: number;
  imagesPerSecond: number;
  seconds: number;
}

export interface ExperimentResult {
  name: string;
  part: number;
  dir: string;
  folds: FoldResult[];
}

/** `<output.dir>/<name>/part<part>/fold<k>` */
export function foldDir(config: ExperimentConfig, fold: number, part = config.part): string {
  return resolve(config.output.dir, config.name, `part${part}`, `fold${fold}`);
}

/** The augmentation pipeline of a config (its `augment.file`, else the preset). */
export async function configPipeline(config: ExperimentConfig): Promise<AugmentPipeline> {
  if (config.augment.file !== null) return AugmentPipeline.fromJSON(await readPipelineFile(config.augment.file));
  return AugmentPipeline.preset(config.augment.preset as AugmentPreset);
}

/** The pipeline used for validation: only the training pipeline's normalisation. */
export function validationPipeline(training: AugmentPipeline): AugmentPipeline {
  return new AugmentPipeline({ type: 'Compose', transforms: training.normalize ? [training.normalize] : [] });
}

/** The engine's loss terms for `config.loss`. */
export function lossTerms(config: ExperimentConfig): LossTerm[] {
  const l = config.loss;
  switch (l.kind) {
    case 'combo':
      return [{ kind: 'combo', weight: 1, options: { bceWeight: l.weights.bce, diceWeight: l.weights.dice, focalWeight: l.weights.focal, perImageDice: l.perImage } }];
    case 'soft-dice':
      return [{ kind: 'soft-dice', weight: 1 }];
    case 'bce-lovasz':
      // The 42nd place: 1.0 * class-balanced BCE (alpha 0.25) + 0.1 * symmetric Lovasz hinge (SPEC section 6).
      return [
        { kind: 'balanced-bce', weight: l.bceLovasz.bce, options: { alpha: l.bceLovasz.alpha } },
        { kind: 'lovasz', weight: l.bceLovasz.lovasz },
      ];
  }
}

/** The engine's optimizer for `config.optimizer` (encoder in its own group when `encoderLr` is set). */
export function optimizerSpec(config: ExperimentConfig): OptimizerSpec {
  const o = config.optimizer;
  const spec: OptimizerSpec = { algorithm: o.kind, lr: o.lr, weightDecay: o.weightDecay, decayBiasesAndNorms: !o.noDecayOnBiasNorm };
  if (o.kind === 'sgd') {
    spec.momentum = o.momentum;
    spec.nesterov = o.nesterov;
  } else {
    spec.beta1 = o.betas[0];
    spec.beta2 = o.betas[1];
  }
  if (o.encoderLr !== null) spec.lrRules = [['encoder.', o.encoderLr]];
  return spec;
}

/** Whether the model needs a classification logit: the classifier, or the segmenter's joint label loss (`loss.labelWeight`). */
export function usesLabels(config: ExperimentConfig): boolean {
  return config.task === 'classify' || config.loss.labelWeight > 0;
}

/** The sampler of `config.sampler` for the training images. */
export function samplerConfig(config: ExperimentConfig): SamplerConfig {
  const s = config.sampler;
  if (!s.enabled || s.mode === 'all') return { mode: 'all' };
  if (s.mode === 'positive-only') return { mode: 'positive-only' };
  if (s.mode === 'balanced') return { mode: 'balanced', batchSize: config.training.batchSize };
  return { mode: 'sample-rate', sampleRate: s.positiveRateEnd === null ? s.positiveRate : { start: s.positiveRate, end: s.positiveRateEnd } };
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

function emptyState(): TrainerState {
  return { version: 1, epoch: 0, best: null, sinceImprovement: 0, topK: [], lr: { plateau: null }, history: [], finished: null };
}

function formatLr(lr: number): string {
  return lr.toExponential(2);
}

/** The text of a validation for logs: the score beside the all-empty baseline. */
export function describeValidation(v: ValidationRecord, task: ExperimentConfig['task'] = 'segment'): string {
  if (task === 'classify') return `val AUC ${v.score.toFixed(4)}, accuracy ${(v.accuracy ?? NaN).toFixed(4)} (all-negative accuracy ${v.emptyBaseline.toFixed(4)})`;
  const t = v.triplet ? ` at (${v.triplet.join(', ')})` : '';
  const pos = v.dicePositive === null ? '' : `, Dice on positive images ${v.dicePositive.toFixed(4)}`;
  return `val Dice ${v.score.toFixed(4)}${t} (all-empty baseline ${v.emptyBaseline.toFixed(4)})${pos}`;
}

/** Builds (or loads) the model a fold starts from (exported for tests). */
export async function initialModel(config: ExperimentConfig, fold: number, device: string, log: (m: string) => void): Promise<Model> {
  if (config.model.fromPart !== null) {
    const prior = join(foldDir(config, fold, config.model.fromPart), 'best.ckpt');
    if (!existsSync(prior)) {
      throw new Error(`part ${config.part} starts from part ${config.model.fromPart}'s best checkpoint of fold ${fold}, but ${prior} does not exist: train part ${config.model.fromPart} first`);
    }
    const model = await Model.load(prior, { device, precision: config.training.precision });
    if (config.model.backbone !== model.spec.backbone) log(`note: ${prior} holds ${model.describe()}; model.backbone ${config.model.backbone} is ignored`);
    log(`starting from part ${config.model.fromPart}'s best checkpoint ${prior}`);
    return model;
  }
  const model = await Model.create({
    backbone: config.model.backbone,
    ...(config.model.encoderPath !== null ? { encoder: config.model.encoderPath } : {}),
    ...(config.model.encoderWeights !== null ? { encoderWeights: config.model.encoderWeights } : {}),
    classificationHead: usesLabels(config),
    device,
    precision: config.training.precision,
    seed: deriveSeed(config.seed, config.part, fold, 0x6d6f64),
  });
  try {
    if (model.encoderWeightsReport) log(`encoder weights ${config.model.encoderWeights}: ${describeEncoderWeights(model.encoderWeightsReport)}`);
    if (config.model.weights !== null) await loadInitialWeights(model, config.model.weights, log);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/** One line on what `loadEncoderWeights` did, for train.log. */
export function describeEncoderWeights(r: EncoderWeightsReport): string {
  const file = r.fetched ? `${r.fetched.path} (sha256 ${r.fetched.sha256.slice(0, 16)}..., ${r.fetched.downloaded ? 'downloaded' : 'from the cache'})` : r.source;
  const parts = [`${file}: ${r.loaded} tensors loaded strictly into the encoder`];
  if (r.ignored.length) parts.push(`ignored (the upstream classifier): ${r.ignored.join(', ')}`);
  if (r.defaulted.length) parts.push(`${r.defaulted.length} num_batches_tracked buffers absent from the file kept at 0`);
  if (r.adapted.length) parts.push(`adapted to the input channels: ${r.adapted.join(', ')}`);
  if (r.strippedPrefix) parts.push(`prefix "${r.strippedPrefix}" removed`);
  return parts.join('; ');
}

/**
 * `model.weights`: a checkpoint, a whole model's state dict (names under encoder./decoder./
 * segmentation_head.; loaded by name, and an error when nothing matches) or a bare encoder state
 * dict in upstream naming (loaded strictly into the encoder, as `model.encoderWeights`).
 */
async function loadInitialWeights(model: Model, w: string, log: (m: string) => void): Promise<void> {
  if (!existsSync(w)) throw new Error(`model.weights: ${w} does not exist`);
  if (w.endsWith('.ckpt')) {
    const loaded = await Model.load(w);
    try {
      const report = await model.loadStateDict(await loaded.stateDict());
      if (report.loaded === 0) throw new Error(`model.weights: no tensor of the checkpoint ${w} (${loaded.describe()}) fits ${model.describe()}`);
      log(`loaded weights from ${w}: ${JSON.stringify(report)}`);
    } finally {
      loaded.dispose();
    }
    return;
  }
  const tensors = new Map((await readWeightsFile(w)).map(([name, t]) => [name, new Tensor(t)]));
  const names = [...tensors.keys()];
  const wholeModel = names.some((n) => /^(module\.)?(decoder|segmentation_head)\./.test(n));
  if (wholeModel) {
    const report = await model.loadStateDict(tensors);
    if (report.loaded === 0) throw new Error(`model.weights: no tensor of ${w} fits ${model.describe()} (it holds ${names.slice(0, 3).join(', ')}, ...)`);
    log(`loaded weights from ${w}: ${JSON.stringify({ ...report, missing: report.missing.length, unexpected: report.unexpected.length })}`);
    return;
  }
  try {
    const report = await model.loadEncoderWeights(tensors);
    log(`model.weights ${w} is an encoder state dict: ${describeEncoderWeights({ ...report, source: w })}`);
  } catch (err) {
    throw new Error(`model.weights: ${w} holds no decoder, so it was read as an encoder state dict, which failed: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Trains one fold of `config`. Resumes from `last.ckpt` with `resume`; refuses to overwrite an
 * existing run otherwise.
 * @throws TrainingDivergedError when the loss becomes NaN or infinite
 */
export async function trainFold(config: ExperimentConfig, dataset: PreparedDataset, fold: number, options: TrainOptions = {}): Promise<FoldResult> {
  const emit = options.onEvent ?? (() => undefined);
  const dist = options.distributed;
  const group = dist?.group;
  /** Only rank 0 writes (checkpoints, logs, curves); every rank reads. */
  const writer = group === undefined || group.isMain;
  const files = new RunFiles(foldDir(config, fold));
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

  // Resume or start.
  let state = emptyState();
  let model: Model;
  let optimizerState: Map<string, Tensor> | null = null;
  let resumedAt: number | null = null;
  if (existsSync(files.last)) {
    if (!options.resume) {
      throw new Error(`${files.dir} already holds a run (last.ckpt): pass --resume to continue it, or remove the folder (or change name/output.dir) to start over`);
    }
    const loaded = await Model.loadCheckpoint(files.last, { device });
    model = loaded.model;
    optimizerState = loaded.optimizer;
    const saved = loaded.metadata.trainer as TrainerState | undefined;
    if (!saved || saved.version !== 1) throw new Error(`${files.last} holds no trainer state: it was not written by pneumo-native train`);
    state = saved;
    resumedAt = state.epoch;
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
  } else {
    model = await initialModel(config, fold, device, log);
  }
  if (writer) await writeAtomic(files.config, `${JSON.stringify(config, null, 2)}\n`);
  // Every rank has decided (resume or not) before rank 0 writes anything more for this fold.
  if (group) await group.barrier();

  const result = (stopped: FoldResult['stopped']): FoldResult => {
    const bestRecord = state.best ? state.history.find((r) => r.epoch === state.best!.epoch)?.validation ?? null : null;
    const trainSeconds = state.history.reduce((a, r) => a + r.seconds, 0);
    const waited = state.history.reduce((a, r) => a + r.dataWait * r.seconds, 0);
    const images = state.history.reduce((a, r) => a + r.images, 0);
    return {
      fold,
      dir: files.dir,
      epochsRun: state.history.length,
      stopped,
      best: state.best && bestRecord ? { ...state.best, validation: bestRecord } : null,
      bestCheckpoint: state.best ? files.best : null,
      topK: state.topK,
      dataWait: trainSeconds > 0 ? waited / trainSeconds : 0,
      imagesPerSecond: trainSeconds > 0 ? images / trainSeconds : 0,
      seconds: (performance.now() - started) / 1000,
    };
  };
  if (state.finished === 'completed' && state.epoch < config.training.epochs) {
    // A completed run resumed with more epochs continues where it ended.
    log(`extending the completed run from ${state.epoch} to ${config.training.epochs} epochs`);
    state.finished = null;
  }
  if (state.finished !== null) {
    model.dispose();
    for (const t of optimizerState?.values() ?? []) t.dispose();
    log(`fold ${fold} already finished (${state.finished})`);
    await logged;
    return result(state.finished);
  }

  let engine: TrainEngine | undefined;
  try {
    const pipeline = await configPipeline(config);
    const channels = model.spec.inChannels === 1 ? 1 : 3;
    const trainLoader = new BatchLoader(train, {
      size: config.data.imgSize,
      batchSize: config.training.batchSize,
      pipeline,
      channels,
      depth: Math.max(1, config.data.workers),
      device,
      preparedSize: dataset.preparedSize,
      maskDilation: config.data.maskDilation,
    });
    const valLoader = new BatchLoader(val, {
      size: config.data.imgSize,
      batchSize: Math.max(config.training.batchSize, 4),
      pipeline: validationPipeline(pipeline),
      channels,
      depth: Math.max(1, config.data.workers),
      device,
      preparedSize: dataset.preparedSize,
      maskDilation: config.data.maskDilation,
    });
    const sampler = new EpochSampler(
      train.map((s: TrainingSample) => s.positive),
      samplerConfig(config),
      { seed: deriveSeed(config.seed, config.part, fold), epochs: config.training.epochs },
    );
    const engineOptions: TrainEngineOptions = {
      optimizer: optimizerSpec(config),
      loss: lossTerms(config),
      accumulation: config.training.accumulation,
      gradClip: config.training.gradClip,
      task: config.task,
      cudaGraphs: config.training.cudaGraphs,
      // segment: the joint label loss; classify: its label-loss weight (0 keeps the engine's 1).
      ...(config.loss.labelWeight > 0 ? { labelWeight: config.loss.labelWeight } : {}),
      auxWeight: config.loss.auxWeight, // bisenet: auxiliary heads
    };
    if (usesLabels(config) && model.spec.classificationHead !== true) {
      throw new Error(`${config.task === 'classify' ? 'task classify' : `loss.labelWeight ${config.loss.labelWeight}`} needs a classification head, but ${model.describe()} has none (model.fromPart starts from a part trained without one)`);
    }
    engine = TrainEngine.create(model, engineOptions);
    if (optimizerState) {
      await engine.loadOptimizerState(optimizerState);
      for (const t of optimizerState.values()) t.dispose();
    }
    if (group) {
      // Every rank starts from rank 0's weights and statistics; c10d's Reducer averages gradients.
      await group.broadcastModel(model, 0);
      const syncBatchNorm = dist?.syncBatchNorm ?? config.training.syncBatchNorm;
      const synced = engine.attachDistributed(group, { ...(dist?.bucketMb !== undefined ? { bucketMb: dist.bucketMb } : {}), broadcastBuffers: dist?.broadcastBuffers ?? true, syncBatchNorm });
      if (syncBatchNorm) log(`SyncBatchNorm: ${synced} BatchNorm layers normalise over the global batch of ${group.worldSize} ranks`);
    } else if (config.training.syncBatchNorm) {
      log('training.syncBatchNorm: one process, so BatchNorm is unchanged (it synchronises only in a data-parallel run)');
    }
    const worldSize = group?.worldSize ?? 1;
    const rank = group?.rank ?? 0;
    const lr = new LrControl(config, state.lr);
    const epochs = config.training.epochs;
    emit({ type: 'fold-start', fold, dir: files.dir, trainImages: train.length, valImages: val.length, epochs, resumedAt, device, model: model.describe() });
    log(
      `fold ${fold}: ${train.length} training images (${train.filter((s) => s.positive).length} positive), ${val.length} validation images (${val.filter((s) => s.positive).length} positive); ` +
        `${model.describe()} on ${device}, ${config.data.imgSize} px, batch ${config.training.batchSize}`,
    );

    for (let epoch = state.epoch; epoch < epochs; epoch++) {
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
          const out = await engine.step(batch.images, batch.masks, usesLabels(config) ? batch.labels : undefined).catch((err: unknown) => {
            // A collective inside backward (c10d's Reducer) failed: say where, and why it usually happens.
            const message = err instanceof Error ? err.message : String(err);
            if (!group || /failed on rank/.test(message)) throw err;
            throw new Error(`data-parallel step ${step} of epoch ${epoch} failed on rank ${rank} of ${worldSize}: ${message} (another rank probably stopped: see its log)`);
          });
          if (!out.finite || !Number.isFinite(out.loss)) {
            const last = state.epoch > 0 && existsSync(files.last) ? files.last : null;
            const keep = last ? `the last good checkpoint is ${last} (after epoch ${state.epoch - 1})` : 'no checkpoint was written (it diverged in the first epoch)';
            const message = `training diverged: the loss is ${out.loss} at epoch ${epoch}, step ${step} (lr ${formatLr(currentLr)}); stopped without saving this epoch; ${keep}. Lower optimizer.lr or check the input images.`;
            log(message);
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
      const record: EpochRecord = {
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

      // Validation, checkpoints, early stopping.
      let improved = false;
      const validateNow = (epoch + 1) % config.training.validateEvery === 0 || epoch === epochs - 1;
      if (validateNow) {
        emit({ type: 'validation-start', fold, epoch, images: val.length });
        const v = await validate(model, valLoader, config, group ? { rank, worldSize, gather: (bytes) => group.allGatherBytes(bytes) } : undefined);
        record.validation = v;
        lr.onValidation(v.score);
        improved = state.best === null || v.score > state.best.score;
        if (improved) {
          state.best = { score: v.score, epoch };
          state.sinceImprovement = 0;
        } else {
          state.sinceImprovement += 1;
        }
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
      if (config.checkpoints.keepEpochs.includes(epoch) && !existsSync(files.epochCheckpoint(epoch))) {
        await saveCheckpoint(model, engine, files.epochCheckpoint(epoch), checkpointMetadata(config, fold, epoch, record.validation));
      }
      state.history.push(record);
      state.epoch = epoch + 1;
      state.lr = lr.toJSON();
      const earlyStop = config.training.earlyStopping > 0 && state.sinceImprovement >= config.training.earlyStopping;
      if (earlyStop) state.finished = 'early-stopped';
      else if (state.epoch >= epochs) state.finished = 'completed';
      // The resume point: weights, optimizer and trainer state in one atomic file.
      if (writer) {
        await saveCheckpoint(model, engine, files.last, { ...checkpointMetadata(config, fold, epoch, record.validation), trainer: state });
        await files.writeHistory(state.history);
        await writeAtomic(files.curves, await renderCurves(state.history, `${config.name} part ${config.part} fold ${fold}`));
      }
      const parts = [`epoch ${epoch}: loss ${record.loss.toFixed(4)}, lr ${formatLr(record.lr)}, ${record.imagesPerSecond.toFixed(1)} images/s, data wait ${(100 * record.dataWait).toFixed(1)}%`];
      if (record.validation) parts.push(describeValidation(record.validation, config.task) + (improved ? ' (best)' : ''));
      if (String(device).startsWith('cuda')) {
        const graph = engine.graphStatus();
        parts.push(graph.active ? `CUDA graph (${graph.captures} captured, ${graph.replays} replays)` : `eager steps: ${graph.reason}`);
      }
      log(parts.join('; '));
      emit({ type: 'epoch-end', fold, record, best: state.best, improved });
      if (earlyStop) {
        log(`early stopping: no improvement in ${state.sinceImprovement} validations (best ${state.best?.score.toFixed(4)} at epoch ${state.best?.epoch})`);
        break;
      }
    }
    // Rank 0's files for this fold are written before any rank goes on.
    if (group) await group.barrier();
    const out = result(state.finished ?? 'completed');
    emit({ type: 'fold-end', fold, result: out });
    return out;
  } finally {
    engine?.dispose();
    model.dispose();
    for (const t of optimizerState?.values() ?? []) if (!t.disposed) t.dispose();
    await logged;
  }
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

/**
 * Trains every fold of `options.folds` (default `config.folds.use`) one after another.
 * @throws TrainingDivergedError when a fold's loss becomes NaN or infinite
 */
export async function trainExperiment(config: ExperimentConfig, options: TrainOptions = {}): Promise<ExperimentResult> {
  if (config.data.dir === null) {
    throw new Error('data.dicomDir: train reads prepared PNGs; write them with `pneumo-native prepare --train-dicom ... --labels ... --out DIR` and set data.dir');
  }
  const dataset = await openPreparedDataset(config.data.dir, config.data.folds);
  if (config.secondStage && !dataset.samples.some((s) => s.fold === ALWAYS_TRAIN_FOLD)) {
    throw new Error(`secondStage: ${dataset.foldsFile} has no always-train fold: a second-stage part trains on the stage-1 test images too (write the folds with \`pneumo-native folds --always-train <stage-1 test labels>\`)`);
  }
  const folds = options.folds ?? config.folds.use;
  for (const f of folds) {
    if (!Number.isInteger(f) || f < 0 || f >= dataset.k) throw new Error(`Expected folds between 0 and ${dataset.k - 1} (${dataset.foldsFile} has ${dataset.k}) but received ${f}`);
  }
  const results: FoldResult[] = [];
  for (const fold of folds) results.push(await trainFold(config, dataset, fold, options));
  return { name: config.name, part: config.part, dir: resolve(config.output.dir, config.name, `part${config.part}`), folds: results };
}
