/**
 * Image batches for training and inference: files (SIIM DICOMs, JPEG, PNG) -> one
 * [B, 1, size, size] tensor, uint8 or normalised float32, decoded natively in parallel.
 *
 * SIIM-like DICOMs (JPEG Baseline, MONOCHROME2) go to libjpeg-turbo with DCT-domain scaling: a
 * 1024 image wanted at 512 is decoded at half scale directly instead of decoded in full and then
 * shrunk. Other encodings are decoded by the TypeScript reader and only resized natively.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { Tensor } from '../core/tensor.js';
import { ensureRuntime } from '../core/runtime.js';
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';
import { DicomError, pixelSource } from './dicom.js';
import { sniffImageFormat } from './sniff.js';

/** ImageNet statistics of the gray channel, as the seeds normalise (mean 0.485, std 0.229). */
export const IMAGENET_GRAY = { mean: 0.485, std: 0.229 } as const;

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

/** One prepared batch member: what the native decoder takes. */
export type ImageSource = { data: Uint8Array; jpeg: true } | { data: Uint8Array; jpeg: false; width: number; height: number };

/** True when the addon was built with libjpeg-turbo (native JPEG decoding). */
export function hasNativeJpeg(): boolean {
  return ensureRuntime().hasTurboJpeg;
}

/** True when the addon was built with libpng (gray PNGs decoded natively, never in JavaScript). */
export function hasNativePng(): boolean {
  return ensureRuntime().hasLibPng === true;
}

/** The native flag set of the options: 1 accept damaged JPEG, 2 threshold masks. */
function nativeFlags(options: ImageBatchOptions): number {
  return (options.acceptDamagedJpeg === true ? 1 : 0) | (options.threshold === true ? 2 : 0);
}

/**
 * Turns a file's bytes into a batch member: the JPEG stream itself where the native decoder can
 * take it, else decoded 8-bit gray pixels.
 * @throws DicomError (or Error for other formats) naming `file`
 */
export async function imageSource(bytes: Uint8Array, file: string, options: { acceptDamagedJpeg?: boolean } = {}): Promise<ImageSource> {
  const nativeJpeg = hasNativeJpeg();
  const failOn = options.acceptDamagedJpeg ? 'none' : 'warning';
  const format = sniffImageFormat(bytes);
  if (format === 'dicom') {
    const src = await pixelSource(bytes, file, options);
    if (src.kind === 'jpeg' && nativeJpeg) return { data: src.frame, jpeg: true };
    if (src.kind === 'jpeg') {
      let decoded: Buffer;
      try {
        decoded = await sharp(src.frame, { failOn }).toColourspace('b-w').raw().toBuffer();
      } catch (err) {
        throw new DicomError(file, `damaged JPEG data: ${(err as Error).message.trim()} (a truncated or corrupt image; the acceptDamagedJpeg option decodes it anyway)`);
      }
      return { data: new Uint8Array(decoded.buffer, decoded.byteOffset, decoded.byteLength), jpeg: false, width: src.width, height: src.height };
    }
    return { data: src.pixels, jpeg: false, width: src.width, height: src.height };
  }
  if (format === 'jpeg' && nativeJpeg) return { data: bytes, jpeg: true };
  try {
    const { data, info } = await sharp(bytes, { failOn }).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 1) throw new Error(`decoded to ${info.channels} channels, expected 1`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), jpeg: false, width: info.width, height: info.height };
  } catch (err) {
    throw new Error(`${file}: not a readable DICOM, PNG or JPEG image (${(err as Error).message})`, { cause: err });
  }
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

function normalization(option: ImageBatchOptions['normalize']): { mean: number; std: number } | undefined {
  if (option === undefined || option === false) return undefined;
  if (option === true) return IMAGENET_GRAY;
  assertNumber('normalize.mean', option.mean);
  assertNumber('normalize.std', option.std, Number.MIN_VALUE);
  return option;
}

/**
 * Decodes prepared sources into one [B, 1, size, size] tensor off the event loop.
 * `names` label the sources in errors (file paths).
 */
export async function decodeBatch(sources: readonly ImageSource[], options: ImageBatchOptions, names?: readonly string[]): Promise<Tensor> {
  assertInteger('size', options.size, 1, 16384);
  const norm = normalization(options.normalize);
  if (options.threshold === true && norm !== undefined) throw invalidParameterError('threshold', 'false with normalize (thresholding makes uint8 masks)', true);
  try {
    const native = await ensureRuntime().decodeImageBatch(sources as ImageSource[], options.size, norm !== undefined, norm?.mean ?? 0, norm?.std ?? 1, nativeFlags(options));
    return new Tensor(native);
  } catch (err) {
    throw namedDecodeError(err, names);
  }
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
 * the TypeScript reader, `concurrency` files at a time, and is decoded into its row of the same
 * batch; its errors name the file as before.
 * @throws DicomError / Error naming the first file that cannot be read
 */
export async function readImageBatch(paths: readonly string[], options: ImageBatchOptions): Promise<Tensor> {
  if (!Array.isArray(paths) || paths.some((p) => typeof p !== 'string')) throw invalidParameterError('paths', 'an array of file paths', paths);
  assertInteger('size', options?.size, 1, 16384);
  const concurrency = options.concurrency ?? 16;
  assertInteger('concurrency', concurrency, 1, 1024);
  const norm = normalization(options.normalize);
  if (options.threshold === true && norm !== undefined) throw invalidParameterError('threshold', 'false with normalize (thresholding makes uint8 masks)', true);
  const flags = nativeFlags(options);
  const { into } = options;
  if (into !== undefined) checkInto(into, paths.length, options.size, norm !== undefined);
  const runtime = ensureRuntime();
  const damaged = options.acceptDamagedJpeg === true;
  const decodeInto = async (batch: Tensor, rows: number[], files: string[]): Promise<void> => {
    const sources = await mapLimit(files, concurrency, async (path) => imageSource(await readFile(path), path, { acceptDamagedJpeg: damaged }));
    try {
      await runtime.decodeImageBatchInto(batch.native, rows, sources, options.size, norm !== undefined, norm?.mean ?? 0, norm?.std ?? 1, flags);
    } catch (err) {
      throw namedDecodeError(err, files);
    }
  };
  // Without libjpeg-turbo and libpng, or PNGs only and no libpng, the native reader takes nothing.
  if ((!hasNativeJpeg() && !hasNativePng()) || (!hasNativePng() && paths.every((p) => /\.png$/i.test(p)))) {
    if (into === undefined) {
      const sources = await mapLimit(paths, concurrency, async (path) => imageSource(await readFile(path), path, { acceptDamagedJpeg: damaged }));
      return decodeBatch(sources, options, paths);
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
