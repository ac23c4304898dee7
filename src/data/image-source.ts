/**
 * Images as training reads them: `loadImage(path, size)` for one image, whether a DICOM (read
 * directly, no prepare step) or an already prepared PNG/JPEG, and the image entry point every
 * reader shares (`readImageInput`, `readImageFile`: bytes or a file to the native decoder's
 * source, with header-checked size limits and errors naming the input).
 */
import { assertInteger, invalidParameterError, is } from '../core/validate.js';
import { readImageBatch } from './batch.js';

export { ImageInputError, hasNativeJpeg, hasNativePng, readImageFile, readImageInput } from './image-input.js';
export type { ImageInput, ImageInputData, ImageInputOptions, ImageSource, InputFormat, RawImage } from './image-input.js';

/**
 * Loads an image as `size` x `size` 8-bit grayscale, row-major: exactly the uint8 batch row
 * `batch.readImageBatch([path], { size })` gives, i.e. what training reads (DICOMs recognised by
 * "DICM" at byte 128 whatever their extension, JPEG and PNG; decoded to gray and resized
 * bilinearly natively). `threshold` reads a mask as the loader does: 255 where the resized value
 * is at least 128, else 0.
 *
 * @throws ImageInputError / DicomError naming the path when it cannot be read
 */
export async function loadImage(path: string, size: number, options: { threshold?: boolean } = {}): Promise<Uint8Array> {
  if (!is.string(path) || path === '') throw invalidParameterError('path', 'an image file path', path);
  assertInteger('size', size, 1, 16384);
  return (await readImageBatch([path], { size, threshold: options.threshold === true })).takeData('uint8');
}

/** {@link loadImage} of many images in one native batch, in order. */
export async function loadImages(paths: readonly string[], size: number, options: { threshold?: boolean } = {}): Promise<Uint8Array[]> {
  if (paths.length === 0) return [];
  const data = (await readImageBatch(paths, { size, threshold: options.threshold === true })).takeData('uint8');
  const pixels = size * size;
  return paths.map((_, i) => data.subarray(i * pixels, (i + 1) * pixels));
}
