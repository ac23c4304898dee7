/**
 * Training data: the images of a `prepare` folder (train/, mask/ PNGs) split by a folds file, and
 * the `BatchLoader` that reads, decodes and augments the next batches while the native training
 * step runs.
 *
 * Decoding (`readImageBatch`) and augmentation (`AugmentPipeline.apply`) are native and run on the
 * libuv thread pool, so a batch in preparation overlaps the step on the main addon queue. The
 * loader keeps `depth` batches in flight and measures how long the consumer waited for data: the
 * trainer reports that as the data-wait fraction of step time.
 *
 * Every batch is a pure function of (dataset, indices, seed): the augmentation of batch `b` of an
 * epoch draws from `deriveSeed(epochSeed, b)`, so a resumed run reproduces the same batches.
 *
 * A prepared folder with an image store (`train.pnimg`, written by `prepare --store` or
 * `pneumo-native store`) is read from the store: uint8 bytes at fixed offsets, no decoding. The
 * batches are the same as from the PNGs (tested).
 */
import { existsSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import sharp from 'sharp';
import { Random, deriveSeed } from '../core/random.js';
import { Tensor } from '../core/tensor.js';
import { assertInteger, invalidParameterError } from '../core/validate.js';
import { readImageBatch, stageToDevice } from '../data/batch.js';
import { dilateMasks } from '../data/dilate.js';
import { ImageStoreReader, storePath } from '../data/image-store.js';
import { ALWAYS_TRAIN_FOLD, FoldSplit } from '../data/folds.js';
import type { FoldRow } from '../data/folds.js';
import type { AugmentPipeline } from './augment/pipeline.js';

/** One training image of a prepared folder. */
export interface TrainingSample {
  id: string;
  /** The image file (train/<id>.png). */
  image: string;
  /** The mask file (mask/<id>.png, 255 inside). */
  mask: string;
  /** Has a pneumothorax (the folds file's exist_labels). */
  positive: boolean;
  /** Its fold (`ALWAYS_TRAIN_FOLD` for images always trained on). */
  fold: number;
  /** Where the image and mask sit in the folder's image store, when it has one. */
  store?: { reader: ImageStoreReader; index: number };
}

/** A prepared dataset split into folds. */
export interface PreparedDataset {
  dir: string;
  foldsFile: string;
  samples: TrainingSample[];
  /** Size of the prepared PNGs (square), read from the first image. */
  preparedSize: number;
  /** The number of folds. */
  k: number;
  /** The image store the samples are read from (`train.pnimg`), or null: the PNG folders. */
  store: ImageStoreReader | null;
}

/** Options of {@link openPreparedDataset}. */
export interface OpenDatasetOptions {
  /**
   * 'auto' (default): read `train.pnimg` when the folder has one, else the PNGs; 'png': the PNGs
   * even when there is a store; a path: that store (required).
   */
  store?: 'auto' | 'png' | string;
}

/**
 * Resolves the folds file of a prepared folder: an absolute path, a path that exists relative to
 * the current directory, else one inside the data folder (the default `folds.csv`).
 */
export function resolveFoldsFile(dataDir: string, folds: string): string {
  if (isAbsolute(folds)) return folds;
  if (existsSync(folds)) return resolve(folds);
  return join(resolve(dataDir), folds);
}

/**
 * Opens a `prepare` folder: checks its layout and reads the folds file.
 * @throws Error naming the missing folder or file
 */
export async function openPreparedDataset(dataDir: string, folds: string, options: OpenDatasetOptions = {}): Promise<PreparedDataset> {
  const dir = resolve(dataDir);
  const storeOption = options.store ?? 'auto';
  const storeFile = storeOption === 'auto' ? storePath(dir, 'train') : storeOption === 'png' ? null : resolve(storeOption);
  if (storeFile !== null && (storeOption !== 'auto' || existsSync(storeFile))) return openStoreDataset(dir, storeFile, folds);
  for (const sub of ['train', 'mask']) {
    const path = join(dir, sub);
    if (!existsSync(path) || !statSync(path).isDirectory()) {
      throw new Error(`${dir} is not a prepared dataset: ${sub}/ is missing (write one with \`pneumo-native prepare --train-dicom ... --out ${dataDir}\`)`);
    }
  }
  const foldsFile = resolveFoldsFile(dataDir, folds);
  if (!existsSync(foldsFile)) throw new Error(`folds file ${foldsFile} does not exist (write one with \`pneumo-native folds --labels train-rle.csv --out ${foldsFile}\`)`);
  const split = await FoldSplit.read(foldsFile);
  if (split.rows.length === 0) throw new Error(`folds file ${foldsFile} lists no images`);
  const samples = split.rows.map((row: FoldRow) => ({
    id: row.id,
    image: join(dir, 'train', row.fname),
    mask: join(dir, 'mask', row.fname),
    positive: row.existLabels === 1,
    fold: row.fold,
  }));
  const first = samples[0]!;
  if (!existsSync(first.image)) throw new Error(`${first.image} (listed in ${foldsFile}) does not exist: do the folds file and the prepared folder belong together?`);
  const meta = await sharp(first.image).metadata();
  return { dir, foldsFile, samples, preparedSize: meta.width ?? 0, k: split.k, store: null };
}

/** A prepared dataset read from its image store: every image of the folds file must be in it. */
async function openStoreDataset(dir: string, storeFile: string, folds: string): Promise<PreparedDataset> {
  const foldsFile = resolveFoldsFile(dir, folds);
  if (!existsSync(foldsFile)) throw new Error(`folds file ${foldsFile} does not exist (write one with \`pneumo-native folds --labels train-rle.csv --out ${foldsFile}\`)`);
  const split = await FoldSplit.read(foldsFile);
  if (split.rows.length === 0) throw new Error(`folds file ${foldsFile} lists no images`);
  const reader = await ImageStoreReader.open(storeFile);
  if (!reader.hasMasks) {
    await reader.close();
    throw new Error(`${storeFile} holds no masks (a test split's store?): training needs the store of the train split`);
  }
  const missing: string[] = [];
  const samples = split.rows.map((row: FoldRow) => {
    const index = reader.indexOf(row.id);
    if (index < 0) missing.push(row.id);
    return {
      id: row.id,
      image: join(dir, 'train', row.fname),
      mask: join(dir, 'mask', row.fname),
      positive: row.existLabels === 1,
      fold: row.fold,
      store: { reader, index },
    };
  });
  if (missing.length > 0) {
    await reader.close();
    throw new Error(`${storeFile} lacks ${missing.length} images listed in ${foldsFile}: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''} (convert the folder again with \`pneumo-native store --data ${dir}\`)`);
  }
  return { dir, foldsFile, samples, preparedSize: reader.size, k: split.k, store: reader };
}

/** The training and validation samples of `fold` (the always-train fold is only trained on). */
export function splitFold(dataset: PreparedDataset, fold: number): { train: TrainingSample[]; val: TrainingSample[] } {
  assertInteger('fold', fold, 0, Math.max(0, dataset.k - 1));
  const train = dataset.samples.filter((s) => s.fold !== fold);
  const val = dataset.samples.filter((s) => s.fold === fold && s.fold !== ALWAYS_TRAIN_FOLD);
  if (val.length === 0) throw new Error(`fold ${fold} of ${dataset.foldsFile} has no images to validate on`);
  if (train.length === 0) throw new Error(`fold ${fold} of ${dataset.foldsFile} leaves no images to train on`);
  return { train, val };
}

/** A batch ready for the training step or validation. */
export interface LoadedBatch {
  /** Position of the batch in its epoch. */
  index: number;
  ids: string[];
  /** float32 [B, C, S, S], normalised as the pipeline says. */
  images: Tensor;
  /** float32 [B, 1, S, S] of 0/1. */
  masks: Tensor;
  /** float32 [B, 1]: 1 for an image with a pneumothorax. */
  labels: Tensor;
  /** Seconds spent reading, decoding and augmenting it (on the thread pool). */
  loadSeconds: number;
  dispose(): void;
}

export interface BatchLoaderOptions {
  /** Training size (square). */
  size: number;
  batchSize: number;
  /** Augmentation (training) or normalisation only (validation). */
  pipeline: AugmentPipeline;
  /** Output channels (the model's input channels). */
  channels: 1 | 3;
  /** Batches prepared ahead of the consumer (default 2). */
  depth?: number;
  /** Torch device the batches go to (default cpu). */
  device?: string;
  /** The prepared images' size (informational: masks are always thresholded at half way natively). */
  preparedSize?: number;
  /**
   * Dilate every mask by a square kernel of this many pixels (at `size`) before augmentation, as the
   * 42nd place's classifier (0, the default: no dilation). See `data/dilate.ts`.
   */
  maskDilation?: number;
}

function disposeAll(...tensors: (Tensor | undefined)[]): void {
  for (const t of tensors) if (t && !t.disposed) t.dispose();
}

/**
 * The uint8 images and 0/255 masks [B, 1, size, size] of `samples`, on `device`: from their image
 * store when they all have one (read natively: positional reads straight into the batch, resized
 * only when the store's size is not `size`), else decoded from the PNGs (natively with libpng);
 * on a CUDA device either way through pinned memory and an asynchronous copy on a side stream
 * ({@link stageToDevice}). Either way masks are thresholded at 128 after a resize, so both sources give
 * the same batch.
 */
export async function readSamples(samples: readonly TrainingSample[], size: number, device = 'cpu'): Promise<[Tensor, Tensor]> {
  const reader = samples[0]?.store?.reader;
  if (reader && samples.every((s) => s.store?.reader === reader)) {
    const { images, masks } = await reader.readTensors(
      samples.map((s) => s.store!.index),
      { size, masks: true, device },
    );
    return [images, masks!];
  }
  const [images, masks] = await Promise.allSettled([readImageBatch(samples.map((s) => s.image), { size }), readImageBatch(samples.map((s) => s.mask), { size, threshold: true })]);
  if (images.status === 'rejected' || masks.status === 'rejected') {
    if (images.status === 'fulfilled') images.value.dispose();
    if (masks.status === 'fulfilled') masks.value.dispose();
    throw images.status === 'rejected' ? images.reason : (masks as PromiseRejectedResult).reason;
  }
  if (device === 'cpu') return [images.value, masks.value];
  try {
    // Pinned memory and a side-stream copy on a pool thread, as the store's reader does.
    const [onDevice, masksOnDevice] = await stageToDevice([images.value, masks.value], device);
    return [onDevice!, masksOnDevice!];
  } finally {
    disposeAll(images.value, masks.value);
  }
}

/**
 * Reads and augments batches ahead of their use. `epoch(indices, seed)` yields the batches of one
 * epoch in order; while the consumer works on one, the next `depth` are being prepared.
 */
export class BatchLoader {
  readonly options: Required<BatchLoaderOptions>;
  #waitSeconds = 0;
  #loadSeconds = 0;
  #batches = 0;

  constructor(
    readonly samples: readonly TrainingSample[],
    options: BatchLoaderOptions,
  ) {
    if (!Array.isArray(samples) || samples.length === 0) throw invalidParameterError('samples', 'a non-empty array of training samples', samples);
    assertInteger('options.size', options.size, 1, 16384);
    assertInteger('options.batchSize', options.batchSize, 1, 4096);
    const depth = options.depth ?? 2;
    assertInteger('options.depth', depth, 1, 64);
    const maskDilation = options.maskDilation ?? 0;
    assertInteger('options.maskDilation', maskDilation, 0, 16384);
    this.options = { depth, device: 'cpu', preparedSize: options.size, maskDilation, ...options };
  }

  /** Seconds the consumer has waited for a batch that was not ready (since the last reset). */
  get waitSeconds(): number {
    return this.#waitSeconds;
  }

  /** Seconds spent preparing batches (overlapping the consumer's work). */
  get loadSeconds(): number {
    return this.#loadSeconds;
  }

  get batchesLoaded(): number {
    return this.#batches;
  }

  resetCounters(): void {
    this.#waitSeconds = 0;
    this.#loadSeconds = 0;
    this.#batches = 0;
  }

  /** Reads and augments the samples at `indices` into one batch (augmentation drawn from `seed`). */
  async load(indices: ArrayLike<number>, seed: number, index = 0): Promise<LoadedBatch> {
    const started = performance.now();
    const chosen = Array.from(indices, (i) => {
      const s = this.samples[i];
      if (s === undefined) throw invalidParameterError('indices', `indices below ${this.samples.length}`, i);
      return s;
    });
    const { size, pipeline, device, channels } = this.options;
    // Masks resized from another size are thresholded back to 0/255 at half way (natively).
    const dilate = this.options.maskDilation > 1;
    // Dilation works on CPU masks: read there, dilate, then move; otherwise read straight to the
    // device (a store through pinned memory and a side-stream copy).
    const [raw, rawMasks] = await readSamples(chosen, size, dilate ? 'cpu' : device);
    let masks = rawMasks;
    if (dilate) {
      try {
        const dilated = dilateMasks(await rawMasks.data('uint8'), chosen.length, size, size, this.options.maskDilation);
        masks = Tensor.from(dilated, [chosen.length, 1, size, size], { dtype: 'uint8' });
      } finally {
        rawMasks.dispose();
      }
    }
    let images = raw;
    if (dilate && device !== 'cpu') {
      const host = [raw, masks];
      try {
        [images, masks] = (await stageToDevice(host, device)) as [Tensor, Tensor];
      } finally {
        disposeAll(...host);
      }
    }
    try {
      const plan = pipeline.sample(new Random(seed), chosen.length, size, size);
      const out = await pipeline.apply(images, masks, plan, { channels });
      const labels = Tensor.from(Float32Array.from(chosen, (s) => (s.positive ? 1 : 0)), [chosen.length, 1], { device });
      const loadSeconds = (performance.now() - started) / 1000;
      this.#loadSeconds += loadSeconds;
      this.#batches += 1;
      const batch: LoadedBatch = {
        index,
        ids: chosen.map((s) => s.id),
        images: out.images,
        masks: out.masks as Tensor,
        labels,
        loadSeconds,
        dispose: () => disposeAll(batch.images, batch.masks, batch.labels),
      };
      return batch;
    } finally {
      disposeAll(images, masks);
    }
  }

  /**
   * The batches of one epoch: `indices` in order, cut into batches of `batchSize` (the last may be
   * smaller), at most `maxBatches`. Batch `b` is augmented with `deriveSeed(seed, b)`. Dispose each
   * batch when done; breaking out of the loop disposes the ones prepared ahead.
   */
  async *epoch(indices: ArrayLike<number>, seed: number, maxBatches = Infinity): AsyncGenerator<LoadedBatch> {
    const { batchSize, depth } = this.options;
    const count = Math.min(Math.ceil(indices.length / batchSize), maxBatches);
    const pending: Promise<LoadedBatch>[] = [];
    let next = 0;
    const schedule = (): void => {
      while (next < count && pending.length < depth) {
        const b = next++;
        const slice = Array.prototype.slice.call(indices, b * batchSize, Math.min(indices.length, (b + 1) * batchSize)) as number[];
        const p = this.load(slice, deriveSeed(seed, b), b);
        p.catch(() => undefined); // surfaced when awaited
        pending.push(p);
      }
    };
    try {
      schedule();
      while (pending.length > 0) {
        const waitStart = performance.now();
        const batch = await pending.shift()!;
        this.#waitSeconds += (performance.now() - waitStart) / 1000;
        schedule();
        yield batch;
      }
    } finally {
      for (const p of pending) p.then((b) => b.dispose(), () => undefined);
    }
  }
}
