/**
 * Epoch samplers: which training images an epoch visits, in which order.
 *
 * - `sample-rate` (first place, SPEC section 4): every epoch takes all positives plus
 *   `int(n_pos * (1 - p) / p)` negatives drawn with replacement, shuffled together. p is fixed per
 *   training part, or slides linearly from `start` to `end` over the epochs of a run.
 * - `positive-only` (second place's segmentation): the positives, shuffled.
 * - `all`: every image once, shuffled.
 * - `balanced` (42nd place's classifier): batches of half positives and half negatives; each class
 *   is visited in a shuffled order without replacement, restarting when exhausted.
 *
 * Epoch `e` of a run with seed `s` is a pure function of (labels, config, s, e): a run resumed at
 * epoch e reproduces exactly the order an uninterrupted run would have used.
 */
import { closestName } from '../core/edit-distance.js';
import { Random, deriveSeed } from '../core/random.js';
import type { Seed } from '../core/random.js';
import { assertInteger, describeValue, invalidParameterError, is } from '../core/validate.js';

/** A sample rate p (the fraction of positives in an epoch), fixed or sliding over a run. */
export type SampleRateSchedule = number | { start: number; end: number };

/** The sampler part of an experiment config (JSON). */
export type SamplerConfig =
  | { mode: 'sample-rate'; sampleRate: SampleRateSchedule }
  | { mode: 'positive-only' }
  | { mode: 'all' }
  | { mode: 'balanced'; batchSize: number; positiveFraction?: number; batchesPerEpoch?: number };

export const SAMPLER_MODES = ['sample-rate', 'positive-only', 'all', 'balanced'] as const;
export type SamplerMode = (typeof SAMPLER_MODES)[number];

const KEYS: Record<SamplerMode, readonly string[]> = {
  'sample-rate': ['mode', 'sampleRate'],
  'positive-only': ['mode'],
  all: ['mode'],
  balanced: ['mode', 'batchSize', 'positiveFraction', 'batchesPerEpoch'],
};

/** Thrown for an invalid sampler config; names the key and, for a typo, the closest valid key. */
export class SamplerConfigError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = 'SamplerConfigError';
  }
}

function checkRate(where: string, p: unknown): number {
  if (!is.number(p) || p <= 0 || p > 1) throw new SamplerConfigError(`Expected a sample rate in (0, 1] for ${where} but received ${describeValue(p)}`);
  return p;
}

/**
 * Validates a sampler config (e.g. read from an experiment file) and returns it typed. Unknown
 * keys are errors naming the closest valid key.
 */
export function parseSamplerConfig(value: unknown, where = 'sampler'): SamplerConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SamplerConfigError(`Expected an object for ${where} but received ${describeValue(value)}`);
  const raw = value as Record<string, unknown>;
  const mode = raw.mode;
  if (!is.oneOf(mode, SAMPLER_MODES)) {
    const hint = is.string(mode) ? `: did you mean "${closestName(mode, SAMPLER_MODES)}"?` : '';
    throw new SamplerConfigError(`Expected one of ${SAMPLER_MODES.join(', ')} for ${where}.mode but received ${describeValue(mode)}${hint}`);
  }
  for (const key of Object.keys(raw)) {
    if (!KEYS[mode].includes(key)) throw new SamplerConfigError(`Unknown key "${key}" in ${where} (mode ${mode}): did you mean "${closestName(key, KEYS[mode])}"?`);
  }
  switch (mode) {
    case 'sample-rate': {
      const rate = raw.sampleRate;
      if (typeof rate === 'object' && rate !== null && !Array.isArray(rate)) {
        const r = rate as Record<string, unknown>;
        for (const key of Object.keys(r)) {
          if (key !== 'start' && key !== 'end') throw new SamplerConfigError(`Unknown key "${key}" in ${where}.sampleRate: did you mean "${closestName(key, ['start', 'end'])}"?`);
        }
        return { mode, sampleRate: { start: checkRate(`${where}.sampleRate.start`, r.start), end: checkRate(`${where}.sampleRate.end`, r.end) } };
      }
      return { mode, sampleRate: checkRate(`${where}.sampleRate`, rate) };
    }
    case 'balanced': {
      const out: SamplerConfig = { mode, batchSize: 0 };
      if (!is.integer(raw.batchSize) || raw.batchSize < 2) throw new SamplerConfigError(`Expected an integer >= 2 for ${where}.batchSize but received ${describeValue(raw.batchSize)}`);
      out.batchSize = raw.batchSize;
      if (raw.positiveFraction !== undefined) {
        if (!is.number(raw.positiveFraction) || raw.positiveFraction <= 0 || raw.positiveFraction >= 1) {
          throw new SamplerConfigError(`Expected a number in (0, 1) for ${where}.positiveFraction but received ${describeValue(raw.positiveFraction)}`);
        }
        out.positiveFraction = raw.positiveFraction;
      }
      if (raw.batchesPerEpoch !== undefined) {
        if (!is.positiveInteger(raw.batchesPerEpoch)) throw new SamplerConfigError(`Expected a positive integer for ${where}.batchesPerEpoch but received ${describeValue(raw.batchesPerEpoch)}`);
        out.batchesPerEpoch = raw.batchesPerEpoch;
      }
      return out;
    }
    default:
      return { mode };
  }
}

/**
 * The sample rate of epoch `epoch` (0-based) of a run of `epochs` epochs: fixed, or linear from
 * `start` (first epoch) to `end` (last epoch).
 */
export function sampleRateAt(schedule: SampleRateSchedule, epoch: number, epochs: number): number {
  assertInteger('epoch', epoch, 0);
  assertInteger('epochs', epochs, 1);
  if (typeof schedule === 'number') return schedule;
  if (epochs === 1) return schedule.start;
  const t = Math.min(epoch, epochs - 1) / (epochs - 1);
  return schedule.start + (schedule.end - schedule.start) * t;
}

