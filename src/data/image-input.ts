/**
 * The one entry point from an image to what the native batch decoder takes. Whatever reads an
 * image (training and validation batches, `infer`, SWA's BatchNorm pass through
 * `batch.readImageBatch` / `preprocessImages` / `decodeBatch`; the `Segmenter`; the augmentation
 * preview) turns it into an {@link ImageSource} here, so each sees the same pixels:
 *
 * - DICOM (recognised by "DICM" at byte 128, whatever the name): a JPEG Baseline frame is only
 *   located and checked against Rows and Columns, and kept for libjpeg-turbo; other encodings are
 *   decoded by the TypeScript DICOM reader to 8-bit gray (MONOCHROME2 convention).
 * - JPEG: an 8-bit gray or colour stream is kept for libjpeg-turbo (which decodes it to gray, as
 *   the native file reader does); 12-bit or CMYK streams, and builds without libjpeg-turbo, are
 *   decoded to gray by sharp.
 * - PNG: decoded to gray by sharp (the native file reader decodes gray PNGs of files itself, to
 *   the same pixels).
 * - Raw 8-bit gray pixels: checked and passed on.
 *
 * With `maxPixels`, sizes are judged from headers before anything is decoded, so an absurd
 * Rows/Columns or a PNG bomb is refused without allocating its pixels. JPEG data (a JPEG file, a
 * DICOM's JPEG frame) is decoded strictly (libjpeg's warnings about truncated or corrupt data are
 * errors) unless `acceptDamagedJpeg`. Every refusal is an {@link ImageInputError} naming the input.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import type { Metadata } from 'sharp';
import { ensureRuntime } from '../core/runtime.js';
import { describeValue } from '../core/validate.js';
import { DicomError, pixelSource, readHeader } from './dicom.js';
import { readJpegFrameInfo } from './dicom/jpeg.js';
import { sniffImageFormat } from './sniff.js';

/** One prepared batch member: what the native decoder takes. */
export type ImageSource = { data: Uint8Array; jpeg: true } | { data: Uint8Array; jpeg: false; width: number; height: number };

/** Raw 8-bit grayscale pixels, row-major. */
export interface RawImage {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
}

/** What {@link readImageInput} takes: a DICOM, PNG or JPEG file's bytes, or raw 8-bit gray pixels. */
export type ImageInputData = Uint8Array | RawImage;

/** The input's format: sniffed from its bytes, or `raw` for pixels. */
export type InputFormat = 'dicom' | 'png' | 'jpeg' | 'raw';

/** An image ready for the native batch decoder, with its original size and format. */
export interface ImageInput {
  source: ImageSource;
  width: number;
  height: number;
  format: InputFormat;
}

/** Options of {@link readImageInput} and {@link readImageFile}. */
export interface ImageInputOptions {
  /**
   * Largest image accepted, in pixels, judged from the header before decoding (a larger one is an
   * {@link ImageInputError} with `tooLarge`). Default: no limit beyond sharp's own.
   */
  maxPixels?: number;
  /**
   * Decode damaged JPEG data (a truncated stream, corrupt entropy-coded data: what libjpeg only
   * warns about), with what cannot be decoded left grey, instead of refusing it (default false).
   */
  acceptDamagedJpeg?: boolean;
}

/**
 * An image that cannot be read: names the input (a file path, or what the caller called it) and
 * the reason, a sentence fragment ("the PNG is truncated or corrupt (...)"). `tooLarge`: refused
 * for its size (over `maxPixels`), not for its content.
 */
export class ImageInputError extends Error {
  constructor(
    readonly input: string,
    readonly reason: string,
    readonly tooLarge = false,
    options?: { cause?: unknown },
  ) {
    super(`${input}: ${reason}`, options);
    this.name = 'ImageInputError';
  }
}

/** True when the addon was built with libjpeg-turbo (native JPEG decoding). */
export function hasNativeJpeg(): boolean {
  return ensureRuntime().hasTurboJpeg;
}

/** True when the addon was built with libpng (gray PNGs decoded natively, never in JavaScript). */
export function hasNativePng(): boolean {
  return ensureRuntime().hasLibPng === true;
}

/** What {@link readImageInput} works with: the input's name and the options, checked. */
interface Context {
  name: string;
  maxPixels: number | undefined;
  acceptDamagedJpeg: boolean;
}

function fail(ctx: Context, reason: string, cause?: unknown): ImageInputError {
  return new ImageInputError(ctx.name, reason, false, cause === undefined ? undefined : { cause });
}

function checkPixels(ctx: Context, width: number, height: number, what: string): void {
  if (!(width >= 1 && height >= 1)) throw fail(ctx, `${what} has no pixels (${width}x${height})`);
  if (ctx.maxPixels !== undefined && width * height > ctx.maxPixels) {
    throw new ImageInputError(ctx.name, `${what} is ${width}x${height} (${width * height} pixels); the limit is ${ctx.maxPixels} pixels`, true);
  }
}

/** sharp's strictness: JPEG data follows acceptDamagedJpeg; PNGs are refused on errors only. */
type FailOn = 'none' | 'warning' | 'error';
const jpegFailOn = (ctx: Context): FailOn => (ctx.acceptDamagedJpeg ? 'none' : 'warning');

