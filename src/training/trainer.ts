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
 *
 * `trainFold` runs the named steps of fold-steps.ts (resume, loaders and engine, then per epoch:
 * steps, validation, checkpoint policy, epoch end).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { deriveSeed } from '../core/random.js';
import { Tensor } from '../core/tensor.js';
import { ALWAYS_TRAIN_FOLD } from '../data/folds.js';
import type { DistributedTraining } from '../distributed/index.js';
import { Model, readWeightsFile } from '../models/model.js';
import type { EncoderWeightsReport } from '../models/model.js';
import { AugmentPipeline } from './augment/pipeline.js';
import type { AugmentPreset } from './augment/presets.js';
import type { ExperimentConfig } from './config.js';
import type { LossTerm, TrainEngine, TrainEngineOptions } from './engine.js';
import { emptyState, endEpoch, foldResult, keepCheckpoints, openFoldRun, openLoaders, resumeRun, startEngine, trainEpoch, validateEpoch } from './fold-steps.js';
import type { FoldTraining } from './fold-steps.js';
import { openPreparedDataset } from './loader.js';
import type { PreparedDataset, TrainingSample } from './loader.js';
import { LrControl } from './lr-control.js';
import type { LrControlState } from './lr-control.js';
import type { OptimizerSpec } from './optimizers.js';
import { readPipelineFile } from './preview.js';
import { writeAtomic } from './run-files.js';
import type { EpochRecord, ValidationRecord } from './run-files.js';
import { EpochSampler } from './sampler.js';
import type { SamplerConfig } from './sampler.js';

// The steps of a fold live in fold-steps.ts; these two are part of this module's API.
export { TrainingDivergedError, describeValidation } from './fold-steps.js';

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
  const run = await openFoldRun(config, dataset, fold, foldDir(config, fold), options);
  const { files, group, log } = run;
  const start = (await resumeRun(run, Boolean(options.resume))) ?? {
    state: emptyState(),
    model: await initialModel(config, fold, run.device, log),
    optimizerState: null,
    resumedAt: null,
  };
  const { state, model, optimizerState } = start;
  if (run.writer) await writeAtomic(files.config, `${JSON.stringify(config, null, 2)}\n`);
  // Every rank has decided (resume or not) before rank 0 writes anything more for this fold.
  if (group) await group.barrier();

  if (state.finished === 'completed' && state.epoch < config.training.epochs) {
    // A completed run resumed with more epochs continues where it ended.
    log(`extending the completed run from ${state.epoch} to ${config.training.epochs} epochs`);
    state.finished = null;
  }
  if (state.finished !== null) {
    model.dispose();
    for (const t of optimizerState?.values() ?? []) t.dispose();
    log(`fold ${fold} already finished (${state.finished})`);
    await run.logged();
    return foldResult(run, state, state.finished);
  }

  let engine: TrainEngine | undefined;
  try {
    const pipeline = await configPipeline(config);
    const channels = model.spec.inChannels === 1 ? 1 : 3;
    const { trainLoader, valLoader } = openLoaders(run, dataset, { train: pipeline, val: validationPipeline(pipeline) }, channels);
    const sampler = new EpochSampler(
      run.train.map((s: TrainingSample) => s.positive),
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
    engine = await startEngine(run, model, engineOptions, optimizerState);
    const training: FoldTraining = {
      model,
      engine,
      trainLoader,
      valLoader,
      sampler,
      lr: new LrControl(config, state.lr),
      state,
      labels: usesLabels(config),
      rank: group?.rank ?? 0,
      worldSize: group?.worldSize ?? 1,
    };
    const { train, val, device } = run;
    const epochs = config.training.epochs;
    run.emit({ type: 'fold-start', fold, dir: files.dir, trainImages: train.length, valImages: val.length, epochs, resumedAt: start.resumedAt, device, model: model.describe() });
    log(
      `fold ${fold}: ${train.length} training images (${train.filter((s) => s.positive).length} positive), ${val.length} validation images (${val.filter((s) => s.positive).length} positive); ` +
        `${model.describe()} on ${device}, ${config.data.imgSize} px, batch ${config.training.batchSize}`,
    );

    for (let epoch = state.epoch; epoch < epochs; epoch++) {
      const record = await trainEpoch(run, training, epoch);
      // Validation, checkpoints, early stopping.
      const validateNow = (epoch + 1) % config.training.validateEvery === 0 || epoch === epochs - 1;
      const improved = validateNow ? await validateEpoch(run, training, epoch, record) : false;
      await keepCheckpoints(run, training, epoch, record, improved);
      if (await endEpoch(run, training, epoch, record, improved)) break;
    }
    // Rank 0's files for this fold are written before any rank goes on.
    if (group) await group.barrier();
    const out = foldResult(run, state, state.finished ?? 'completed');
    run.emit({ type: 'fold-end', fold, result: out });
    return out;
  } finally {
    engine?.dispose();
    model.dispose();
    for (const t of optimizerState?.values() ?? []) if (!t.disposed) t.dispose();
    await run.logged();
  }
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