/** The first place's negative count for n positives at rate p: int(n_pos * (1 - p) / p). */
export function negativesFor(positives: number, p: number): number {
  return Math.trunc((positives * (1 - p)) / p);
}

export interface SamplerOptions {
  /** The run's seed: epoch orders derive from (seed, epoch). */
  seed: Seed;
  /** Epochs in the run (for a sliding sample rate; default 1). */
  epochs?: number;
}

/** One epoch's plan: dataset indices in visiting order (and the batch size they were built for). */
export interface EpochPlan {
  epoch: number;
  indices: Int32Array;
  positives: number;
  negatives: number;
  /** The sample rate used (sample-rate mode). */
  sampleRate?: number;
  /** Balanced mode: the batch size whose boundaries the order respects. */
  batchSize?: number;
}

export class EpochSampler {
  readonly config: SamplerConfig;
  readonly positiveIndices: Int32Array;
  readonly negativeIndices: Int32Array;
  readonly seed: Seed;
  readonly epochs: number;

  /**
   * @param labels per dataset index, whether the image has a pneumothorax (non-empty mask)
   * @param config how epochs are drawn (see `SamplerConfig`); validated here
   */
  constructor(labels: readonly boolean[] | Uint8Array, config: SamplerConfig, options: SamplerOptions) {
    if (!Array.isArray(labels) && !(labels instanceof Uint8Array)) throw invalidParameterError('labels', 'an array of booleans', labels);
    this.config = parseSamplerConfig(config);
    if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object with seed', options);
    if (!is.integer(options.seed) && !is.string(options.seed)) throw invalidParameterError('options.seed', 'an integer or a string', options.seed);
    this.seed = options.seed;
    this.epochs = options.epochs ?? 1;
    assertInteger('options.epochs', this.epochs, 1);
    const pos: number[] = [];
    const neg: number[] = [];
    for (let i = 0; i < labels.length; i++) (labels[i] ? pos : neg).push(i);
    this.positiveIndices = Int32Array.from(pos);
    this.negativeIndices = Int32Array.from(neg);
    const needsPositives = this.config.mode === 'sample-rate' || this.config.mode === 'positive-only' || this.config.mode === 'balanced';
    if (needsPositives && pos.length === 0) throw new SamplerConfigError(`sampler mode ${this.config.mode} needs positive images but the dataset has none`);
    if (this.config.mode === 'balanced' && neg.length === 0) throw new SamplerConfigError('sampler mode balanced needs negative images but the dataset has none');
  }

  /** The sample rate of an epoch (sample-rate mode), else undefined. */
  sampleRate(epoch: number): number | undefined {
    return this.config.mode === 'sample-rate' ? sampleRateAt(this.config.sampleRate, epoch, this.epochs) : undefined;
  }

  /** The order of epoch `epoch` (0-based). Pure: the same arguments give the same plan. */
  epoch(epoch: number): EpochPlan {
    assertInteger('epoch', epoch, 0);
    const rng = new Random(deriveSeed(this.seed, epoch));
    const pos = this.positiveIndices;
    const neg = this.negativeIndices;
    switch (this.config.mode) {
      case 'sample-rate': {
        const p = this.sampleRate(epoch) as number;
        const count = neg.length === 0 ? 0 : negativesFor(pos.length, p);
        const indices = new Int32Array(pos.length + count);
        for (let i = 0; i < count; i++) indices[i] = neg[rng.int(0, neg.length - 1)] as number;
        indices.set(pos, count);
        rng.shuffle(indices as unknown as number[]);
        return { epoch, indices, positives: pos.length, negatives: count, sampleRate: p };
      }
      case 'positive-only': {
        const indices = Int32Array.from(pos);
        rng.shuffle(indices as unknown as number[]);
        return { epoch, indices, positives: pos.length, negatives: 0 };
      }
      case 'all': {
        const indices = new Int32Array(pos.length + neg.length);
        for (let i = 0; i < indices.length; i++) indices[i] = i;
        rng.shuffle(indices as unknown as number[]);
        return { epoch, indices, positives: pos.length, negatives: neg.length };
      }
      case 'balanced':
        return this.balancedEpoch(epoch, rng, this.config);
    }
  }

  private balancedEpoch(epoch: number, rng: Random, config: Extract<SamplerConfig, { mode: 'balanced' }>): EpochPlan {
    const batchSize = config.batchSize;
    const perBatchPos = Math.min(batchSize - 1, Math.max(1, Math.round(batchSize * (config.positiveFraction ?? 0.5))));
    const perBatchNeg = batchSize - perBatchPos;
    const total = this.positiveIndices.length + this.negativeIndices.length;
    const batches = config.batchesPerEpoch ?? Math.max(1, Math.floor(total / batchSize));
    const draw = (pool: Int32Array): (() => number) => {
      let order: number[] = [];
      return () => {
        if (order.length === 0) order = rng.shuffle(Array.from(pool));
        return order.pop() as number;
      };
    };
    const nextPos = draw(this.positiveIndices);
    const nextNeg = draw(this.negativeIndices);
    const indices = new Int32Array(batches * batchSize);
    for (let b = 0; b < batches; b++) {
      const batch: number[] = [];
      for (let i = 0; i < perBatchPos; i++) batch.push(nextPos());
      for (let i = 0; i < perBatchNeg; i++) batch.push(nextNeg());
      rng.shuffle(batch);
      indices.set(batch, b * batchSize);
    }
    return { epoch, indices, positives: batches * perBatchPos, negatives: batches * perBatchNeg, batchSize };
  }
}
