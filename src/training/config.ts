/**
 * Experiment configuration: one YAML or JSON file per training part, validated against a schema.
 *
 * - An unknown or misspelled key is an error naming it and the closest valid key (the first
 *   place's shipped config had a `sUSE_SAMPLER` typo that crashed its trainer hours in). Keys of
 *   the first place's own YAML files (`USE_SAMPLER`, `EPOCHES`, ...) are recognised and the
 *   error names their equivalent here.
 * - Every problem in a file is reported at once, each with its dotted path.
 * - `extends: ./part0.yaml` starts from another file (deep merge), so the parts of one
 *   experiment state only what changes.
 * - Every option is also a CLI flag (`--optimizer.lr 1e-5`) that overrides the file.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { AUX_HEAD_ARCHITECTURES, backboneNames, registry } from '../models/registry.js';

/** A (top, area, bottom) triplet of the first place's mask binarisation (SPEC section 4). */
export type Triplet = [top: number, area: number, bottom: number];

/** The first place's validation grid (SPEC section 4). */
export const DEFAULT_TRIPLETS: Triplet[] = [
  [0.75, 1000, 0.3],
  [0.75, 1000, 0.4],
  [0.75, 2000, 0.3],
  [0.75, 2000, 0.4],
  [0.6, 2000, 0.3],
  [0.6, 2000, 0.4],
  [0.6, 3000, 0.3],
  [0.6, 3000, 0.4],
];

