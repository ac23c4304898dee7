/**
 * One unit of `prepare` work: decode a DICOM at the target size and write its PNG (and, for a
 * training image, its mask PNG). Runs in a worker thread or in-process; files are written under
 * a temporary name and renamed (`core/atomic-write`), so an interrupted run never leaves a
 * half-written PNG, and a full disk is a `FileWriteError` naming the file.
 */
import sharp from 'sharp';
import { writeFileAtomic } from '../../core/atomic-write.js';
import { read } from '../dicom.js';
import { clahe } from '../clahe.js';
import type { ClaheOptions } from '../clahe.js';
import { decodeUnion } from '../rle.js';

/** A training image (with its RLE rows, `[]` when it has no pneumothorax) or a test image. */
export type PrepareTask =
  | { kind: 'train'; id: string; path: string; rles: string[]; imageOut: string; maskOut: string; clahe?: ClaheOptions }
  | { kind: 'test'; id: string; path: string; imageOut: string; clahe?: ClaheOptions };

/** Writes 8-bit grayscale pixels as a 1-channel PNG, atomically (`core/atomic-write`). */
export async function writeGrayPng(pixels: Uint8Array, size: number, path: string): Promise<void> {
  const png = await sharp(pixels, { raw: { width: size, height: size, channels: 1 } })
    .toColourspace('b-w')
    .png({ compressionLevel: 6, adaptiveFiltering: false })
    .toBuffer();
  await writeFileAtomic(path, png);
}

/**
 * The training mask at `size` x `size`: the union of the RLE rows (255 inside) in the image's own
 * pixel grid, resized bilinearly and thresholded at 127 (a pixel is inside when the interpolated
 * value is above 127), which keeps region boundaries where a nearest-neighbour resize would
 * jitter them by up to a source pixel.
 */
export async function maskAt(rles: readonly string[], columns: number, rows: number, size: number, id: string): Promise<Uint8Array> {
  const union = decodeUnion(rles, columns, rows, id);
  let any = false;
  for (let i = 0; i < union.length; i += 1) {
    if (union[i]) {
      union[i] = 255;
      any = true;
    }
  }
  if (!any) return new Uint8Array(size * size);
  if (columns === size && rows === size) return union;
  const resized = await sharp(union, { raw: { width: columns, height: rows, channels: 1 } })
    .resize(size, size, { fit: 'fill', kernel: 'linear' })
    .toColourspace('b-w')
    .raw()
    .toBuffer();
  const mask = new Uint8Array(size * size);
  for (let i = 0; i < mask.length; i += 1) mask[i] = resized[i]! > 127 ? 255 : 0;
  return mask;
}

/** Runs one task: the mask is written before the image, so "image exists" implies "done". */
export async function runTask(task: PrepareTask, size: number): Promise<void> {
  const image = await read(task.path, { size });
  if (task.kind === 'train') await writeGrayPng(await maskAt(task.rles, image.columns, image.rows, size, task.id), size, task.maskOut);
  await writeGrayPng(task.clahe ? clahe(image.pixels, size, size, task.clahe) : image.pixels, size, task.imageOut);
}
