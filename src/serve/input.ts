/**
 * One request's image, from what a caller sends (DICOM, PNG or JPEG bytes, or raw 8-bit pixels)
 * to what the native batch decoder takes. Sizes are checked from headers before anything is
 * decoded, so an absurd Rows/Columns or a PNG bomb is refused without allocating its pixels.
 */
import sharp from 'sharp';
import type { Metadata } from 'sharp';
import { hasNativeJpeg } from '../data/batch.js';
import type { ImageSource } from '../data/batch.js';
import { DicomError, pixelSource, readHeader } from '../data/dicom.js';
import { sniffImageFormat } from '../data/sniff.js';
import { readJpegFrameInfo } from '../data/dicom/jpeg.js';
import { describeValue } from '../core/validate.js';
import { SegmenterError } from './errors.js';

/** Raw 8-bit grayscale pixels, row-major. */
export interface RawImage {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
}

/** What `Segmenter.predict` takes: a DICOM, PNG or JPEG file's bytes, or raw 8-bit gray pixels. */
export type SegmenterInput = Uint8Array | RawImage;

/** The input's format, as sniffed from its bytes. */
export type InputFormat = 'dicom' | 'png' | 'jpeg' | 'raw';

/** A request's image ready for the native batch decoder, with its original size. */
export interface PreparedInput {
  source: ImageSource;
  width: number;
  height: number;
  format: InputFormat;
}

function badInput(message: string, cause?: unknown): SegmenterError {
  return new SegmenterError('BAD_INPUT', message, cause === undefined ? undefined : { cause });
}

function checkPixels(width: number, height: number, maxPixels: number, what: string): void {
  if (!(width >= 1 && height >= 1)) throw badInput(`${what} has no pixels (${width}x${height})`);
  if (width * height > maxPixels) {
    throw new SegmenterError('INPUT_TOO_LARGE', `${what} is ${width}x${height} (${width * height} pixels); the limit is ${maxPixels} pixels`);
  }
}

/** How strictly JPEG data is decoded: libjpeg's warnings (truncated, corrupt data) are errors unless accepted. */
export interface PrepareOptions {
  acceptDamagedJpeg?: boolean;
}

async function decodeWithSharp(bytes: Uint8Array, maxPixels: number, what: string, failOn: 'none' | 'warning' | 'error' = 'error'): Promise<{ data: Uint8Array; width: number; height: number }> {
  let meta: Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw badInput(`${what} cannot be read (${(err as Error).message})`, err);
  }
  checkPixels(meta.width ?? 0, meta.height ?? 0, maxPixels, what);
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn })
      .removeAlpha()
      .toColourspace('b-w')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 1) throw new Error(`decoded to ${info.channels} channels, expected 1`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (err) {
    throw badInput(`${what} is truncated or corrupt (${(err as Error).message})`, err);
  }
}

const jpegFailOn = (options: PrepareOptions): 'none' | 'warning' => (options.acceptDamagedJpeg ? 'none' : 'warning');

async function prepareDicom(bytes: Uint8Array, maxPixels: number, options: PrepareOptions): Promise<PreparedInput> {
  const what = 'the DICOM';
  try {
    // One parse on the common path: a JPEG frame is only located and checked against Rows and
    // Columns (not decoded); native pixel data is decoded only once its length matches them, so
    // the allocation is bounded by the body's size.
    const src = await pixelSource(bytes, '<request>', options);
    checkPixels(src.width, src.height, maxPixels, what);
    if (src.kind === 'raw') return { source: { data: src.pixels, jpeg: false, width: src.width, height: src.height }, width: src.width, height: src.height, format: 'dicom' };
    if (hasNativeJpeg()) return { source: { data: src.frame, jpeg: true }, width: src.width, height: src.height, format: 'dicom' };
    const decoded = await decodeWithSharp(src.frame, maxPixels, 'the DICOM JPEG frame', jpegFailOn(options));
    return { source: { ...decoded, jpeg: false }, width: decoded.width, height: decoded.height, format: 'dicom' };
  } catch (err) {
    if (err instanceof SegmenterError) throw err;
    // A header that asks for more pixels than allowed is named as such, whatever else is wrong.
    const header = await readHeader(bytes).catch(() => undefined);
    if (header !== undefined) checkPixels(Math.max(header.columns, 1), Math.max(header.rows, 1), maxPixels, what);
    if (err instanceof DicomError) throw badInput(`${what} cannot be decoded: ${err.reason}`, err);
    throw badInput(`${what} cannot be decoded: ${(err as Error).message}`, err);
  }
}