/** One training part of an experiment, fully resolved (every default filled in). */
export interface ExperimentConfig {
  /** Experiment name: outputs go to `<output.dir>/<name>/part<part>/fold<k>/`. */
  name: string;
  /** Part index (0, 1, 2, ...): each part starts from the previous part's best checkpoint of the same fold. */
  part: number;
  /**
   * The second stage (SPEC 4): the folds file must hold an always-train fold (the stage-1 test
   * images, `folds --always-train`), trained on and never validated; the trainer refuses a
   * second-stage part whose folds file has none. Pipelines run second-stage parts only when given
   * those images.
   */
  secondStage: boolean;
  /**
   * "segment" (masks) or "classify" (the second place's classifier: a classification head on the
   * encoder, the label of each image taken from its mask, scored by ROC AUC).
   */
  task: 'segment' | 'classify';
  seed: number;
  /** "auto" (first GPU, else CPU), "cpu", "cuda" or "cuda:N". */
  device: string;
  data: {
    /** A folder written by `pneumo-native prepare` (train/, mask/), or DICOMs with `dicomDir`. */
    dir: string | null;
    /** Read training DICOMs directly (no prepare step), with `labels`. */
    dicomDir: string | null;
    /** Train labels CSV (stage 1 or stage 2 format); required with `dicomDir`. */
    labels: string | null;
    /** Folds file (`fname,fold,exist_labels`) from `pneumo-native folds`. */
    folds: string;
    imgSize: number;
    /** Worker threads decoding and augmenting the next batches. */
    workers: number;
    /**
     * Dilate the masks by a square kernel of this many pixels at `imgSize` before augmentation, in
     * training and validation (0: off, the default). The 42nd place's classifier trained on masks
     * dilated by 128 x 128 at 1024 px (96 at its 768) "to roughly locate the pneumothorax".
     */
    maskDilation: number;
  };
  model: {
    /** Registry name, e.g. albunet34, unet_se50, scseunet_se50, unet_r50. */
    backbone: string;
    /** A TorchScript encoder file (pretrained weights exported from Python). */
    encoderPath: string | null;
    /**
     * Pretrained encoder weights: "imagenet" (the upstream file the seeds used, fetched into the
     * cache and verified; models/registry.json) or a state dict file in the encoder's upstream
     * naming. Loaded strictly. null: random initialisation.
     */
    encoderWeights: string | null;
    /**
     * Start from these weights: a checkpoint (`.ckpt`), a whole model's state dict, or a bare
     * encoder state dict (upstream naming, loaded strictly into the encoder as `encoderWeights`).
     */
    weights: string | null;
    /** Start from the best checkpoint of this earlier part of the same experiment and fold. */
    fromPart: number | null;
  };
  folds: {
    /** Folds to train, one after another. */
    use: number[];
  };
  sampler: {
    /** false: every image once per epoch (mode "all"), whatever `mode` says. */
    enabled: boolean;
    /**
     * "sample-rate" (the first place: all positives plus int(n_pos (1-p)/p) negatives drawn with
     * replacement), "positive-only" (the second place), "all", "balanced" (50/50 batches, classifiers).
     * The names of `sampler.EpochSampler`'s modes.
     */
    mode: 'sample-rate' | 'positive-only' | 'all' | 'balanced';
    /** p at the first epoch. */
    positiveRate: number;
    /** p at the last epoch (slides linearly); null keeps positiveRate. */
    positiveRateEnd: number | null;
  };
  augment: {
    /** A shipped pipeline ("first-place", "second-place", "none"); `file` (a pipeline JSON) wins. */
    preset: string;
    file: string | null;
  };
  loss: {
    /** combo (the first place), soft-dice (the second place), bce-lovasz (the 42nd place). */
    kind: 'combo' | 'soft-dice' | 'bce-lovasz';
    /** combo: weights of (BCE, Dice, Focal). */
    weights: { bce: number; dice: number; focal: number };
    /** combo: Dice per image then averaged, instead of over the whole batch. */
    perImage: boolean;
    /**
     * bce-lovasz (the 42nd place, SPEC 6): `bce` x class-balanced BCE (positive pixels weighted
     * `alpha`, negative ones 1 - alpha) + `lovasz` x the symmetric Lovasz hinge (margins 5 and 1).
     */
    bceLovasz: { bce: number; lovasz: number; alpha: number };
    /**
     * segment: > 0 adds a classification logit (global pooling -> linear, on the encoder) trained
     * with this weight x BCE against "the mask is not empty" (the 42nd place's 0.1). classify: the
     * weight of the label loss (BCE + focal); 0 keeps the engine's default 1.
     */
    labelWeight: number;
    /**
     * Models with auxiliary heads (bisenet, daunet; the 42nd place): each auxiliary output adds
     * this weight x the mask loss in training (the seed's scale weights 1.0 / 0.4 / 0.4 / 0.4).
     * Inference uses the main output only. Setting it for another architecture is an error.
     */
    auxWeight: number;
  };
  optimizer: {
    kind: 'adam' | 'adamw' | 'sgd' | 'radam';
    lr: number;
    /** Learning rate of the encoder; null uses `lr`. */
    encoderLr: number | null;
    weightDecay: number;
    /** No weight decay on biases and normalisation parameters. */
    noDecayOnBiasNorm: boolean;
    momentum: number;
    nesterov: boolean;
    betas: [number, number];
  };
  scheduler: {
    kind: 'plateau' | 'cosine' | 'warm-restarts' | 'constant';
    /** plateau: factor, patience, threshold, cooldown, minLr (mode max on the validation score). */
    factor: number;
    patience: number;
    threshold: number;
    cooldown: number;
    minLr: number;
    /** cosine: tMax epochs (null: the run's epochs); warm-restarts: t0, tMult. */
    tMax: number | null;
    t0: number;
    tMult: number;
    /** Linear warm-up over this fraction of the run (0: none). */
    warmup: number;
  };
  training: {
    epochs: number;
    batchSize: number;
    /** Gradient accumulation steps. */
    accumulation: number;
    /** Clip the global gradient norm at this value (0: off). */
    gradClip: number;
    /** Encoder frozen for the first N epochs. */
    freezeEncoderEpochs: number;
    /** Stop after N validations without improvement (0: never). */
    earlyStopping: number;
    validateEvery: number;
    /**
     * Forward precision (see src/models/precision.ts): 'auto' (default: bf16 on CUDA sm_80+, fp16
     * with dynamic loss scaling on older GPUs, bf16 on CPUs with AMX, else fp32), 'fp32', 'bf16'
     * or 'fp16' (CUDA only; the gradient scaler turns on by itself).
     */
    precision: 'auto' | 'fp32' | 'bf16' | 'fp16';
    /**
     * Reproducible CUDA runs: deterministic cuDNN algorithms and no autotuning (slower). Off:
     * cuDNN autotunes its convolutions for the fixed training size. No effect on CPU.
     */
    deterministic: boolean;
    /**
     * Whole-step CUDA graphs on CUDA (see TrainEngineOptions.cudaGraphs): 'auto' (default) captures
     * the step after 3 eager steps and replays it, falling back to eager steps (with the reason in
     * the log) where a step cannot be captured; 'on' makes that an error; 'off' never captures.
     */
    cudaGraphs: 'auto' | 'on' | 'off';
    /**
     * SyncBatchNorm in a data-parallel run (`train --nproc`, torchrun): the training forward's
     * BatchNorm layers normalise with the mean and variance of the global batch (all ranks), as
     * PyTorch's SyncBatchNorm does; running statistics and evaluation are unchanged. Worth it at the
     * seeds' 2-4 images per GPU at 1024 px. One process: plain BatchNorm (said in the log).
     */
    syncBatchNorm: boolean;
    /** Batches per epoch cap for quick runs (0: the whole epoch). */
    maxStepsPerEpoch: number;
  };
  validation: {
    /** The triplet grid scored at every validation; the best mean Dice is the epoch's score. */
    triplets: Triplet[];
    /** Triplet areas are counted at this size (the SIIM maps are 1024 x 1024). */
    areaSize: number;
    /** Horizontal-flip TTA when predicting the validation images. */
    tta: boolean;
  };
  checkpoints: {
    /** Keep the best K checkpoints per fold, delete the rest. */
    topK: number;
    /**
     * Epochs (0-based) whose checkpoints are always written and never deleted, validated or not
     * (the second place's SWA averages epochs 34, 39 and 43, which top-K alone could delete).
     */
    keepEpochs: number[];
  };
  output: {
    dir: string;
  };
}

