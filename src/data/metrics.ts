/**
 * The competition metric (SPEC section 3): per-image Dice 2|X n Y| / (|X| + |Y|), 1 when both
 * masks are empty, averaged over images. Reported whole and split by the truth into empty and
 * non-empty images, because an all-empty submission already scores about 0.78 on SIIM-like data.
 *
 * Masks may be given as row-major 0/1 masks, RLE text, several RLE rows (unioned) or canonical
 * runs; text is never expanded into a mask: Dice is computed by intersecting sorted runs.
 */
import { assertInteger, invalidParameterError } from '../core/validate.js';
import { decodeRuns, decodeUnionRuns, encodeRuns, intersectionArea, runsArea } from './rle.js';
import type { Runs } from './rle.js';

/**
 * One image's mask: a row-major `Uint8Array` (non-zero = inside), RLE text, a list of RLE rows
 * (their union, as in train labels; an empty list is an empty mask), or canonical `Runs`
 * (`Int32Array`, sorted non-overlapping `[start, end)` pairs as returned by `rle.decodeRuns`).
 */
export type MaskInput = Uint8Array | Runs | string | readonly string[];

/** The mask size; RLE text is decoded at `width x height` (default 1024 x 1024, SIIM's size). */
export interface MetricOptions {
  width?: number;
  height?: number;
}

/** Mean Dice over a group of images; `meanDice` is null when the group is empty. */
export interface DicePart {
  count: number;
  meanDice: number | null;
}

/** What `evaluate` reports. The means cover the images present in both truth and prediction. */
export interface DiceReport {
  /** Mean Dice over the images scored (null when none). */
  meanDice: number | null;
  /** The number of images scored. */
  images: number;
  /** Images whose truth is empty. */
  empty: DicePart;
  /** Images whose truth holds pneumothorax. */
  nonEmpty: DicePart;
  /** Ids in the truth but not in the prediction (not scored), in truth order. */
  missing: string[];
  /** Ids in the prediction but not in the truth (not scored), in prediction order. */
  extra: string[];
}

function sizeOf(options: MetricOptions): { width: number; height: number } {
  const width = options.width ?? 1024;
  const height = options.height ?? width;
  assertInteger('width', width, 1, 1 << 15);
  assertInteger('height', height, 1, 1 << 15);
  return { width, height };
}

/** Converts any `MaskInput` to canonical runs. `id` names the image in errors. */
export function toRuns(mask: MaskInput, options: MetricOptions = {}, id?: string): Runs {
  const { width, height } = sizeOf(options);
  if (typeof mask === 'string') return decodeRuns(mask, width, height, id);
  if (mask instanceof Int32Array) return mask;
  if (mask instanceof Uint8Array) return encodeRuns(mask, width, height);
  if (Array.isArray(mask)) return decodeUnionRuns(mask, width, height, id);
  throw invalidParameterError(id === undefined ? 'mask' : `mask of image ${id}`, 'a Uint8Array mask, RLE text, a list of RLE rows or runs', mask);
}

/** Dice of two canonical run lists; 1 when both are empty. */
export function diceFromRuns(a: Runs, b: Runs): number {
  const total = runsArea(a) + runsArea(b);
  if (total === 0) return 1;
  return (2 * intersectionArea(a, b)) / total;
}

/** The Dice score of one image's truth and prediction; 1 when both are empty. */
export function diceScore(a: MaskInput, b: MaskInput, options: MetricOptions = {}): number {
  return diceFromRuns(toRuns(a, options), toRuns(b, options));
}

/**
 * Scores a prediction against the truth: mean Dice over the ids present in both, split into
 * images with empty and non-empty truth, plus the ids missing from or extra in the prediction.
 */
export function evaluate(
  truth: ReadonlyMap<string, MaskInput>,
  pred: ReadonlyMap<string, MaskInput>,
  options: MetricOptions = {},
): DiceReport {
  if (!(truth instanceof Map)) throw invalidParameterError('truth', 'a Map of id to mask', truth);
  if (!(pred instanceof Map)) throw invalidParameterError('pred', 'a Map of id to mask', pred);
  let sumEmpty = 0;
  let countEmpty = 0;
  let sumNonEmpty = 0;
  let countNonEmpty = 0;
  const missing: string[] = [];
  for (const [id, truthMask] of truth) {
    const predMask = pred.get(id);
    if (predMask === undefined) {
      missing.push(id);
      continue;
    }
    const t = toRuns(truthMask, options, id);
    const dice = diceFromRuns(t, toRuns(predMask, options, id));
    if (t.length === 0) {
      sumEmpty += dice;
      countEmpty++;
    } else {
      sumNonEmpty += dice;
      countNonEmpty++;
    }
  }
  const extra = [...pred.keys()].filter((id) => !truth.has(id));
  const images = countEmpty + countNonEmpty;
  const mean = (sum: number, count: number) => (count === 0 ? null : sum / count);
  return {
    meanDice: mean(sumEmpty + sumNonEmpty, images),
    images,
    empty: { count: countEmpty, meanDice: mean(sumEmpty, countEmpty) },
    nonEmpty: { count: countNonEmpty, meanDice: mean(sumNonEmpty, countNonEmpty) },
    missing,
    extra,
  };
}

function listIds(ids: string[]): string {
  return `${ids.slice(0, 5).join(', ')}${ids.length > 5 ? `, ... (${ids.length} in all)` : ''}`;
}

/**
 * The mean Dice of a prediction over the truth's images. The two must hold the same ids: a
 * missing or extra image throws (use `evaluate` to score the common ids and list the others).
 */
export function meanDice(truth: ReadonlyMap<string, MaskInput>, pred: ReadonlyMap<string, MaskInput>, options: MetricOptions = {}): number {
  const report = evaluate(truth, pred, options);
  if (report.missing.length > 0) throw new Error(`meanDice: the prediction is missing ${report.missing.length} image(s) of the truth: ${listIds(report.missing)}`);
  if (report.extra.length > 0) throw new Error(`meanDice: the prediction has ${report.extra.length} image(s) not in the truth: ${listIds(report.extra)}`);
  if (report.meanDice === null) throw new Error('meanDice: no images to score');
  return report.meanDice;
}
