/**
 * Inference to a map file: probability maps of a set of images from one or many checkpoints
 * (folds x top-K x architectures, or exported TorchScript models), averaged with weights, each
 * with optional horizontal-flip TTA (one batched forward over [x, flip(x)], `Model.predict`).
 * Images are decoded natively in batches (DICOM, PNG, JPEG), normalised as in training (ImageNet
 * statistics), predicted, and each map goes straight to the map store: memory holds one batch.
 * A partial output (an interrupted run with the same images, models and settings) resumes.
 */
import { readdir } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';
import { imagenetPreprocess, preprocessImages } from '../data/batch.js';
import type { Tensor } from '../core/tensor.js';
import { Model } from '../models/model.js';
import { MapWriter } from './maps.js';
import type { MapDType } from './maps.js';

export interface InferModel {
  /** A checkpoint or TorchScript export (`Model.load`). */
  path: string;
  /** Relative weight in the average (default 1; normalised to sum to 1). */
  weight?: number;
}

export interface InferImage {
  id: string;
  path: string;
}

export interface InferOptions {
  /** Input side (default: the first checkpoint's training `imgSize`). Maps have this size. */
  size?: number;
  /** Horizontal-flip TTA (default false). */
  tta?: boolean;
  /** Images per forward (default 4; with TTA the network sees twice as many). */
  batchSize?: number;
  /** Stored values (default uint8). */
  dtype?: MapDType;
  /** "cpu" (default), "cuda" or "cuda:N". */
  device?: string;
  /** Replace a different existing output (default false: an error). */
  overwrite?: boolean;
  /**
   * Predict images whose JPEG data is damaged (truncated, corrupt; what cannot be decoded is
   * grey) instead of failing with an error naming the file (default false).
   */
  acceptDamagedJpeg?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface InferResult {
  out: string;
  images: number;
  /** Images predicted by this call (the rest came from a partial output). */
  predicted: number;
  size: number;
  tta: boolean;
  models: { path: string; weight: number; kind: string; backbone: string | null; fold: unknown; epoch: unknown }[];
  /** Whether classifier probabilities were stored (every model has a classification head). */
  labels: boolean;
  /** Seconds of the prediction loop (models already loaded). */
  seconds: number;
  imagesPerSecond: number;
}

const IMAGE_EXTENSIONS = new Set(['.dcm', '.png', '.jpg', '.jpeg']);

/** The images of a folder (recursively): DICOM, PNG or JPEG files, id = file name without extension, sorted by id. */
export async function listImages(dir: string): Promise<InferImage[]> {
  const out: InferImage[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) await walk(p);
      else if (IMAGE_EXTENSIONS.has(extname(entry.name).toLowerCase())) out.push({ id: basename(entry.name, extname(entry.name)), path: p });
    }
  };
  await walk(dir);
  out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (let i = 1; i < out.length; i++) {
    if (out[i]!.id === out[i - 1]!.id) throw new Error(`${dir}: image id ${out[i]!.id} appears twice (${out[i - 1]!.path} and ${out[i]!.path})`);
  }
  return out;
}

/**
 * Predicts every image with every model and writes the weighted mean map per image to `out`.
 */
