/**
 * One entry point for training and inference to read an image from disk at the training size,
 * whether it is a DICOM (read directly, no prepare step) or an already prepared PNG/JPEG.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { assertInteger, invalidParameterError, is } from '../core/validate.js';
import { decodeDicom } from './dicom.js';
import { hasDicmPrefix } from './sniff.js';

/**
 * Loads an image as `size` x `size` 8-bit grayscale, row-major.
 *
 * DICOM files (recognised by the "DICM" prefix, whatever their extension) go through
 * {@link decodeDicom} (frame 0, MONOCHROME2 convention, JPEG shrink-on-load); anything else is
 * decoded by sharp (PNG, JPEG, ...) and converted to one gray channel. Both are resized
 * bilinearly when not already `size` x `size`.
 *
 * @throws DicomError for a bad DICOM, Error naming the path for other unreadable images
 */
export async function loadImage(path: string, size: number): Promise<Uint8Array> {
  if (!is.string(path) || path === '') throw invalidParameterError('path', 'an image file path', path);
  assertInteger('size', size, 1, 65535);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new Error(`${path}: cannot read the image: ${(err as Error).message}`);
  }
  if (hasDicmPrefix(bytes) || /\.dcm$/i.test(path)) return (await decodeDicom(bytes, path, { size })).pixels;
  try {
    const { data, info } = await sharp(bytes, { failOn: 'warning' })
      .resize(size, size, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: true })
      .removeAlpha()
      .toColourspace('b-w')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 1) throw new Error(`expected 1 channel after conversion to gray, got ${info.channels}`);
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  } catch (err) {
    throw new Error(`${path}: cannot decode the image: ${(err as Error).message}`);
  }
}
