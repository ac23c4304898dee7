/**
 * One request's image, from what a caller sends (DICOM, PNG or JPEG bytes, or raw 8-bit pixels)
 * to what the native batch decoder takes: the image entry point every reader shares
 * (`data/image-input.ts`, so a served image is decoded as training and `infer` decode it), with
 * its refusals as SegmenterErrors. Sizes are checked from headers before anything is decoded, so
 * an absurd Rows/Columns or a PNG bomb is refused without allocating its pixels.
 */
import { ImageInputError, readImageInput } from '../data/image-input.js';
import type { ImageInput, ImageInputData, InputFormat, RawImage } from '../data/image-input.js';
import { SegmenterError } from './errors.js';

export type { InputFormat, RawImage };

/** What `Segmenter.predict` takes: a DICOM, PNG or JPEG file's bytes, or raw 8-bit gray pixels. */
export type SegmenterInput = ImageInputData;

/** A request's image ready for the native batch decoder, with its original size. */
export type PreparedInput = ImageInput;

/** How strictly JPEG data is decoded: libjpeg's warnings (truncated, corrupt data) are errors unless accepted. */
export interface PrepareOptions {
  acceptDamagedJpeg?: boolean;
}

/**
 * Checks and prepares one input for the batch decoder. JPEG data (a JPEG file, a DICOM's JPEG
 * frame) is decoded strictly unless `options.acceptDamagedJpeg`.
 * @throws SegmenterError BAD_INPUT (with the reason) or INPUT_TOO_LARGE
 */
export async function prepareInput(input: SegmenterInput, maxPixels: number, options: PrepareOptions = {}): Promise<PreparedInput> {
  try {
    return await readImageInput(input, '<request>', { maxPixels, acceptDamagedJpeg: options.acceptDamagedJpeg === true });
  } catch (err) {
    if (!(err instanceof ImageInputError)) throw err;
    throw new SegmenterError(err.tooLarge ? 'INPUT_TOO_LARGE' : 'BAD_INPUT', err.reason, { cause: err });
  }
}
