/**
 * Image batches for training and inference: files (SIIM DICOMs, JPEG, PNG) -> one
 * [B, 1, size, size] tensor, uint8 or normalised float32, decoded natively in parallel.
 *
 * SIIM-like DICOMs (JPEG Baseline, MONOCHROME2) go to libjpeg-turbo with DCT-domain scaling: a
 * 1024 image wanted at 512 is decoded at half scale directly instead of decoded in full and then
 * shrunk. Every image the native file reader does not take goes through the one image entry
 * point (`image-input.ts`, `readImageInput`), as the Segmenter's inputs do, and is only resized
 * natively.
 */
import { Tensor } from '../core/tensor.js';
import { ensureRuntime } from '../core/runtime.js';
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';
import { DicomError } from './dicom.js';
import { hasNativeJpeg, hasNativePng, readImageFile, readImageInput } from './image-input.js';
import type { ImageSource } from './image-input.js';

export { hasNativeJpeg, hasNativePng } from './image-input.js';
export type { ImageSource } from './image-input.js';

/** ImageNet statistics of the gray channel, as the seeds normalise (mean 0.485, std 0.229). */
export const IMAGENET_GRAY = { mean: 0.485, std: 0.229 } as const;

/** ImageNet's per-channel statistics (RGB), the training Normalize's defaults. */
const IMAGENET_RGB = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] } as const;

/**
 * How a model's input batch is made from an image: decoded to 8-bit gray, resized to `size` x
 * `size` (bilinear), replicated to `channels` channels and normalised per channel,
 * (x / 255 - mean[c]) / std[c]: a float32 [B, channels, size, size] batch, made natively in one
 * pass by {@link preprocessImages}.
 */
export interface Preprocess {
  /** Output size (square), e.g. 512. */
  size: number;
  /** Output channels: 1, or the gray image replicated to the 3 an ImageNet encoder takes. */
  channels: 1 | 3;
  /** Per output channel (one value: the same for every channel). */
  mean: readonly number[];
  /** Per output channel (one value: the same for every channel), each > 0. */
  std: readonly number[];
  /**
   * Round the resized image to 8 bits before normalising, as training does (its batches are read
   * as uint8, then normalised by the augmentation Normalize, whose arithmetic this reproduces).
   * Default true (what inference and the Segmenter use). false: the resized values unrounded, in
   * decodeBatch's float arithmetic (readImageBatch's `normalize`).
   */
  quantize?: boolean;
}

/**
 * The training normalisation (the augmentation presets' Normalize: ImageNet statistics, per channel
 * for 3 channels, the gray channel's for 1) at `size`: what validation and inference feed a model.
 */
export function imagenetPreprocess(size: number, channels: 1 | 3): Preprocess {
  return channels === 3
    ? { size, channels, mean: IMAGENET_RGB.mean, std: IMAGENET_RGB.std }
    : { size, channels, mean: [IMAGENET_GRAY.mean], std: [IMAGENET_GRAY.std] };
}

/** What the native batch path takes for a normalised batch. */
interface Normalization {
  /** A number: the one-channel path; an array: per output channel (1 or 3 values). */
  mean: number | number[];
  std: number | number[];
  channels: number;
  quantize: boolean;
}

function checkPreprocess(spec: Preprocess): Normalization {
  if (typeof spec !== 'object' || spec === null) throw invalidParameterError('preprocess', '{ size, channels, mean, std }', spec);
  assertInteger('preprocess.size', spec.size, 1, 16384);
  if (spec.channels !== 1 && spec.channels !== 3) throw invalidParameterError('preprocess.channels', '1 or 3', spec.channels);
  const perChannel = (name: 'mean' | 'std'): number[] => {
    const values = spec[name];
    if (!Array.isArray(values) || (values.length !== 1 && values.length !== spec.channels)) {
      throw invalidParameterError(`preprocess.${name}`, `an array of 1 or ${spec.channels} numbers`, values);
    }
    values.forEach((v, i) => (name === 'std' ? assertNumber(`preprocess.std[${i}]`, v, Number.MIN_VALUE) : assertNumber(`preprocess.mean[${i}]`, v)));
    return Array.from({ length: spec.channels }, (_, c) => values[values.length === 1 ? 0 : c] as number);
  };
  if (spec.quantize !== undefined && typeof spec.quantize !== 'boolean') throw invalidParameterError('preprocess.quantize', 'a boolean', spec.quantize);
  return { mean: perChannel('mean'), std: perChannel('std'), channels: spec.channels, quantize: spec.quantize ?? true };
}

