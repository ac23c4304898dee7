/**
 * Augmentation previews for a person to check: N images, each shown as the original beside its
 * augmented version, with the mask drawn as an outline and a light tint (green on the original,
 * red on the augmented image), written as one PNG grid. `augment-preview` and the training
 * command's `--preview` both use `renderAugmentPreview`.
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { makeDir, writeFileAtomic } from '../core/atomic-write.js';
import { Random, deriveSeed } from '../core/random.js';
import type { Seed } from '../core/random.js';
import { Tensor } from '../core/tensor.js';
import { assertInteger, invalidParameterError, is } from '../core/validate.js';
import { loadImage, loadImages } from '../data/image-source.js';
import { readTrainLabels } from '../data/labels.js';
import { decodeUnion } from '../data/rle.js';
import type { AugmentPipeline } from './augment/pipeline.js';
import type { ImageAugmentation } from './augment/plan.js';

/** One image to preview: `size` x `size` 8-bit gray, and its mask (nonzero inside) if known. */
export interface PreviewSample {
  id: string;
  image: Uint8Array;
  mask?: Uint8Array;
}

export interface RenderPreviewOptions {
  pipeline: AugmentPipeline;
  /** Width and height of every sample. */
  size: number;
  seed: Seed;
  /** Output PNG path (folders are created). */
  out: string;
  /** Image pairs per row (default: about square). */
  columns?: number;
  /** Torch device for the augmentation (default cpu). */
  device?: string;
  maskInterpolation?: 'nearest' | 'bilinear';
}

export interface AugmentPreviewReport {
  out: string;
  width: number;
  height: number;
  columns: number;
  ids: string[];
  /** What was drawn for each image, in grid order. */
  plan: ImageAugmentation[];
}

/** Pixels between cells. */
const GAP = 4;
const ORIGINAL_COLOUR: [number, number, number] = [40, 220, 60];
const AUGMENTED_COLOUR: [number, number, number] = [240, 50, 40];

/** The grid's geometry for n samples of `size` px: columns of (original, augmented) pairs. */
export function previewLayout(n: number, size: number, columns?: number): { columns: number; rows: number; width: number; height: number } {
  const cols = Math.max(1, Math.min(n, columns ?? Math.ceil(Math.sqrt(n / 2))));
  const rows = Math.max(1, Math.ceil(n / cols));
  return { columns: cols, rows, width: cols * (2 * size + GAP) + GAP * (cols - 1), height: rows * size + GAP * (rows - 1) };
}

/** Paints a gray image with its mask (tint inside, outline on the edge) into an RGB canvas. */
function paint(canvas: Uint8Array, canvasWidth: number, x0: number, y0: number, size: number, gray: ArrayLike<number>, mask: ArrayLike<number> | undefined, colour: [number, number, number]): void {
  const thickness = size >= 512 ? 2 : 1;
  const inside = (x: number, y: number): boolean => x >= 0 && y >= 0 && x < size && y < size && (mask?.[y * size + x] ?? 0) > 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const v = gray[y * size + x] as number;
      const o = ((y0 + y) * canvasWidth + x0 + x) * 3;
      let rgb: [number, number, number] = [v, v, v];
      if (mask && inside(x, y)) {
        let edge = false;
        for (let d = 1; d <= thickness && !edge; d++) edge = !inside(x - d, y) || !inside(x + d, y) || !inside(x, y - d) || !inside(x, y + d);
        rgb = edge ? colour : [0.75 * v + 0.25 * colour[0], 0.75 * v + 0.25 * colour[1], 0.75 * v + 0.25 * colour[2]];
      }
      canvas[o] = rgb[0];
      canvas[o + 1] = rgb[1];
      canvas[o + 2] = rgb[2];
    }
  }
}

/**
 * Augments the samples as one batch with `pipeline` and writes the grid PNG: each cell is the
 * original (mask in green) beside the augmented image (augmented mask in red).
 */
