/**
 * Classifier gating (SPEC section 5, second place): a small stacking model over the out-of-fold
 * probabilities of N classifiers decides whether an image holds pneumothorax at all; the
 * segmentation is submitted only where the stacked probability exceeds the gate (0.65).
 *
 * Features per image (2N + 1): the N probabilities, their mean, and the halved differences of
 * neighbours (p[i+1] - p[i]) / 2 taken circularly (the last with the first), so N of them.
 * Model: 2N+1 -> 16 (ReLU) -> 1 (sigmoid), binary cross-entropy, full-batch Adam, Xavier-uniform
 * initialisation from a seeded PRNG: deterministic given the seed. Trained over k folds (default 5):
 * each fold's model predicts its held-out images (out-of-fold probabilities, to check the gate),
 * and new images get the mean of the k models.
 */
import { Random } from '../core/random.js';
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';

/** The second place's gate. */
export const DEFAULT_GATE = 0.65;

/** The stacking features of one image's N classifier probabilities (2N + 1 values). */
export function stackingFeatures(probs: readonly number[]): Float64Array {
  const n = probs.length;
  if (n === 0) throw invalidParameterError('probs', 'at least one classifier probability', probs);
  probs.forEach((p, i) => assertNumber(`probs[${i}]`, p, 0, 1));
  const f = new Float64Array(2 * n + 1);
  let mean = 0;
  for (let i = 0; i < n; i++) {
    f[i] = probs[i]!;
    mean += probs[i]!;
  }
  f[n] = mean / n;
  for (let i = 0; i < n; i++) f[n + 1 + i] = (probs[(i + 1) % n]! - probs[i]!) / 2;
  return f;
}

export interface StackingTrainOptions {
  /** Hidden units (default 16). */
  hidden?: number;
  /** Full-batch Adam steps (default 500). */
  epochs?: number;
  /** Adam learning rate (default 0.01). */
  lr?: number;
  /** L2 weight decay (default 1e-4). */
  weightDecay?: number;
  seed?: number;
}

/** The stacking MLP: 2N+1 -> hidden (ReLU) -> 1 (sigmoid). Plain JSON-serialisable weights. */
export class StackingModel {
  constructor(
    readonly inputs: number,
    readonly hidden: number,
    /** [hidden x inputs] row-major. */
    readonly w1: Float64Array,
    readonly b1: Float64Array,
    readonly w2: Float64Array,
    public b2: number,
  ) {}

  /** Trains on feature rows and 0/1 labels with binary cross-entropy. */
  static train(features: readonly Float64Array[], labels: ArrayLike<number>, options: StackingTrainOptions = {}): StackingModel {
    if (!Array.isArray(features) || features.length === 0) throw invalidParameterError('features', 'at least one feature row', features);
    if (labels.length !== features.length) throw invalidParameterError('labels', `${features.length} labels`, labels.length);
    const d = features[0]!.length;
    features.forEach((f, i) => {
      if (!(f instanceof Float64Array) || f.length !== d) throw invalidParameterError(`features[${i}]`, `a Float64Array of ${d} values`, f);
    });
    for (let i = 0; i < labels.length; i++) if (labels[i] !== 0 && labels[i] !== 1) throw invalidParameterError(`labels[${i}]`, '0 or 1', labels[i]);
    const h = options.hidden ?? 16;
    const epochs = options.epochs ?? 500;
    const lr = options.lr ?? 0.01;
    const decay = options.weightDecay ?? 1e-4;
    assertInteger('hidden', h, 1, 4096);
    assertInteger('epochs', epochs, 1, 1e6);
    assertNumber('lr', lr, 0);
    assertNumber('weightDecay', decay, 0);
    const rng = new Random(options.seed ?? 42);
    const uniform = (fanIn: number, fanOut: number) => {
      const a = Math.sqrt(6 / (fanIn + fanOut));
      return (rng.next() * 2 - 1) * a;
    };
    const model = new StackingModel(d, h, Float64Array.from({ length: h * d }, () => uniform(d, h)), new Float64Array(h), Float64Array.from({ length: h }, () => uniform(h, 1)), 0);
    const params = [model.w1, model.b1, model.w2];
    const b2Box = new Float64Array(1);
    const all = [...params, b2Box];
    const m = all.map((p) => new Float64Array(p.length));
    const v = all.map((p) => new Float64Array(p.length));
    const grads = all.map((p) => new Float64Array(p.length));
    const n = features.length;
    const act = new Float64Array(h);
    const beta1 = 0.9;
    const beta2 = 0.999;
    for (let step = 1; step <= epochs; step++) {
      for (const g of grads) g.fill(0);
      const [gw1, gb1, gw2, gb2] = grads as [Float64Array, Float64Array, Float64Array, Float64Array];
      for (let s = 0; s < n; s++) {
        const x = features[s]!;
        let z = model.b2;
        for (let j = 0; j < h; j++) {
          let a = model.b1[j]!;
          for (let k = 0; k < d; k++) a += model.w1[j * d + k]! * x[k]!;
          act[j] = a > 0 ? a : 0;
          z += model.w2[j]! * act[j]!;
        }
        // d(BCE)/dz = sigmoid(z) - y, averaged over the batch.
        const dz = (1 / (1 + Math.exp(-z)) - labels[s]!) / n;
        gb2[0] += dz;
        for (let j = 0; j < h; j++) {
          gw2[j] += dz * act[j]!;
          if (act[j]! > 0) {
            const da = dz * model.w2[j]!;
            gb1[j] += da;
            for (let k = 0; k < d; k++) gw1[j * d + k] += da * x[k]!;
          }
        }
      }
      b2Box[0] = model.b2;
      for (let p = 0; p < all.length; p++) {
        const w = all[p]!;
        const g = grads[p]!;
        const mp = m[p]!;
        const vp = v[p]!;
        const isBias = p === 1 || p === 3;
        for (let i = 0; i < w.length; i++) {
          const gi = g[i]! + (isBias ? 0 : decay * w[i]!);
          mp[i] = beta1 * mp[i]! + (1 - beta1) * gi;
          vp[i] = beta2 * vp[i]! + (1 - beta2) * gi * gi;
          const mhat = mp[i]! / (1 - beta1 ** step);
          const vhat = vp[i]! / (1 - beta2 ** step);
          w[i] = w[i]! - (lr * mhat) / (Math.sqrt(vhat) + 1e-8);
        }
      }
      model.b2 = b2Box[0]!;
    }
    return model;
  }

