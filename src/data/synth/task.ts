/**
 * One unit of work of `synthesize`: render an image, write it as a SIIM-like DICOM (JPEG
 * Baseline) through a temporary file and a rename, and return its RLE rows. An image whose DICOM
 * already exists is not rendered again (resume): only its masks are recomputed for the labels.
 * Shared by the worker threads and the in-process path.
 */
import { stat } from 'node:fs/promises';
import { makeDir, writeFileAtomic } from '../../core/atomic-write.js';
import { dirname } from 'node:path';
import { writeDicom } from '../dicom-write.js';
import type { SiimTagOverrides } from '../dicom-write.js';
import { encode } from '../rle.js';
import { generateImage, generateMasks } from './image.js';
import type { SynthImageSpec } from './image.js';

/** What a worker is asked to do for one image. */
export interface SynthTask {
  spec: SynthImageSpec;
  /** The DICOM file to write. */
  file: string;
  /** DICOM tags (ids, patient, view, spacing). */
  tags: SiimTagOverrides;
  /** JPEG quality (1-100). */
  quality: number;
}

/** The outcome of one task. */
export interface SynthTaskResult {
  /** One RLE string per pneumothorax region (empty for a negative image). */
  rle: string[];
  /** False when the DICOM already existed and was kept. */
  written: boolean;
  /** The DICOM's size in bytes. */
  bytes: number;
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const info = await stat(path);
    return info.isFile() && info.size > 0 ? info.size : undefined;
  } catch {
    return undefined;
  }
}

/** Runs one task (see the module comment). */
export async function runSynthTask(task: SynthTask): Promise<SynthTaskResult> {
  const { size } = task.spec;
  const existing = await fileSize(task.file);
  if (existing !== undefined) {
    return { rle: generateMasks(task.spec).map((mask) => encode(mask, size, size)), written: false, bytes: existing };
  }
  const image = generateImage(task.spec);
  const bytes = await writeDicom({ pixels: image.pixels, width: size, height: size }, { encoding: 'jpeg-baseline', quality: task.quality, tags: task.tags });
  await makeDir(dirname(task.file));
  await writeFileAtomic(task.file, bytes);
  return { rle: image.masks.map((mask) => encode(mask, size, size)), written: true, bytes: bytes.length };
}
