/**
 * Checkpoint weight averaging to a new checkpoint (SPEC sections 4-5): the first place's top-K
 * averaging and the second place's SWA. State dicts are averaged natively with weights
 * (`averageStateDicts`), loaded into the first checkpoint's architecture, and the BatchNorm
 * statistics are recomputed over training images (`Model.recomputeBatchNorm`, as
 * torch.optim.swa_utils.update_bn), since averaged weights do not match any checkpoint's statistics.
 */
import { Random } from '../core/random.js';
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';
import type { Tensor } from '../core/tensor.js';
import { imagenetPreprocess, preprocessImages } from '../data/batch.js';
import { Model } from '../models/model.js';
import type { LoadedCheckpoint } from '../models/model.js';
import { averageStateDicts } from './swa.js';

export interface SwaOptions {
  /** Relative weights, one per checkpoint (default equal; normalised). */
  weights?: readonly number[];
  /**
   * Training images for the BatchNorm pass (none: statistics are averaged like the weights), as
   * `inference.listImages` lists them.
   */
  images?: readonly { id: string; path: string }[];
  /** Use at most this many images, a seeded random subset (default all). */
  maxImages?: number;
  /** Images per BatchNorm batch (default 8; at least 2). */
  batchSize?: number;
  /** Input side (default: the first checkpoint's training `imgSize`). */
  size?: number;
  seed?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface SwaResult {
  out: string;
  checkpoints: { path: string; weight: number; epoch: unknown; score: unknown }[];
  /** Images and batches of the BatchNorm pass (0 without images). */
  bnImages: number;
  bnBatches: number;
  size: number | null;
}

/**
 * The checkpoints of a fold's training run (`<output>/<name>/part<N>/fold<k>/`) to average: the
 * `top` best kept epoch checkpoints by validation score (ties: the earlier epoch; the first place's
 * top-3 averaging), or the checkpoints of the given epochs (the second place's SWA, which
 * `checkpoints.keepEpochs` keeps on disk).
 * @throws Error naming the run folder when it holds fewer checkpoints than asked for
 */
export async function selectRunCheckpoints(dir: string, select: { top: number } | { epochs: readonly number[] }): Promise<string[]> {
  const { existsSync, readdirSync, readFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  if (!existsSync(dir)) throw new Error(`run folder ${dir} does not exist`);
  const name = (e: number): string => `epoch${String(e).padStart(3, '0')}.ckpt`;
  if ('epochs' in select) {
    const missing = select.epochs.filter((e) => !existsSync(join(dir, name(e))));
    if (missing.length > 0) throw new Error(`${dir} holds no checkpoint of epoch(s) ${missing.join(', ')} (train with checkpoints.keepEpochs listing them)`);
    return select.epochs.map((e) => join(dir, name(e)));
  }
  assertInteger('top', select.top, 1);
  const scores = new Map<number, number>();
  const metrics = join(dir, 'metrics.jsonl');
  if (existsSync(metrics)) {
    for (const line of readFileSync(metrics, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      const r = JSON.parse(line) as { epoch: number; validation: { score: number } | null };
      if (r.validation) scores.set(r.epoch, r.validation.score);
    }
  }
  const kept = readdirSync(dir)
    .map((f) => /^epoch(\d+)\.ckpt$/.exec(f))
    .filter((m): m is RegExpExecArray => m !== null && scores.has(Number(m[1])))
    .map((m) => Number(m[1]))
    .sort((a, b) => scores.get(b)! - scores.get(a)! || a - b);
  if (kept.length === 0) throw new Error(`${dir} holds no validated epoch checkpoint`);
  return kept.slice(0, select.top).map((e) => join(dir, name(e)));
}

/** Averages `paths` into one checkpoint at `out`, recomputing BatchNorm statistics on `options.images`. */
export async function averageCheckpoints(paths: readonly string[], out: string, options: SwaOptions = {}): Promise<SwaResult> {
  if (!Array.isArray(paths) || paths.length === 0) throw invalidParameterError('paths', 'at least one checkpoint', paths);
  const weights = options.weights ? [...options.weights] : paths.map(() => 1);
  if (weights.length !== paths.length) throw invalidParameterError('weights', `${paths.length} weights (one per checkpoint)`, weights.length);
  weights.forEach((w, i) => assertNumber(`weights[${i}]`, w, 0));
  const sum = weights.reduce((a, b) => a + b, 0);
  if (!(sum > 0)) throw invalidParameterError('weights', 'at least one positive weight', weights.join(', '));
  const batchSize = options.batchSize ?? 8;
  assertInteger('batchSize', batchSize, 2, 4096);
  const loaded: LoadedCheckpoint[] = [];
  const dicts: Map<string, Tensor>[] = [];
  try {
    for (const path of paths) {
      const l = await Model.loadCheckpoint(path);
      loaded.push(l);
      if (l.kind !== 'checkpoint') throw new Error(`${path} is a TorchScript export: average checkpoints (written by train or Model.save)`);
      if (JSON.stringify(l.model.spec) !== JSON.stringify(loaded[0]!.model.spec)) {
        throw new Error(`${path} is a ${l.model.describe()} but ${paths[0]} is a ${loaded[0]!.model.describe()}: only checkpoints of one architecture can be averaged`);
      }
      dicts.push(await l.model.stateDict());
    }
    const averaged = await averageStateDicts(dicts, weights);
    const model = loaded[0]!.model;
    try {
      await model.loadStateDict(averaged, { strict: true });
    } finally {
      for (const t of averaged.values()) t.dispose();
    }
    const metaSize = loaded[0]!.metadata.imgSize;
    const size = options.size ?? (typeof metaSize === 'number' ? metaSize : null);
    let bnImages = 0;
    let bnBatches = 0;
    if (options.images && options.images.length > 0) {
      if (size === null) throw new Error(`${paths[0]} does not record its training image size: pass the input size (--size)`);
      assertInteger('size', size, 1, 16384);
      let images = [...options.images];
      if (options.maxImages !== undefined && options.maxImages < images.length) {
        assertInteger('maxImages', options.maxImages, 2);
        images = new Random(options.seed ?? 42).shuffle(images).slice(0, options.maxImages);
      }
      // BatchNorm in training mode needs 2+ images per batch: a lone trailing image is left out.
      const usable = images.length - (images.length % batchSize === 1 ? 1 : 0);
      if (usable < 2) throw new Error(`the BatchNorm pass needs at least 2 images (got ${images.length})`);
      // The inference input (the training normalisation), made natively in one call.
      const channels = model.spec.inChannels as 1 | 3;
      const total = usable;
      async function* batches(): AsyncGenerator<Tensor> {
        for (let start = 0; start < usable; start += batchSize) {
          const chunk = images.slice(start, Math.min(usable, start + batchSize));
          const x = await preprocessImages(
            chunk.map((im) => im.path),
            imagenetPreprocess(size!, channels),
          );
          try {
            yield x;
          } finally {
            x.dispose();
          }
          bnImages += chunk.length;
          options.onProgress?.(bnImages, total);
        }
      }
      bnBatches = await model.recomputeBatchNorm(batches());
    }
    const checkpoints = paths.map((path, i) => ({ path, weight: weights[i]! / sum, epoch: loaded[i]!.metadata.epoch ?? null, score: loaded[i]!.metadata.score ?? null }));
    await model.save(out, {
      metadata: {
        ...loaded[0]!.metadata,
        writer: 'pneumo-native swa',
        averaged: checkpoints,
        bnImages,
        bnBatches,
        imgSize: size ?? loaded[0]!.metadata.imgSize ?? null,
        trainer: undefined,
      },
    });
    return { out, checkpoints, bnImages, bnBatches, size };
  } finally {
    for (const d of dicts) for (const t of d.values()) t.dispose();
    for (const l of loaded) {
      for (const t of l.optimizer.values()) t.dispose();
      l.model.dispose();
    }
  }
}