export async function inferMaps(models: readonly InferModel[], images: readonly InferImage[], out: string, options: InferOptions = {}): Promise<InferResult> {
  if (!Array.isArray(models) || models.length === 0) throw invalidParameterError('models', 'at least one model', models);
  if (!Array.isArray(images) || images.length === 0) throw invalidParameterError('images', 'at least one image', images);
  const raw = models.map((m, i) => {
    const w = m.weight ?? 1;
    assertNumber(`models[${i}].weight`, w, 0);
    return w;
  });
  const sum = raw.reduce((a, b) => a + b, 0);
  if (!(sum > 0)) throw invalidParameterError('weights', 'at least one positive weight', raw.join(', '));
  const weights = raw.map((w) => w / sum);
  const tta = options.tta ?? false;
  const batchSize = options.batchSize ?? 4;
  assertInteger('batchSize', batchSize, 1, 4096);
  let started = performance.now();
  const loaded: { model: Model; kind: string; metadata: Record<string, unknown> }[] = [];
  try {
    for (const m of models) loaded.push(await Model.loadCheckpoint(m.path, { device: options.device ?? 'cpu' }));
    const metaSize = loaded[0]!.metadata.imgSize;
    const size = options.size ?? (typeof metaSize === 'number' ? metaSize : undefined);
    if (size === undefined) throw new Error(`${models[0]!.path} does not record its training image size: pass the input size (--size)`);
    assertInteger('size', size, 1, 16384);
    for (const [i, l] of loaded.entries()) {
      const d = l.model.encoderInfo.requiredDivisor;
      if (size % d !== 0) throw new RangeError(`Expected an input size that is a multiple of ${d} for ${models[i]!.path} but received ${size}`);
    }
    const labels = loaded.every((l) => l.model.spec.classificationHead);
    const writer = await MapWriter.create(out, {
      ids: images.map((im) => im.id),
      height: size,
      width: size,
      dtype: options.dtype ?? 'uint8',
      overwrite: options.overwrite,
      producer: {
        command: 'infer',
        size,
        tta,
        models: models.map((m, i) => ({ path: m.path, weight: weights[i], backbone: loaded[i]!.model.spec.backbone, fold: loaded[i]!.metadata.fold ?? null, epoch: loaded[i]!.metadata.epoch ?? null })),
      },
    });
    const pixels = size * size;
    let predicted = 0;
    started = performance.now(); // throughput of the prediction loop, without loading models
    try {
      const pending = writer.pending();
      const total = images.length;
      let done = total - pending.length;
      for (let start = 0; start < pending.length; start += batchSize) {
        const indices = pending.slice(start, start + batchSize);
        const n = indices.length;
        const paths = indices.map((i) => images[i]!.path);
        // Inference input: the training normalisation (ImageNet statistics), no augmentation,
        // decoded natively once per channel count the models take.
        const inputs = new Map<number, Tensor>();
        const acc = new Float32Array(n * pixels);
        const labelAcc = new Float64Array(n);
        try {
          for (let k = 0; k < loaded.length; k++) {
            const model = loaded[k]!.model;
            const channels = model.spec.inChannels as 1 | 3;
            let input = inputs.get(channels);
            if (!input) {
              input = await preprocessImages(paths, imagenetPreprocess(size, channels), { acceptDamagedJpeg: options.acceptDamagedJpeg === true });
              if (model.device !== 'cpu') {
                const moved = await input.to(model.device);
                input.dispose();
                input = moved;
              }
              inputs.set(channels, input);
            }
            const out = await model.predict(input, { tta });
            const planes = out.mask.shape[1] ?? 1;
            const mask = await out.mask.data('float32');
            out.mask.dispose();
            const w = weights[k]!;
            // Channel 0 of each image (the pneumothorax mask).
            for (let b = 0; b < n; b++) {
              const from = b * planes * pixels;
              for (let p = 0; p < pixels; p++) acc[b * pixels + p] += w * mask[from + p]!;
            }
            if (out.label) {
              const l = await out.label.data('float32');
              out.label.dispose();
              for (let b = 0; b < n; b++) labelAcc[b] += w * l[b]!;
            }
          }
        } finally {
          for (const t of inputs.values()) t.dispose();
        }
        for (let b = 0; b < n; b++) {
          await writer.write(indices[b]!, acc.subarray(b * pixels, (b + 1) * pixels), labels ? labelAcc[b]! : null);
        }
        predicted += n;
        done += n;
        options.onProgress?.(done, total);
      }
    } catch (err) {
      // Maps completed before the failure stay recorded (a rerun resumes after them); the
      // failure itself (e.g. a full disk, naming the file) is what the caller sees.
      await writer.close().catch(() => undefined);
      throw err;
    }
    await writer.close();
    const seconds = (performance.now() - started) / 1000;
    return {
      out,
      images: images.length,
      predicted,
      size,
      tta,
      models: models.map((m, i) => ({
        path: m.path,
        weight: weights[i]!,
        kind: loaded[i]!.kind,
        backbone: loaded[i]!.model.spec.backbone,
        fold: loaded[i]!.metadata.fold ?? null,
        epoch: loaded[i]!.metadata.epoch ?? null,
      })),
      labels,
      seconds,
      imagesPerSecond: seconds > 0 ? predicted / seconds : 0,
    };
  } finally {
    for (const l of loaded) l.model.dispose();
  }
}
