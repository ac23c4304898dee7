/**
 * Cross-validation folds stratified by `exist_labels` (SPEC section 4), in the first place's file
 * layout: `fname,fold,exist_labels` with `fname = <ImageId>.png` (the prepared PNG's name), rows
 * sorted by fname.
 *
 * Assignment: the ids of each class (with / without pneumothorax) are sorted, shuffled with a
 * PRNG seeded by `seed`, and dealt round-robin; the negatives continue where the positives
 * stopped, so per class and in total the fold sizes differ by at most 1. The result depends only
 * on the set of labelled ids, the seed and k (not on the file's row order).
 *
 * The stage-2 scheme adds images that are always trained on and never validated (the stage-1 test
 * images). The first place's `2nd_stage_folds.csv` writes their fold as the label `stage_2`, which
 * no fold index ever equals; this module writes the same label, reads `stage_2` or `-1`, and
 * represents them in memory as fold `ALWAYS_TRAIN_FOLD` (-1).
 */
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../core/atomic-write.js';
import { Random, deriveSeed } from '../core/random.js';
import type { Seed } from '../core/random.js';
import { assertInteger, invalidParameterError } from '../core/validate.js';
import { LabelFileError, hasPneumothorax } from './labels.js';

/** The in-memory fold of images that are always trained on (never validated). */
export const ALWAYS_TRAIN_FOLD = -1;
/** How the always-train fold is written in the file (as in the first place's stage-2 folds). */
export const ALWAYS_TRAIN_LABEL = 'stage_2';
/** The header of a folds file. */
export const FOLDS_HEADER = 'fname,fold,exist_labels';

/** One image's fold. */
export interface FoldRow {
  /** The ImageId. */
  id: string;
  /** The file name in the folds file: `<id>.png`. */
  fname: string;
  /** 0..k-1, or `ALWAYS_TRAIN_FOLD` for images that are always trained on. */
  fold: number;
  /** 1 when the image has pneumothorax. */
  existLabels: 0 | 1;
}

/** Options for `makeFolds`. */
export interface MakeFoldsOptions {
  /** Number of folds (at least 2). */
  k: number;
  /** PRNG seed; the same seed gives the same folds. */
  seed: Seed;
  /** Ids placed in the always-train fold instead of being dealt (they must be in `labels`). */
  alwaysTrain?: Iterable<string>;
}

/** The file name of an image in the folds file. */
export function fnameOf(id: string): string {
  return `${id}.png`;
}

