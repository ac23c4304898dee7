/**
 * Pseudo-labels (the second place's optional step, SPEC 5): confident predictions on unlabelled
 * images (e.g. the test set) join the training data with their predicted masks.
 *
 * The confidence rule, per image of a map file: confidently positive when its highest probability
 * is at least `confidence` and its mask (p > `threshold`) covers at least `minArea` pixels
 * (counted at `areaSize`, as triplet areas are); confidently empty when its highest probability is
 * at most 1 - `confidence`. Every other image is left out. Added images are written into the
 * prepared folder (`train/<id>.png` copied from `test/`, `mask/<id>.png` the thresholded map
 * resized to the prepared size, nearest), and a new folds file lists them in the always-train fold, so
 * every fold trains on them and none validates on them. The original folds file is not changed.
 */
import { copyFile, readFile, rename } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { assertInteger, assertNumber } from '../core/validate.js';
import { ALWAYS_TRAIN_FOLD, readFolds, writeFolds } from '../data/folds.js';
import type { FoldRow } from '../data/folds.js';
import { writeGrayPng } from '../data/prepare/task.js';
import { MapReader } from './maps.js';

export interface PseudoLabelOptions {
  /** Highest probability of a confident positive (and 1 - it, of a confident empty); default 0.9. */
  confidence?: number;
  /** Pixel threshold of the pseudo mask (default 0.5). */
  threshold?: number;
  /** Smallest mask of a confident positive, in pixels at `areaSize` (default 0). */
  minArea?: number;
  /** The side areas are counted at (default 1024). */
  areaSize?: number;
}

export interface PseudoLabelResult {
  foldsOut: string;
  considered: number;
  positives: string[];
  empties: string[];
  /** Images left out by the rule. */
  uncertain: number;
}

/**
 * Adds the confident images of `maps` (predictions on `prepared`'s test images) to `prepared`'s
 * training data and writes `foldsOut`: the rows of `foldsIn` plus one always-train row per added image.
 * @throws Error when an id is already a training image or its test PNG is missing
 */
export async function pseudoLabel(maps: string, prepared: string, foldsIn: string, foldsOut: string, options: PseudoLabelOptions = {}): Promise<PseudoLabelResult> {
  const confidence = options.confidence ?? 0.9;
  const threshold = options.threshold ?? 0.5;
  const minArea = options.minArea ?? 0;
  const areaSize = options.areaSize ?? 1024;
  assertNumber('confidence', confidence, 0.5, 1);
  assertNumber('threshold', threshold, 0, 1);
  assertInteger('minArea', minArea, 0);
  assertInteger('areaSize', areaSize, 1);
  const rows = await readFolds(foldsIn);
  const known = new Set(rows.map((r) => r.id));
  const meta = JSON.parse(await readFile(join(prepared, 'prepare.json'), 'utf8')) as { imgSize: number };
  const size = meta.imgSize;
  const reader = await MapReader.open(maps, { requireComplete: true });
  const result: PseudoLabelResult = { foldsOut, considered: reader.count, positives: [], empties: [], uncertain: 0 };
  const added: FoldRow[] = [];
  try {
    const scale = (areaSize * areaSize) / (reader.width * reader.height);
    for (const id of reader.ids) {
      if (known.has(id)) throw new Error(`${maps}: image ${id} is already in ${foldsIn}: pseudo-labels are for unlabelled images`);
      const p = await reader.read(id);
      let max = 0;
      let area = 0;
      const mask = new Uint8Array(p.length);
      for (let i = 0; i < p.length; i++) {
        if (p[i]! > max) max = p[i]!;
        if (p[i]! > threshold) {
          mask[i] = 255;
          area++;
        }
      }
      const positive = max >= confidence && area > 0 && area * scale >= minArea;
      const empty = max <= 1 - confidence;
      if (!positive && !empty) {
        result.uncertain++;
        continue;
      }
      const source = join(prepared, 'test', `${id}.png`);
      if (!existsSync(source)) throw new Error(`${source} does not exist: ${prepared} has no prepared test image ${id}`);
      // Nearest-neighbour to the prepared size (pixel centres: source = floor((y + 0.5) h / size)).
      const resized = new Uint8Array(size * size);
      for (let y = 0; y < size; y++) {
        const sy = Math.min(reader.height - 1, Math.floor(((y + 0.5) * reader.height) / size));
        for (let x = 0; x < size; x++) resized[y * size + x] = mask[sy * reader.width + Math.min(reader.width - 1, Math.floor(((x + 0.5) * reader.width) / size))]!;
      }
      await writeGrayPng(positive ? resized : new Uint8Array(size * size), size, join(prepared, 'mask', `${id}.png`));
      await copyFile(source, `${join(prepared, 'train', `${id}.png`)}.tmp`);
      await rename(`${join(prepared, 'train', `${id}.png`)}.tmp`, join(prepared, 'train', `${id}.png`));
      added.push({ id, fname: `${id}.png`, fold: ALWAYS_TRAIN_FOLD, existLabels: positive ? 1 : 0 });
      (positive ? result.positives : result.empties).push(id);
    }
  } finally {
    await reader.close();
  }
  await writeFolds(foldsOut, [...rows, ...added]);
  return result;
}