// ---- the schema ---------------------------------------------------------------------------------

type Leaf =
  | { kind: 'number'; min?: number; max?: number; integer?: boolean; nullable?: boolean; exclusiveMin?: boolean }
  | { kind: 'string'; values?: readonly string[]; nullable?: boolean }
  | { kind: 'boolean' }
  | { kind: 'integers'; min?: number; allowEmpty?: boolean }
  | { kind: 'pair'; min?: number; max?: number }
  | { kind: 'triplets' };

interface Node {
  [key: string]: Leaf | Node;
}

/** Leaves carry a string `kind`; nodes that have a `kind` key hold a Leaf object under it. */
function isLeaf(x: Leaf | Node): x is Leaf {
  return typeof (x as Leaf).kind === 'string';
}

const num = (min?: number, max?: number, extra: Partial<Extract<Leaf, { kind: 'number' }>> = {}): Leaf => ({ kind: 'number', ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}), ...extra });
const int = (min?: number, max?: number, extra: Partial<Extract<Leaf, { kind: 'number' }>> = {}): Leaf => num(min, max, { integer: true, ...extra });
const str = (values?: readonly string[], nullable = false): Leaf => ({ kind: 'string', ...(values ? { values } : {}), ...(nullable ? { nullable } : {}) });
const bool: Leaf = { kind: 'boolean' };

/** The schema: every key a config file may hold, with its type and range. */
export const SCHEMA: Node = {
  extends: str(undefined, true),
  name: str(),
  part: int(0, 100),
  secondStage: bool,
  task: str(['segment', 'classify']),
  seed: int(0, 2 ** 32 - 1),
  device: str(),
  data: { dir: str(undefined, true), dicomDir: str(undefined, true), labels: str(undefined, true), folds: str(), imgSize: int(32, 4096), workers: int(0, 64), maskDilation: int(0, 4096) },
  model: { backbone: str(), encoderPath: str(undefined, true), encoderWeights: str(undefined, true), weights: str(undefined, true), fromPart: int(0, 100, { nullable: true }) },
  folds: { use: { kind: 'integers', min: -1 } },
  sampler: { enabled: bool, mode: str(['sample-rate', 'positive-only', 'all', 'balanced']), positiveRate: num(0, 1, { exclusiveMin: true }), positiveRateEnd: num(0, 1, { nullable: true, exclusiveMin: true }) },
  augment: { preset: str(), file: str(undefined, true) },
  loss: {
    kind: str(['combo', 'soft-dice', 'bce-lovasz']),
    weights: { bce: num(0), dice: num(0), focal: num(0) },
    perImage: bool,
    bceLovasz: { bce: num(0), lovasz: num(0), alpha: num(0, 1) },
    labelWeight: num(0),
    auxWeight: num(0),
  },
  optimizer: {
    kind: str(['adam', 'adamw', 'sgd', 'radam']),
    lr: num(0, 10, { exclusiveMin: true }),
    encoderLr: num(0, 10, { nullable: true, exclusiveMin: true }),
    weightDecay: num(0, 1),
    noDecayOnBiasNorm: bool,
    momentum: num(0, 1),
    nesterov: bool,
    betas: { kind: 'pair', min: 0, max: 1 },
  },
  scheduler: {
    kind: str(['plateau', 'cosine', 'warm-restarts', 'constant']),
    factor: num(0, 1, { exclusiveMin: true }),
    patience: int(0),
    threshold: num(0),
    cooldown: int(0),
    minLr: num(0),
    tMax: int(1, undefined, { nullable: true }),
    t0: int(1),
    tMult: int(1),
    warmup: num(0, 1),
  },
  training: {
    epochs: int(1, 100000),
    batchSize: int(1, 4096),
    accumulation: int(1, 1024),
    gradClip: num(0),
    freezeEncoderEpochs: int(0),
    earlyStopping: int(0),
    validateEvery: int(1),
    precision: str(['auto', 'fp32', 'bf16', 'fp16']),
    deterministic: bool,
    cudaGraphs: str(['auto', 'on', 'off']),
    syncBatchNorm: bool,
    maxStepsPerEpoch: int(0),
  },
  validation: { triplets: { kind: 'triplets' }, areaSize: int(1, 16384), tta: bool },
  checkpoints: { topK: int(1, 1000), keepEpochs: { kind: 'integers', min: 0, allowEmpty: true } },
  output: { dir: str() },
};