export async function renderAugmentPreview(samples: readonly PreviewSample[], options: RenderPreviewOptions): Promise<AugmentPreviewReport> {
  if (!Array.isArray(samples) || samples.length === 0) throw invalidParameterError('samples', 'a non-empty array of samples', samples);
  const { pipeline, size } = options;
  assertInteger('size', size, 1, 8192);
  if (!is.string(options.out) || options.out === '') throw invalidParameterError('out', 'an output PNG path', options.out);
  const n = samples.length;
  const pixels = size * size;
  const images = new Uint8Array(n * pixels);
  const masks = new Uint8Array(n * pixels);
  samples.forEach((s, i) => {
    if (!(s.image instanceof Uint8Array) || s.image.length !== pixels) throw invalidParameterError(`samples[${i}].image`, `a Uint8Array of ${size}x${size}`, s.image);
    if (s.mask !== undefined && (!(s.mask instanceof Uint8Array) || s.mask.length !== pixels)) throw invalidParameterError(`samples[${i}].mask`, `a Uint8Array of ${size}x${size}`, s.mask);
    images.set(s.image, i * pixels);
    if (s.mask) masks.set(s.mask, i * pixels);
  });
  const device = options.device ?? 'cpu';
  const imageTensor = Tensor.from(images, [n, 1, size, size], { device });
  const maskTensor = Tensor.from(masks, [n, 1, size, size], { device });
  const plan = pipeline.sample(new Random(deriveSeed(options.seed, 0)), n, size, size);
  const applyOptions = options.maskInterpolation ? { maskInterpolation: options.maskInterpolation } : {};
  const result = await pipeline.apply(imageTensor, maskTensor, plan, applyOptions);
  imageTensor.dispose();
  maskTensor.dispose();
  const channels = result.images.shape[1] as number;
  const augmented = result.images.takeData('float32');
  const augmentedMasks = result.masks?.takeData('float32');
  // Back to 0-255 from the pipeline's normalisation (channel 0: the gray image).
  const norm = pipeline.normalize;
  const scale = norm ? (norm.std[0] as number) * norm.max_pixel_value : 1;
  const shift = norm ? (norm.mean[0] as number) * norm.max_pixel_value : 0;
  const layout = previewLayout(n, size, options.columns);
  const canvas = new Uint8Array(layout.width * layout.height * 3).fill(255);
  const gray = new Uint8ClampedArray(pixels);
  for (let i = 0; i < n; i++) {
    const col = i % layout.columns;
    const row = Math.floor(i / layout.columns);
    const x0 = col * (2 * size + GAP) + col * GAP;
    const y0 = row * (size + GAP);
    const sample = samples[i] as PreviewSample;
    paint(canvas, layout.width, x0, y0, size, sample.image, sample.mask, ORIGINAL_COLOUR);
    const base = i * channels * pixels;
    for (let k = 0; k < pixels; k++) gray[k] = Math.round((augmented[base + k] as number) * scale + shift);
    const mask = sample.mask && augmentedMasks ? augmentedMasks.subarray(i * pixels, (i + 1) * pixels) : undefined;
    paint(canvas, layout.width, x0 + size, y0, size, gray, mask, AUGMENTED_COLOUR);
  }
  const out = resolve(options.out);
  await makeDir(dirname(out));
  await writeFileAtomic(out, await sharp(canvas, { raw: { width: layout.width, height: layout.height, channels: 3 } }).png().toBuffer());
  return { out, width: layout.width, height: layout.height, columns: layout.columns, ids: samples.map((s) => s.id), plan };
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.dcm']);

async function listImages(dir: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true });
    for (const e of entries) {
      const path = join(d, e.name);
      if (e.isDirectory()) await walk(path);
      else if (IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase())) found.set(basename(e.name, extname(e.name)), path);
    }
  };
  await walk(dir);
  return found;
}