  /** The stacked probability of one feature row. */
  predict(x: Float64Array): number {
    if (x.length !== this.inputs) throw invalidParameterError('features', `${this.inputs} values`, x.length);
    let z = this.b2;
    for (let j = 0; j < this.hidden; j++) {
      let a = this.b1[j]!;
      for (let k = 0; k < this.inputs; k++) a += this.w1[j * this.inputs + k]! * x[k]!;
      if (a > 0) z += this.w2[j]! * a;
    }
    return 1 / (1 + Math.exp(-z));
  }

  toJSON(): { inputs: number; hidden: number; w1: number[]; b1: number[]; w2: number[]; b2: number } {
    return { inputs: this.inputs, hidden: this.hidden, w1: [...this.w1], b1: [...this.b1], w2: [...this.w2], b2: this.b2 };
  }

  static fromJSON(j: ReturnType<StackingModel['toJSON']>): StackingModel {
    if (!j || typeof j !== 'object' || !Array.isArray(j.w1) || j.w1.length !== j.inputs * j.hidden || j.b1.length !== j.hidden || j.w2.length !== j.hidden) {
      throw invalidParameterError('stacking model', 'the JSON of StackingModel.toJSON()', j);
    }
    return new StackingModel(j.inputs, j.hidden, Float64Array.from(j.w1), Float64Array.from(j.b1), Float64Array.from(j.w2), j.b2);
  }
}

export interface StackingEnsemble {
  /** One model per fold. */
  models: StackingModel[];
  /** Out-of-fold stacked probability of every training image. */
  oof: Float64Array;
  /** Fold of every training image. */
  folds: Int32Array;
}

/**
 * Trains the stacking model over `k` folds (stratified by label, seeded): per image `probs[i]` (N
 * classifier probabilities, out-of-fold) and `labels[i]` (1 = pneumothorax).
 */
export function trainStacking(probs: readonly (readonly number[])[], labels: ArrayLike<number>, options: StackingTrainOptions & { folds?: number } = {}): StackingEnsemble {
  const k = options.folds ?? 5;
  assertInteger('folds', k, 2, 100);
  if (!Array.isArray(probs) || probs.length < k) throw invalidParameterError('probs', `at least ${k} images (one per fold)`, probs);
  if (labels.length !== probs.length) throw invalidParameterError('labels', `${probs.length} labels`, labels.length);
  const features = probs.map((p) => stackingFeatures(p));
  const rng = new Random(options.seed ?? 42);
  const folds = new Int32Array(probs.length);
  for (const cls of [0, 1]) {
    const members = Array.from({ length: probs.length }, (_, i) => i).filter((i) => labels[i] === cls);
    rng.shuffle(members);
    members.forEach((i, r) => (folds[i] = r % k));
  }
  const models: StackingModel[] = [];
  const oof = new Float64Array(probs.length);
  for (let f = 0; f < k; f++) {
    const train = features.filter((_, i) => folds[i] !== f);
    const trainLabels = Array.from(labels).filter((_, i) => folds[i] !== f);
    const model = StackingModel.train(train, trainLabels, { ...options, seed: (options.seed ?? 42) + f });
    models.push(model);
    features.forEach((x, i) => {
      if (folds[i] === f) oof[i] = model.predict(x);
    });
  }
  return { models, oof, folds };
}

/** The mean stacked probability of the fold models for each image's N classifier probabilities. */
export function predictStacking(models: readonly StackingModel[], probs: readonly (readonly number[])[]): Float64Array {
  if (!Array.isArray(models) || models.length === 0) throw invalidParameterError('models', 'at least one stacking model', models);
  return Float64Array.from(probs, (p) => {
    const x = stackingFeatures(p);
    return models.reduce((s, m) => s + m.predict(x), 0) / models.length;
  });
}

/** The gate: keep the segmentation only when the stacked probability is above `threshold` (default 0.65). */
export function gateSegmentation(stacked: number, threshold = DEFAULT_GATE): boolean {
  assertNumber('threshold', threshold, 0, 1);
  return stacked > threshold;
}