/** Every default: a file only states what differs. */
export function defaultConfig(): ExperimentConfig {
  return {
    name: 'experiment',
    part: 0,
    secondStage: false,
    task: 'segment',
    seed: 42,
    device: 'auto',
    data: { dir: null, dicomDir: null, labels: null, folds: 'folds.csv', imgSize: 512, workers: 2, maskDilation: 0 },
    model: { backbone: 'albunet34', encoderPath: null, encoderWeights: null, weights: null, fromPart: null },
    folds: { use: [0, 1, 2, 3, 4] },
    sampler: { enabled: true, mode: 'sample-rate', positiveRate: 0.8, positiveRateEnd: null },
    augment: { preset: 'first-place', file: null },
    loss: { kind: 'combo', weights: { bce: 3, dice: 1, focal: 4 }, perImage: false, bceLovasz: { bce: 1, lovasz: 0.1, alpha: 0.25 }, labelWeight: 0, auxWeight: 0.4 },
    optimizer: { kind: 'adam', lr: 1e-4, encoderLr: null, weightDecay: 5e-6, noDecayOnBiasNorm: true, momentum: 0.9, nesterov: false, betas: [0.9, 0.999] },
    scheduler: { kind: 'plateau', factor: 0.1, patience: 2, threshold: 1e-7, cooldown: 0, minLr: 1e-7, tMax: null, t0: 8, tMult: 1, warmup: 0 },
    training: { epochs: 50, batchSize: 4, accumulation: 1, gradClip: 0.1, freezeEncoderEpochs: 0, earlyStopping: 10, validateEvery: 1, precision: 'auto', deterministic: false, cudaGraphs: 'auto', syncBatchNorm: false, maxStepsPerEpoch: 0 },
    validation: { triplets: DEFAULT_TRIPLETS.map((t) => [...t] as Triplet), areaSize: 1024, tta: false },
    checkpoints: { topK: 5, keepEpochs: [] },
    output: { dir: 'experiments' },
  };
}

/**
 * Keys of the first place's YAML configs and their equivalents here, so that a ported file
 * gets a precise error instead of a guess.
 */
const FIRST_PLACE_KEYS: Record<string, string> = {
  data_directory: 'data.dir',
  seed: 'seed',
  num_workers: 'data.workers',
  device: 'device',
  batch_size: 'training.batchSize',
  use_sampler: 'sampler.enabled',
  non_empty_mask_proba: 'sampler.positiveRate',
  train_transforms: 'augment.file',
  epoches: 'training.epochs',
  epochs: 'training.epochs',
  accumulation_steps: 'training.accumulation',
  early_stopping: 'training.earlyStopping',
  criterion: 'loss',
  optimizer: 'optimizer',
  scheduler: 'scheduler',
  checkpoints: 'checkpoints.topK',
  mask_binarizer: 'validation.triplets',
  fold: 'folds.use',
  model: 'model.backbone',
};

// ---- validation ---------------------------------------------------------------------------------