/** Any image sharp reads, as 8-bit gray (alpha dropped), its size checked from the header first. */
async function decodeWithSharp(ctx: Context, bytes: Uint8Array, what: string, failOn: FailOn): Promise<{ source: ImageSource; width: number; height: number }> {
  if (ctx.maxPixels !== undefined) {
    let meta: Metadata;
    try {
      meta = await sharp(bytes, { limitInputPixels: false }).metadata();
    } catch (err) {
      throw fail(ctx, `${what} cannot be read (${(err as Error).message})`, err);
    }
    checkPixels(ctx, meta.width ?? 0, meta.height ?? 0, what);
  }
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: ctx.maxPixels ?? true, failOn })
      .removeAlpha()
      .toColourspace('b-w')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 1) throw new Error(`decoded to ${info.channels} channels, expected 1`);
    const pixels = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { source: { data: pixels, jpeg: false, width: info.width, height: info.height }, width: info.width, height: info.height };
  } catch (err) {
    const message = (err as Error).message.trim();
    const detail = failOn === 'warning' ? `damaged JPEG data: ${message}; the acceptDamagedJpeg option decodes it anyway` : message;
    throw fail(ctx, `${what} is truncated or corrupt (${detail})`, err);
  }
}

async function readDicomInput(ctx: Context, bytes: Uint8Array): Promise<ImageInput> {
  const what = 'the DICOM';
  try {
    // One parse on the common path: a JPEG frame is only located and checked against Rows and
    // Columns (not decoded); native pixel data is decoded only once its length matches them, so
    // the allocation is bounded by the file's size.
    const src = await pixelSource(bytes, ctx.name, { acceptDamagedJpeg: ctx.acceptDamagedJpeg });
    checkPixels(ctx, src.width, src.height, what);
    if (src.kind === 'raw') return { source: { data: src.pixels, jpeg: false, width: src.width, height: src.height }, width: src.width, height: src.height, format: 'dicom' };
    if (hasNativeJpeg()) return { source: { data: src.frame, jpeg: true }, width: src.width, height: src.height, format: 'dicom' };
    return { ...(await decodeWithSharp(ctx, src.frame, 'the DICOM JPEG frame', jpegFailOn(ctx))), format: 'dicom' };
  } catch (err) {
    if (err instanceof ImageInputError) throw err;
    // A header that asks for more pixels than allowed is named as such, whatever else is wrong.
    if (ctx.maxPixels !== undefined) {
      const header = await readHeader(bytes).catch(() => undefined);
      if (header !== undefined) checkPixels(ctx, Math.max(header.columns, 1), Math.max(header.rows, 1), what);
    }
    throw fail(ctx, `${what} cannot be decoded: ${err instanceof DicomError ? err.reason : (err as Error).message}`, err);
  }
}

async function readJpegInput(ctx: Context, bytes: Uint8Array): Promise<ImageInput> {
  let info;
  try {
    info = readJpegFrameInfo(bytes);
  } catch (err) {
    throw fail(ctx, `the JPEG cannot be read: ${(err as Error).message}`, err);
  }
  checkPixels(ctx, info.width, info.height, 'the JPEG');
  // libjpeg-turbo decodes 8-bit gray and colour (YCbCr, RGB) streams to gray, as the native file
  // reader does with JPEG files; sharp takes the rest.
  if (hasNativeJpeg() && info.precision === 8 && (info.components === 1 || info.components === 3)) {
    return { source: { data: bytes, jpeg: true }, width: info.width, height: info.height, format: 'jpeg' };
  }
  return { ...(await decodeWithSharp(ctx, bytes, 'the JPEG', jpegFailOn(ctx))), format: 'jpeg' };
}

function readRawInput(ctx: Context, input: RawImage): ImageInput {
  const { data, width, height } = input;
  if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) {
    throw fail(ctx, `Expected a Uint8Array of 8-bit gray pixels for input.data but received ${describeValue(data)}`);
  }
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw fail(ctx, `Expected positive integers for input.width and input.height but received ${describeValue(width)} x ${describeValue(height)}`);
  }
  checkPixels(ctx, width, height, 'the raw image');
  if (data.length !== width * height) {
    throw fail(ctx, `Expected ${width * height} bytes (${width}x${height}) for input.data but received ${data.length}`);
  }
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return { source: { data: bytes, jpeg: false, width, height }, width, height, format: 'raw' };
}

/**
 * Turns an image (a DICOM, PNG or JPEG file's bytes, whatever its name, or raw 8-bit gray pixels)
 * into what the native batch decoder takes, with its size and format. `name` names it in errors
 * (a file path, or e.g. "<request>").
 * @throws ImageInputError naming `name` and the reason (`tooLarge` when over `maxPixels`)
 */
export async function readImageInput(input: ImageInputData, name: string, options: ImageInputOptions = {}): Promise<ImageInput> {
  const ctx: Context = { name, maxPixels: options.maxPixels, acceptDamagedJpeg: options.acceptDamagedJpeg === true };
  if (input instanceof Uint8Array) {
    const format = sniffImageFormat(input);
    if (format === 'dicom') return readDicomInput(ctx, input);
    if (format === 'jpeg') return readJpegInput(ctx, input);
    if (format === 'png') return { ...(await decodeWithSharp(ctx, input, 'the PNG', 'error')), format: 'png' };
    if (input.length === 0) throw fail(ctx, 'the input is empty');
    throw fail(ctx, `the input is not a DICOM ("DICM" at byte 128), PNG or JPEG file (${input.length} bytes starting ${Buffer.from(input.subarray(0, 8)).toString('hex')})`);
  }
  if (typeof input === 'object' && input !== null && 'data' in input) return readRawInput(ctx, input);
  throw fail(ctx, `Expected a Uint8Array (DICOM, PNG or JPEG bytes) or { data, width, height } for input but received ${describeValue(input)}`);
}

/**
 * {@link readImageInput} of a file: its bytes, named by `path` in errors.
 * @throws ImageInputError naming `path` (also when it cannot be read)
 */
export async function readImageFile(path: string, options: ImageInputOptions = {}): Promise<ImageInput> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new ImageInputError(path, `cannot read the file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, false, { cause: err });
  }
  return readImageInput(bytes, path, options);
}