export interface ImageBatchOptions {
  /** Output size (square), e.g. 512. */
  size: number;
  /** true for ImageNet gray statistics, or explicit { mean, std }; omitted: uint8 output. */
  normalize?: boolean | { mean: number; std: number };
  /** Files read concurrently (default 16). */
  concurrency?: number;
  /**
   * readImageBatch only: a batch to read into instead of a new tensor, [paths.length, 1, size,
   * size], float32 when normalising, else uint8 (e.g. a loader's reused buffer). It is returned.
   */
  into?: Tensor;
  /**
   * Decode damaged JPEG data (a truncated stream, corrupt entropy-coded data: what libjpeg-turbo
   * only warns about), with what cannot be decoded left grey, instead of rejecting the file.
   * Default false: such a file is an error naming it ("damaged JPEG data: Premature end of JPEG
   * file"), as `dicom.read`, `prepare` and dcmtk reject it.
   */
  acceptDamagedJpeg?: boolean;
  /**
   * Masks: every pixel becomes 255 where its (resized, rounded) value is at least 128, else 0, so
   * a 0/255 mask read at another size stays binary. Natively, uint8 output only.
   */
  threshold?: boolean;
}

/** The native flag set of the options: 1 accept damaged JPEG, 2 threshold masks, 4 quantize before normalising. */
function nativeFlags(options: ImageBatchOptions, norm: Normalization | undefined): number {
  return (options.acceptDamagedJpeg === true ? 1 : 0) | (options.threshold === true ? 2 : 0) | (norm?.quantize === true ? 4 : 0);
}

/**
 * Turns a file's bytes into a batch member (the image entry point, `readImageInput`): the JPEG
 * stream itself where the native decoder can take it, else decoded 8-bit gray pixels.
 * @throws ImageInputError naming `file`
 */
export async function imageSource(bytes: Uint8Array, file: string, options: { acceptDamagedJpeg?: boolean } = {}): Promise<ImageSource> {
  return (await readImageInput(bytes, file, { acceptDamagedJpeg: options.acceptDamagedJpeg === true })).source;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(workers);
  return out;
}

function normalization(option: ImageBatchOptions['normalize']): Normalization | undefined {
  if (option === undefined || option === false) return undefined;
  if (option === true) return { ...IMAGENET_GRAY, channels: 1, quantize: false };
  assertNumber('normalize.mean', option.mean);
  assertNumber('normalize.std', option.std, Number.MIN_VALUE);
  return { mean: option.mean, std: option.std, channels: 1, quantize: false };
}

/**
 * Decodes prepared sources into one [B, 1, size, size] tensor off the event loop.
 * `names` label the sources in errors (file paths).
 */
export async function decodeBatch(sources: readonly ImageSource[], options: ImageBatchOptions, names?: readonly string[]): Promise<Tensor> {
  assertInteger('size', options.size, 1, 16384);
  return decodeSources(sources, options, normalization(options.normalize), names);
}

async function decodeSources(sources: readonly ImageSource[], options: ImageBatchOptions, norm: Normalization | undefined, names?: readonly string[]): Promise<Tensor> {
  if (options.threshold === true && norm !== undefined) throw invalidParameterError('threshold', 'false with normalize (thresholding makes uint8 masks)', true);
  try {
    const native = await ensureRuntime().decodeImageBatch(sources as ImageSource[], options.size, norm !== undefined, norm?.mean ?? 0, norm?.std ?? 1, nativeFlags(options, norm));
    return new Tensor(native);
  } catch (err) {
    throw namedDecodeError(err, names);
  }
}

/**
 * Copies CPU batches to `device` as the image store's reader stages its own: on a CUDA device
 * through pinned host memory and an asynchronous copy on a side stream, waited for on a libuv
 * pool thread, so the copy overlaps the training step rather than queueing behind it on the
 * compute thread (as `Tensor.to` would). On "cpu" the tensors come back as they are (new handles
 * on the same storage). The inputs stay owned by the caller.
 * @throws Error naming a tensor that is not on the CPU, or a device this build cannot use
 */
export async function stageToDevice(tensors: readonly Tensor[], device: string): Promise<Tensor[]> {
  if (!Array.isArray(tensors) || tensors.some((t) => !(t instanceof Tensor))) throw invalidParameterError('tensors', 'an array of Tensors', tensors);
  if (typeof device !== 'string' || device === '') throw invalidParameterError('device', 'a device name ("cpu", "cuda", "cuda:1")', device);
  const staged = await ensureRuntime().stageTensors(
    tensors.map((t) => t.native),
    device,
  );
  return staged.map((t) => new Tensor(t));
}

/** Options of {@link preprocessImages}. */
export interface PreprocessOptions {
  /** Files read concurrently (file paths only; default 16). */
  concurrency?: number;
  /** As ImageBatchOptions.acceptDamagedJpeg: decode damaged JPEG data instead of rejecting it. */
  acceptDamagedJpeg?: boolean;
  /** Prepared sources only: their names in errors (a DicomError naming names[K] for source K). */
  names?: readonly string[];
}

/**
 * The model input of images, natively in one call: files (DICOM, JPEG, PNG; as readImageBatch
 * reads them) or prepared sources (as decodeBatch takes them) decoded, resized, normalised per
 * channel and expanded to `spec.channels`: a float32 [B, channels, size, size] batch, equal to a
 * uint8 batch normalised by the training Normalize (quantize, the default) or to decodeBatch's
 * normalised gray batch replicated to the channels (quantize false).
 * @throws ImageInputError naming the first image that cannot be read, DicomError naming the source the native decoder fails on
 */