/** Thrown for an invalid config: lists every problem, each with its dotted path. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`${source}: invalid experiment config:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Levenshtein distance, case-insensitive, ignoring '_' and '-'. */
function distance(a: string, b: string): number {
  const x = a.toLowerCase().replace(/[_-]/g, '');
  const y = b.toLowerCase().replace(/[_-]/g, '');
  const row = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= y.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (x[i - 1] === y[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[y.length]!;
}

/** Every dotted leaf path of the schema (for suggestions and CLI flags). */
export function schemaPaths(node: Node = SCHEMA, prefix = ''): string[] {
  const out: string[] = [];
  for (const [key, child] of Object.entries(node)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (isLeaf(child)) out.push(path);
    else out.push(...schemaPaths(child, path));
  }
  return out;
}

function suggest(key: string, siblings: string[], prefix: string): string {
  // A key of the first place's YAML, exact or misspelled (its own sUSE_SAMPLER typo).
  const lower = key.toLowerCase();
  const firstPlace = Object.keys(FIRST_PLACE_KEYS)
    .map((k) => ({ k, d: distance(lower, k) }))
    .sort((a, b) => a.d - b.d)[0];
  const screamingCase = /[A-Z]{3}/.test(key); // the first place's style: USE_SAMPLER, EPOCHES
  if (firstPlace && (screamingCase || key.includes('_')) && (firstPlace.d === 0 || (screamingCase && firstPlace.d <= 2))) {
    const name = firstPlace.k.toUpperCase();
    const here = FIRST_PLACE_KEYS[firstPlace.k];
    return firstPlace.d === 0 ? ` (the first place's ${name} is '${here}' here)` : ` (did you mean the first place's ${name}? Here it is '${here}')`;
  }
  let best: { name: string; d: number } | undefined;
  for (const s of siblings) {
    const d = distance(key, s);
    if (!best || d < best.d) best = { name: s, d };
  }
  if (best && best.d <= Math.max(2, Math.floor(best.name.length / 3))) return ` (did you mean '${prefix}${best.name}'?)`;
  // The key may belong elsewhere: search every leaf.
  const leaf = schemaPaths().find((p) => distance(p.split('.').pop()!, key) <= 1);
  if (leaf) return ` (did you mean '${leaf}'?)`;
  return ` (valid keys here: ${siblings.join(', ')})`;
}

function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : Array.isArray(value) ? `[${value.map(describe).join(', ')}]` : String(value);
}

function checkLeaf(leaf: Leaf, value: unknown, path: string, problems: string[]): void {
  switch (leaf.kind) {
    case 'number': {
      if (value === null && leaf.nullable) return;
      const ok =
        typeof value === 'number' &&
        Number.isFinite(value) &&
        (!leaf.integer || Number.isInteger(value)) &&
        (leaf.min === undefined || (leaf.exclusiveMin ? value > leaf.min : value >= leaf.min)) &&
        (leaf.max === undefined || value <= leaf.max);
      if (!ok) {
        const range = [leaf.min !== undefined ? `${leaf.exclusiveMin ? '>' : '>='} ${leaf.min}` : '', leaf.max !== undefined ? `<= ${leaf.max}` : ''].filter(Boolean).join(' and ');
        problems.push(`${path}: expected ${leaf.integer ? 'an integer' : 'a number'}${range ? ` ${range}` : ''}${leaf.nullable ? ' or null' : ''} but got ${describe(value)}`);
      }
      return;
    }
    case 'string':
      if (value === null && leaf.nullable) return;
      if (typeof value !== 'string' || (leaf.values && !leaf.values.includes(value))) {
        problems.push(`${path}: expected ${leaf.values ? `one of ${leaf.values.join(', ')}` : 'a string'}${leaf.nullable ? ' or null' : ''} but got ${describe(value)}`);
      }
      return;
    case 'boolean':
      if (typeof value !== 'boolean') problems.push(`${path}: expected true or false but got ${describe(value)}`);
      return;
    case 'integers':
      if (!Array.isArray(value) || (value.length === 0 && !leaf.allowEmpty) || !value.every((v) => Number.isInteger(v) && v >= (leaf.min ?? -Infinity))) {
        problems.push(`${path}: expected a ${leaf.allowEmpty ? '' : 'non-empty '}list of integers${leaf.min !== undefined ? ` >= ${leaf.min}` : ''} but got ${describe(value)}`);
      }
      return;
    case 'pair':
      if (!Array.isArray(value) || value.length !== 2 || !value.every((v) => typeof v === 'number' && v >= (leaf.min ?? -Infinity) && v <= (leaf.max ?? Infinity))) {
        problems.push(`${path}: expected two numbers${leaf.min !== undefined ? ` in [${leaf.min}, ${leaf.max}]` : ''} but got ${describe(value)}`);
      }
      return;
    case 'triplets':
      if (
        !Array.isArray(value) ||
        value.length === 0 ||
        !value.every((t) => Array.isArray(t) && t.length === 3 && t[0] >= 0 && t[0] <= 1 && Number.isInteger(t[1]) && t[1] >= 0 && t[2] >= 0 && t[2] <= 1)
      ) {
        problems.push(`${path}: expected a non-empty list of [top (0-1), area (integer >= 0), bottom (0-1)] triplets but got ${describe(value)}`);
      }
      return;
  }
}

function checkNode(node: Node, value: unknown, prefix: string, problems: string[]): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.push(`${prefix || '(root)'}: expected a mapping of keys but got ${describe(value)}`);
    return;
  }
  const siblings = Object.keys(node);
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const path = prefix ? `${prefix}.${key}` : key;
    const spec = Object.hasOwn(node, key) ? node[key] : undefined;
    if (spec === undefined) {
      problems.push(`unknown key '${path}'${suggest(key, siblings, prefix ? `${prefix}.` : '')}`);
      continue;
    }
    if (isLeaf(spec)) checkLeaf(spec, child, path, problems);
    else checkNode(spec, child, path, problems);
  }
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Deep-merges `over` onto `base` (arrays and scalars replace). */
export function deepMerge<T>(base: T, over: unknown): T {
  if (!isPlainObject(base) || !isPlainObject(over)) return (over === undefined ? base : over) as T;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = isPlainObject(out[k]) && isPlainObject(v) ? deepMerge(out[k], v) : v;
  return out as T;
}