/** The ImageId of a folds-file name (drops a `.png` extension). */
export function idOfFname(fname: string): string {
  return fname.endsWith('.png') ? fname.slice(0, -4) : fname;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Assigns folds. `labels` maps each id to whether it has pneumothorax (a boolean, or its RLE rows
 * as read by `readTrainLabels`). Returns rows sorted by fname, always-train rows last.
 */
export function makeFolds(labels: ReadonlyMap<string, boolean | readonly string[]>, options: MakeFoldsOptions): FoldRow[] {
  if (!(labels instanceof Map)) throw invalidParameterError('labels', 'a Map of id to labels', labels);
  assertInteger('k', options.k, 2, 1000);
  const k = options.k;
  const always = new Set(options.alwaysTrain ?? []);
  for (const id of always) {
    if (!labels.has(id)) throw invalidParameterError('alwaysTrain', 'ids present in the labels', id);
  }
  const exist = (id: string): 0 | 1 => {
    const value = labels.get(id);
    if (typeof value === 'boolean') return value ? 1 : 0;
    return hasPneumothorax(value ?? []) ? 1 : 0;
  };
  const positives: string[] = [];
  const negatives: string[] = [];
  for (const id of labels.keys()) {
    if (always.has(id)) continue;
    (exist(id) === 1 ? positives : negatives).push(id);
  }
  const dealt = positives.length + negatives.length;
  if (dealt < k) throw new RangeError(`Cannot make ${k} folds from ${dealt} image${dealt === 1 ? '' : 's'}: need at least one image per fold`);
  positives.sort(compareStrings);
  negatives.sort(compareStrings);
  const rng = new Random(deriveSeed(options.seed, k));
  rng.shuffle(positives);
  rng.shuffle(negatives);
  const rows: FoldRow[] = [];
  positives.forEach((id, i) => rows.push({ id, fname: fnameOf(id), fold: i % k, existLabels: 1 }));
  negatives.forEach((id, i) => rows.push({ id, fname: fnameOf(id), fold: (positives.length + i) % k, existLabels: 0 }));
  rows.sort((a, b) => compareStrings(a.fname, b.fname));
  const extra = [...always].sort(compareStrings).map((id): FoldRow => ({ id, fname: fnameOf(id), fold: ALWAYS_TRAIN_FOLD, existLabels: exist(id) }));
  return rows.concat(extra);
}

/** Formats rows as a folds file. */
export function formatFolds(rows: readonly FoldRow[]): string {
  const lines = [FOLDS_HEADER];
  for (const row of rows) lines.push(`${row.fname},${row.fold === ALWAYS_TRAIN_FOLD ? ALWAYS_TRAIN_LABEL : row.fold},${row.existLabels}`);
  return `${lines.join('\n')}\n`;
}

/** Writes a folds file atomically (temporary file, then rename). */
export async function writeFolds(path: string, rows: readonly FoldRow[]): Promise<void> {
  await writeFileAtomic(path, formatFolds(rows));
}

/**
 * Reads a folds file (this project's or the first place's: `fname,fold,exist_labels`, any column
 * order). The fold is an integer >= 0, or `stage_2` / `-1` for the always-train fold.
 */
export async function readFolds(path: string): Promise<FoldRow[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new LabelFileError(code === 'ENOENT' ? 'no such file' : `cannot read (${code ?? String(err)})`, path);
  }
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const names = (lines[0] ?? '').split(',').map((f) => f.trim().toLowerCase());
  const col = { fname: names.indexOf('fname'), fold: names.indexOf('fold'), exist: names.indexOf('exist_labels') };
  const missing = Object.entries(col)
    .filter(([, i]) => i < 0)
    .map(([name]) => (name === 'exist' ? 'exist_labels' : name));
  if (missing.length > 0) throw new LabelFileError(`bad header ${JSON.stringify(lines[0] ?? '')}: missing column ${missing.join(', ')} (expected "${FOLDS_HEADER}")`, path, 1);
  const rows: FoldRow[] = [];
  const seen = new Set<string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.trim() === '') continue;
    const fields = line.split(',').map((f) => f.trim());
    if (fields.length < names.length) throw new LabelFileError(`expected ${names.length} columns but found ${fields.length}`, path, i + 1);
    const fname = fields[col.fname] as string;
    if (fname === '') throw new LabelFileError('empty fname', path, i + 1);
    const foldText = fields[col.fold] as string;
    let fold: number;
    if (foldText === ALWAYS_TRAIN_LABEL || foldText === '-1') fold = ALWAYS_TRAIN_FOLD;
    else if (/^\d+$/.test(foldText)) fold = Number(foldText);
    else throw new LabelFileError(`bad fold ${JSON.stringify(foldText)}: expected an integer >= 0 or ${ALWAYS_TRAIN_LABEL}`, path, i + 1);
    const existText = fields[col.exist] as string;
    if (existText !== '0' && existText !== '1') throw new LabelFileError(`bad exist_labels ${JSON.stringify(existText)}: expected 0 or 1`, path, i + 1);
    const id = idOfFname(fname);
    if (seen.has(id)) throw new LabelFileError(`image ${id} listed twice`, path, i + 1);
    seen.add(id);
    rows.push({ id, fname, fold, existLabels: existText === '1' ? 1 : 0 });
  }
  return rows;
}

/** Counts of one fold. */
export interface FoldCount {
  fold: number;
  images: number;
  positive: number;
  negative: number;
}

/** Train / validation views of a set of fold rows. */
export class FoldSplit {
  /** The number of folds (the highest fold index + 1). */
  readonly k: number;

  constructor(readonly rows: readonly FoldRow[]) {
    this.k = rows.reduce((max, row) => Math.max(max, row.fold + 1), 0);
  }

  /** Reads a folds file into a split. */
  static async read(path: string): Promise<FoldSplit> {
    return new FoldSplit(await readFolds(path));
  }

  private check(fold: number): void {
    assertInteger('fold', fold, 0, Math.max(0, this.k - 1));
  }

  /** Rows trained on when validating on `fold`: every other fold plus the always-train fold. */
  train(fold: number): FoldRow[] {
    this.check(fold);
    return this.rows.filter((row) => row.fold !== fold);
  }

  /** Rows validated on for `fold`. */
  val(fold: number): FoldRow[] {
    this.check(fold);
    return this.rows.filter((row) => row.fold === fold);
  }

  /** Ids trained on when validating on `fold`. */
  trainIds(fold: number): string[] {
    return this.train(fold).map((row) => row.id);
  }

  /** Ids validated on for `fold`. */
  valIds(fold: number): string[] {
    return this.val(fold).map((row) => row.id);
  }

  /** Per-fold counts (folds 0..k-1, then the always-train fold when present). */
  counts(): FoldCount[] {
    const byFold = new Map<number, FoldCount>();
    for (let f = 0; f < this.k; f++) byFold.set(f, { fold: f, images: 0, positive: 0, negative: 0 });
    for (const row of this.rows) {
      let count = byFold.get(row.fold);
      if (!count) byFold.set(row.fold, (count = { fold: row.fold, images: 0, positive: 0, negative: 0 }));
      count.images++;
      if (row.existLabels === 1) count.positive++;
      else count.negative++;
    }
    return [...byFold.values()].sort((a, b) => (a.fold === ALWAYS_TRAIN_FOLD ? 1 : b.fold === ALWAYS_TRAIN_FOLD ? -1 : a.fold - b.fold));
  }
}