export interface LoadPreviewOptions {
  /** Prepared `train/` PNGs, or a DICOM tree (`dicom-images-train`). */
  images: string;
  /** Prepared `mask/` PNGs with the images' ids. */
  masks?: string;
  /** A train label CSV (RLE at `labelSize`), e.g. for raw DICOMs. */
  labels?: string;
  /** Size the RLE masks refer to (default 1024). */
  labelSize?: number;
  n: number;
  size: number;
  seed: Seed;
}

/**
 * Picks `n` images (seeded), preferring ones with a non-empty mask so that the preview shows
 * mask alignment, and loads them at `size` x `size` exactly as training reads them
 * (`batch.readImageBatch`: native decode and bilinear resize; masks thresholded at half way).
 */
export async function loadPreviewSamples(options: LoadPreviewOptions): Promise<PreviewSample[]> {
  assertInteger('n', options.n, 1, 4096);
  assertInteger('size', options.size, 1, 8192);
  const files = await listImages(options.images).catch((err: Error) => {
    throw new Error(`${options.images}: cannot list images: ${err.message}`);
  });
  if (files.size === 0) throw new Error(`${options.images}: no .png, .jpg or .dcm images found`);
  const maskFiles = options.masks ? await listImages(options.masks) : undefined;
  const labels = options.labels ? await readTrainLabels(options.labels) : undefined;
  const labelSize = options.labelSize ?? 1024;
  const ids = [...files.keys()].sort();
  new Random(deriveSeed(options.seed, 1)).shuffle(ids);
  const loadMask = async (id: string): Promise<Uint8Array | undefined> => {
    if (maskFiles) {
      const path = maskFiles.get(id);
      if (!path) return new Uint8Array(options.size * options.size);
      // As the training loader reads masks: resized bilinearly and thresholded at half way (0/255), here as 0/1.
      return (await loadImage(path, options.size, { threshold: true })).map((v) => (v !== 0 ? 1 : 0));
    }
    if (labels) {
      const rows = labels.get(id);
      if (rows === undefined) return undefined;
      const full = decodeUnion(rows, labelSize, labelSize, id);
      const { data } = await sharp(full, { raw: { width: labelSize, height: labelSize, channels: 1 } })
        .resize(options.size, options.size, { fit: 'fill', kernel: 'nearest' })
        .toColourspace('b-w')
        .raw()
        .toBuffer({ resolveWithObject: true });
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
    return undefined;
  };
  const positives: PreviewSample[] = [];
  const others: PreviewSample[] = [];
  // Scan a bounded number of candidates for positives, then fill with the rest.
  const scanLimit = Math.min(ids.length, Math.max(8 * options.n, 64));
  for (let i = 0; i < scanLimit && positives.length < options.n; i++) {
    const id = ids[i] as string;
    const mask = await loadMask(id);
    const sample: PreviewSample = { id, image: new Uint8Array(0) };
    if (mask) sample.mask = mask;
    if (mask && mask.some((v) => v > 0)) positives.push(sample);
    else if (others.length < options.n) others.push(sample);
  }
  const chosen = [...positives, ...others].slice(0, options.n);
  // The images as training reads them (one native batch: readImageBatch's uint8 rows).
  const images = await loadImages(
    chosen.map((s) => files.get(s.id) as string),
    options.size,
  );
  chosen.forEach((s, i) => (s.image = images[i]!));
  return chosen;
}

export interface AugmentPreviewOptions extends Omit<LoadPreviewOptions, 'seed'>, Omit<RenderPreviewOptions, 'size'> {}

/** Loads `n` images from a dataset folder and writes their augmentation preview grid. */
export async function writeAugmentPreview(options: AugmentPreviewOptions): Promise<AugmentPreviewReport> {
  const samples = await loadPreviewSamples(options);
  return renderAugmentPreview(samples, options);
}

/** Reads a pipeline JSON file (our form or albumentations' `A.to_dict()` output). */
export async function readPipelineFile(path: string): Promise<unknown> {
  const text = await readFile(path, 'utf8').catch((err: Error) => {
    throw new Error(`${path}: cannot read the augmentation config: ${err.message}`);
  });
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new Error(`${path}: not valid JSON: ${(err as Error).message}`);
  }
}