/** The schema leaf paths set in `raw` (keys outside the schema are left to `checkNode`). */
function setPaths(raw: unknown, node: Node = SCHEMA, prefix = ''): string[] {
  if (!isPlainObject(raw)) return [];
  const out: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    const spec = Object.hasOwn(node, key) ? node[key] : undefined;
    if (spec === undefined) continue;
    const path = prefix ? `${prefix}.${key}` : key;
    if (isLeaf(spec)) out.push(path);
    else out.push(...setPaths(value, spec, path));
  }
  return out;
}

/**
 * Why nothing reads `path` under `config`, or null when something does. A key the resolved config
 * leaves unread (the Lovasz weight of a combo loss, a plateau patience under a cosine schedule, the
 * backbone of a part that starts from an earlier part's checkpoint) is an error, not a silent no-op.
 */
export function unreadReason(path: string, config: ExperimentConfig): string | null {
  const c = config;
  const segment = c.task === 'segment';
  const lossKind = `loss.kind ${c.loss.kind}${segment ? '' : ` (and task ${c.task} reads no loss.kind)`}`;
  if (path.startsWith('loss.weights.') || path === 'loss.perImage') return segment && c.loss.kind === 'combo' ? null : `read only with loss.kind combo and task segment, not with ${lossKind}`;
  if (path.startsWith('loss.bceLovasz.')) return segment && c.loss.kind === 'bce-lovasz' ? null : `read only with loss.kind bce-lovasz and task segment, not with ${lossKind}`;
  if (path === 'loss.auxWeight') {
    const arch = registry().backbones.get(c.model.backbone)?.architecture;
    return arch === undefined || AUX_HEAD_ARCHITECTURES.includes(arch) ? null : `read only for models with auxiliary heads (${AUX_HEAD_ARCHITECTURES.join(', ')}), not backbone ${c.model.backbone} (${arch})`;
  }
  if (path === 'loss.kind') return segment ? null : `task ${c.task} trains its own loss (labelWeight x (BCE + focal) on the label, BCE on the mask)`;
  if (path === 'optimizer.momentum' || path === 'optimizer.nesterov') return c.optimizer.kind === 'sgd' ? null : `read only by optimizer.kind sgd, not ${c.optimizer.kind}`;
  if (path === 'optimizer.betas') return c.optimizer.kind !== 'sgd' ? null : 'not read by optimizer.kind sgd';
  if (path === 'optimizer.noDecayOnBiasNorm') return c.optimizer.weightDecay > 0 ? null : 'no effect with optimizer.weightDecay 0';
  const plateauKeys = ['scheduler.factor', 'scheduler.patience', 'scheduler.threshold', 'scheduler.cooldown'];
  if (plateauKeys.includes(path)) return c.scheduler.kind === 'plateau' ? null : `read only by scheduler.kind plateau, not ${c.scheduler.kind}`;
  if (path === 'scheduler.tMax') return c.scheduler.kind === 'cosine' ? null : `read only by scheduler.kind cosine, not ${c.scheduler.kind}`;
  if (path === 'scheduler.t0' || path === 'scheduler.tMult') return c.scheduler.kind === 'warm-restarts' ? null : `read only by scheduler.kind warm-restarts, not ${c.scheduler.kind}`;
  if (path === 'scheduler.minLr') return c.scheduler.kind !== 'constant' ? null : 'not read by scheduler.kind constant';
  if (path === 'sampler.mode') return c.sampler.enabled ? null : 'not read with sampler.enabled false (every image once per epoch)';
  if (path === 'sampler.positiveRate' || path === 'sampler.positiveRateEnd') {
    return c.sampler.enabled && c.sampler.mode === 'sample-rate' ? null : `read only by sampler.mode sample-rate with sampler.enabled true, not ${c.sampler.enabled ? `mode ${c.sampler.mode}` : 'a disabled sampler'}`;
  }
  if (path === 'augment.preset') return c.augment.file === null ? null : 'augment.file is set and wins over the preset';
  if (path === 'model.backbone' || path === 'model.encoderPath' || path === 'model.weights' || path === 'model.encoderWeights') {
    return c.model.fromPart === null ? null : `the part starts from part ${c.model.fromPart}'s best checkpoint (model.fromPart), which fixes the model and its weights`;
  }
  if (path === 'validation.triplets' || path === 'validation.areaSize') return segment ? null : `task ${c.task} is scored by ROC AUC, not on the triplet grid`;
  if (path === 'checkpoints.keepEpochs') {
    const late = c.checkpoints.keepEpochs.filter((e) => e >= c.training.epochs);
    return late.length === 0 ? null : `epoch(s) ${late.join(', ')} never run: training.epochs is ${c.training.epochs} (epochs count from 0)`;
  }
  return null;
}