async function prepareJpeg(bytes: Uint8Array, maxPixels: number, options: PrepareOptions): Promise<PreparedInput> {
  let info;
  try {
    info = readJpegFrameInfo(bytes);
  } catch (err) {
    throw badInput(`the JPEG cannot be read: ${(err as Error).message}`, err);
  }
  checkPixels(info.width, info.height, maxPixels, 'the JPEG');
  if (hasNativeJpeg() && info.components === 1 && info.precision === 8) {
    return { source: { data: bytes, jpeg: true }, width: info.width, height: info.height, format: 'jpeg' };
  }
  const decoded = await decodeWithSharp(bytes, maxPixels, 'the JPEG', jpegFailOn(options));
  return { source: { ...decoded, jpeg: false }, width: decoded.width, height: decoded.height, format: 'jpeg' };
}

function prepareRaw(input: RawImage, maxPixels: number): PreparedInput {
  const { data, width, height } = input;
  if (!(data instanceof Uint8Array || data instanceof Uint8ClampedArray)) {
    throw badInput(`Expected a Uint8Array of 8-bit gray pixels for input.data but received ${describeValue(data)}`);
  }
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw badInput(`Expected positive integers for input.width and input.height but received ${describeValue(width)} x ${describeValue(height)}`);
  }
  checkPixels(width, height, maxPixels, 'the raw image');
  if (data.length !== width * height) {
    throw badInput(`Expected ${width * height} bytes (${width}x${height}) for input.data but received ${data.length}`);
  }
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return { source: { data: bytes, jpeg: false, width, height }, width, height, format: 'raw' };
}

/**
 * Checks and prepares one input for the batch decoder. JPEG data (a JPEG file, a DICOM's JPEG
 * frame) is decoded strictly unless `options.acceptDamagedJpeg`.
 * @throws SegmenterError BAD_INPUT (with the reason) or INPUT_TOO_LARGE
 */
export async function prepareInput(input: SegmenterInput, maxPixels: number, options: PrepareOptions = {}): Promise<PreparedInput> {
  if (input instanceof Uint8Array) {
    const format = sniffImageFormat(input);
    if (format === 'dicom') return prepareDicom(input, maxPixels, options);
    if (format === 'png') return prepareWithSharp(input, maxPixels, 'png', 'the PNG');
    if (format === 'jpeg') return prepareJpeg(input, maxPixels, options);
    if (input.length === 0) throw badInput('the input is empty');
    throw badInput(`the input is not a DICOM ("DICM" at byte 128), PNG or JPEG file (${input.length} bytes starting ${Buffer.from(input.subarray(0, 8)).toString('hex')})`);
  }
  if (typeof input === 'object' && input !== null && 'data' in input) return prepareRaw(input, maxPixels);
  throw badInput(`Expected a Uint8Array (DICOM, PNG or JPEG bytes) or { data, width, height } for input but received ${describeValue(input)}`);
}

async function prepareWithSharp(bytes: Uint8Array, maxPixels: number, format: InputFormat, what: string): Promise<PreparedInput> {
  const decoded = await decodeWithSharp(bytes, maxPixels, what);
  return { source: { ...decoded, jpeg: false }, width: decoded.width, height: decoded.height, format };
}