export async function preprocessImages(input: readonly string[] | readonly ImageSource[], spec: Preprocess, options: PreprocessOptions = {}): Promise<Tensor> {
  const norm = checkPreprocess(spec);
  if (!Array.isArray(input)) throw invalidParameterError('input', 'an array of file paths or image sources', input);
  const batchOptions: ImageBatchOptions = { size: spec.size, acceptDamagedJpeg: options.acceptDamagedJpeg === true, ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}) };
  if (input.every((item) => typeof item === 'string')) return readBatch(input as readonly string[], batchOptions, norm);
  return decodeSources(input as readonly ImageSource[], batchOptions, norm, options.names);
}

/** The native decoder's "image K of the batch: reason" as a DicomError naming the K-th name. */
function namedDecodeError(err: unknown, names: readonly string[] | undefined): unknown {
  const m = /^image (\d+) of the batch: (.*)$/s.exec((err as Error).message);
  const name = m ? names?.[Number(m[1])] : undefined;
  return m && name !== undefined ? new DicomError(name, m[2]!) : err;
}

/**
 * Reads image files (DICOM, JPEG, PNG) into one [B, 1, size, size] tensor: uint8, or float32
 * normalised with `normalize`, off the event loop.
 *
 * With libjpeg-turbo, JPEG files and SIIM-like JPEG DICOMs (the SIIM encoding: JPEG Baseline,
 * MONOCHROME2, one frame) never enter JavaScript: each is read, located and decoded on a native
 * decode thread; with libpng, so do gray PNGs of 8 bits or fewer (what `prepare` writes). Every
 * other file (colour or 16-bit PNGs, other DICOM encodings, anything malformed) goes through
 * the image entry point (`readImageFile`), `concurrency` files at a time, and is decoded into its row of the same
 * batch; its errors name the file as before.
 * @throws ImageInputError / DicomError naming the first file that cannot be read
 */
export async function readImageBatch(paths: readonly string[], options: ImageBatchOptions): Promise<Tensor> {
  if (!Array.isArray(paths) || paths.some((p) => typeof p !== 'string')) throw invalidParameterError('paths', 'an array of file paths', paths);
  assertInteger('size', options?.size, 1, 16384);
  return readBatch(paths, options, normalization(options.normalize));
}

async function readBatch(paths: readonly string[], options: ImageBatchOptions, norm: Normalization | undefined): Promise<Tensor> {
  const concurrency = options.concurrency ?? 16;
  assertInteger('concurrency', concurrency, 1, 1024);
  if (options.threshold === true && norm !== undefined) throw invalidParameterError('threshold', 'false with normalize (thresholding makes uint8 masks)', true);
  const flags = nativeFlags(options, norm);
  const { into } = options;
  if (into !== undefined) checkInto(into, paths.length, options.size, norm !== undefined);
  const runtime = ensureRuntime();
  const damaged = options.acceptDamagedJpeg === true;
  const decodeInto = async (batch: Tensor, rows: number[], files: string[]): Promise<void> => {
    const sources = await mapLimit(files, concurrency, async (path) => (await readImageFile(path, { acceptDamagedJpeg: damaged })).source);
    try {
      await runtime.decodeImageBatchInto(batch.native, rows, sources, options.size, norm !== undefined, norm?.mean ?? 0, norm?.std ?? 1, flags);
    } catch (err) {
      throw namedDecodeError(err, files);
    }
  };
  // Without libjpeg-turbo and libpng, or PNGs only and no libpng, the native reader takes nothing.
  if ((!hasNativeJpeg() && !hasNativePng()) || (!hasNativePng() && paths.every((p) => /\.png$/i.test(p)))) {
    if (into === undefined) {
      const sources = await mapLimit(paths, concurrency, async (path) => (await readImageFile(path, { acceptDamagedJpeg: damaged })).source);
      return decodeSources(sources, options, norm, paths);
    }
    await decodeInto(into, paths.map((_, i) => i), [...paths]);
    return into;
  }
  const { images, fallback } = await runtime.readImageFiles([...paths], options.size, norm !== undefined, norm?.mean ?? 0, norm?.std ?? 1, flags, into?.native);
  const batch = into ?? new Tensor(images!);
  if (fallback.length === 0) return batch;
  try {
    await decodeInto(
      batch,
      fallback,
      fallback.map((i) => paths[i]!),
    );
    return batch;
  } catch (err) {
    if (into === undefined) batch.dispose();
    throw err;
  }
}

function checkInto(into: unknown, count: number, size: number, normalized: boolean): void {
  const dtype = normalized ? 'float32' : 'uint8';
  const expected = `a ${dtype} Tensor of shape [${count}, 1, ${size}, ${size}]`;
  if (!(into instanceof Tensor)) throw invalidParameterError('into', expected, into);
  if (into.disposed) throw new TypeError(`Expected ${expected} for into but received a disposed Tensor`);
  const shape = into.shape;
  if (into.dtype !== dtype || shape.length !== 4 || shape[0] !== count || shape[1] !== 1 || shape[2] !== size || shape[3] !== size) {
    throw new TypeError(`Expected ${expected} for into but received a ${into.dtype} Tensor of shape [${shape.join(', ')}]`);
  }
}