/**
 * Validates a parsed config object (defaults filled in for what it leaves out). `own` holds the
 * keys the caller set itself (a file's own keys and its command-line overrides, default: all of
 * `raw`): each of them must be read under the resolved config (`unreadReason`); keys inherited
 * through `extends` are not held to that.
 * @throws ConfigError listing every problem with its path
 */
export function validateConfig(raw: unknown, source = '<config>', own: unknown = raw): ExperimentConfig {
  const problems: string[] = [];
  checkNode(SCHEMA, raw, '', problems);
  if (problems.length > 0) throw new ConfigError(source, problems);
  const { extends: _ignored, ...rest } = raw as Record<string, unknown>;
  void _ignored;
  const config = deepMerge(defaultConfig(), rest);
  const cross: string[] = [];
  if (config.data.dir === null && config.data.dicomDir === null) cross.push('data: set data.dir (prepared PNGs) or data.dicomDir (DICOMs read directly)');
  if (config.data.dicomDir !== null && config.data.labels === null) cross.push('data.labels: required with data.dicomDir (the train-rle.csv to read masks from)');
  const backbones = backboneNames();
  if (!backbones.includes(config.model.backbone)) {
    const near = backbones.map((name) => ({ name, d: distance(config.model.backbone, name) })).sort((x, y) => x.d - y.d)[0];
    const hint = near && near.d <= Math.max(2, Math.floor(near.name.length / 3)) ? ` (did you mean '${near.name}'?)` : '';
    cross.push(`model.backbone: unknown backbone ${JSON.stringify(config.model.backbone)}${hint}; expected one of ${backbones.join(', ')}`);
  }
  if (config.model.fromPart !== null && config.model.fromPart >= config.part) cross.push(`model.fromPart: must be an earlier part than part ${config.part} but got ${config.model.fromPart}`);
  if (config.model.encoderWeights !== null && config.model.encoderPath !== null) cross.push('model.encoderWeights: a TorchScript encoder (model.encoderPath) carries its own weights; set one of the two');
  if (config.task === 'classify' && config.sampler.enabled && config.sampler.mode === 'positive-only') cross.push('sampler.mode: a classifier needs negative images too: use balanced or all with task classify');
  if (config.sampler.mode === 'balanced' && config.training.batchSize % 2 !== 0) cross.push(`training.batchSize: balanced batches need an even batch size but got ${config.training.batchSize}`);
  for (const path of setPaths(own)) {
    const reason = unreadReason(path, config);
    if (reason !== null) cross.push(`${path}: set but nothing reads it: ${reason}`);
  }
  if (cross.length > 0) throw new ConfigError(source, cross);
  return config;
}

/** Parses YAML or JSON text (JSON is YAML). */
export function parseConfigText(text: string, source: string): unknown {
  try {
    return parseYaml(text) ?? {};
  } catch (err) {
    throw new ConfigError(source, [`not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`]);
  }
}

/** Reads a config file and the chain of files it `extends`, merged base-first (not validated). */
export function readConfigChain(path: string, seen: string[] = []): Record<string, unknown> {
  const abs = resolve(path);
  if (seen.includes(abs)) throw new ConfigError(path, [`extends: a cycle: ${[...seen, abs].join(' -> ')}`]);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    throw new ConfigError(path, [`cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`]);
  }
  const raw = parseConfigText(text, path);
  if (!isPlainObject(raw)) throw new ConfigError(path, [`expected a mapping of keys at the top level but got ${describe(raw)}`]);
  const parent = raw.extends;
  if (parent === undefined || parent === null) return raw;
  if (typeof parent !== 'string') throw new ConfigError(path, [`extends: expected a file path but got ${describe(parent)}`]);
  const base = readConfigChain(resolve(dirname(abs), parent), [...seen, abs]);
  const { extends: _e, ...own } = raw;
  void _e;
  return deepMerge(base, own);
}

/**
 * Loads an experiment part: the file (and what it extends), then `overrides` (e.g. from CLI
 * flags, as a nested object), validated. The keys the file sets itself must be read under the
 * file's resolution, the overrides under the final one (`unreadReason`). Relative data/output paths resolve against the
 * current directory, as a user typing them would expect.
 * @throws ConfigError listing every problem
 */
export function loadConfig(path: string, overrides: Record<string, unknown> = {}): ExperimentConfig {
  const chain = readConfigChain(path);
  const config = validateConfig(deepMerge(chain, overrides), path, overrides);
  // The file's own keys must be read under the file's own resolution (an override that switches,
  // say, the scheduler kind does not turn the file's plateau keys into errors).
  const leaf = parseConfigText(readFileSync(resolve(path), 'utf8'), path);
  const { extends: _e, ...own } = isPlainObject(leaf) ? leaf : {};
  void _e;
  const fileConfig = deepMerge(defaultConfig(), (({ extends: _x, ...rest }) => rest)(chain));
  const problems = setPaths(own).flatMap((p) => {
    const reason = unreadReason(p, fileConfig);
    return reason === null ? [] : [`${p}: set but nothing reads it: ${reason}`];
  });
  if (problems.length > 0) throw new ConfigError(path, problems);
  return config;
}

/** The yargs option type of a schema path (for generating `--a.b` CLI flags). */
export function flagType(path: string): 'number' | 'string' | 'boolean' | 'array' {
  let node: Leaf | Node = SCHEMA;
  for (const part of path.split('.')) node = (node as Node)[part]!;
  const leaf = node as Leaf;
  if (leaf.kind === 'number') return 'number';
  if (leaf.kind === 'boolean') return 'boolean';
  if (leaf.kind === 'string') return 'string';
  return 'array';
}

/**
 * Picks config overrides out of parsed CLI arguments: for every schema path given on the command
 * line as `--a.b value`, the nested object `{ a: { b: value } }`. Lists take JSON
 * (`--validation.triplets '[[0.7,600,0.3]]'`).
 */
export function overridesFromArgs(args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const path of schemaPaths()) {
    if (path === 'extends') continue;
    const parts = path.split('.');
    let value: unknown = args;
    for (const p of parts) value = isPlainObject(value) ? value[p] : undefined;
    if (value === undefined) continue;
    const type = flagType(path);
    if (type === 'array' && typeof value === 'string') {
      try {
        value = JSON.parse(value);
      } catch {
        throw new ConfigError('command line', [`--${path}: expected JSON (e.g. [[0.75,2000,0.3]]) but got ${describe(value)}`]);
      }
    }
    if (value === 'null') value = null;
    let node = out;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts.at(-1)!] = value;
  }
  return out;
}
