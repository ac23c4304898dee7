/**
 * From stored maps to a SIIM submission (SPEC sections 4-6): per image, the triplet rule, then
 * optionally connected regions under a minimum area removed (holes filled), the classifier gate
 * (second place: the segmentation only where the stacked probability exceeds the gate) and the
 * 42nd place's non_empty_ratio; masks resized to 1024 bilinearly and binarised at 0.5 when the maps
 * are smaller; SIIM RLE (column-major, relative, `-1` for empty) in the sample submission's order.
 * With truth, the submission is scored too (mean Dice split into empty and non-empty images).
 */
import { open, readFile } from 'node:fs/promises';
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';
import { SubmissionWriter } from '../data/labels.js';
import { evaluate } from '../data/metrics.js';
import type { DiceReport } from '../data/metrics.js';
import { encodeRuns, formatRuns } from '../data/rle.js';
import type { Runs } from '../data/rle.js';
import type { Triplet } from '../training/config.js';
import { openMapSet } from './blend.js';
import { MAP_STORE_MAGIC } from './maps.js';
import type { BlendInput } from './blend.js';
import { applyTriplet, assertTriplet, nonEmptyRatio, removeSmallRegions } from './postprocess.js';
import { resizeMask } from './resize.js';

/** The first place's best triplet on validation (SPEC section 4). */
export const DEFAULT_SUBMIT_TRIPLET: Triplet = [0.75, 2000, 0.3];

export interface PostprocessOptions {
  /** The triplet rule (default `DEFAULT_SUBMIT_TRIPLET`). */
  triplet?: Triplet;
  /** The side triplet and region areas are counted at (default 1024). */
  areaSize?: number;
  /** Remove connected regions smaller than this (pixels at `areaSize`; 0 = keep all, the default). */
  minArea?: number;
}

export interface SubmitOptions extends PostprocessOptions {
  /** Keep only this fraction of images positive, ranked by predicted area (the 42nd place's rule). */
  nonEmptyRatio?: number;
  /**
   * Classifier gating: an image keeps its segmentation only when its probability is above
   * `threshold` (second place: 0.65). `probabilities` per id, or `'maps'` for the classifier
   * probabilities stored with the maps.
   */
  gate?: { probabilities: ReadonlyMap<string, number> | 'maps'; threshold: number };
  /**
   * With `nonEmptyRatio`: rank the images by these probabilities (the 42nd place's classifier)
   * instead of by predicted area; an image outside the top fraction is submitted empty, one inside
   * keeps its segmentation.
   */
  rankBy?: ReadonlyMap<string, number>;
  /** The submission's mask side (default 1024). */
  size?: number;
  /** Truth (`id -> RLE rows` at `size`): scores the submission. */
  truth?: ReadonlyMap<string, readonly string[]>;
  /** Called as images are done (two passes with `nonEmptyRatio`). */
  onProgress?: (done: number, total: number, pass: number) => void;
}

export interface SubmitResult {
  out: string;
  images: number;
  /** Images submitted with a mask. */
  positives: number;
  triplet: Triplet;
  minArea: number;
  /** Images the triplet found positive. */
  tripletPositives: number;
  /** Positive images emptied by the classifier gate. */
  gatedOut: number;
  /** Positive images emptied by non_empty_ratio. */
  ratioRemoved: number;
  /** Regions removed under `minArea`, over all images. */
  regionsRemoved: number;
  mapSize: [number, number];
  size: number;
  /** With truth: the score, and what an all-empty submission scores. */
  score: (DiceReport & { emptyBaseline: number }) | null;
}

/** The triplet rule then region filtering on one map, at the map's size. */
export function postprocessMap(probs: Float32Array | Uint8Array, height: number, width: number, options: PostprocessOptions = {}): { mask: Uint8Array; positive: boolean; area: number; regionsRemoved: number } {
  const triplet = options.triplet ?? DEFAULT_SUBMIT_TRIPLET;
  const areaSize = options.areaSize ?? 1024;
  const minArea = options.minArea ?? 0;
  const t = applyTriplet(probs, height, width, triplet, { areaSize });
  if (!t.positive || minArea <= 0) return { ...t, regionsRemoved: 0 };
  const r = removeSmallRegions(t.mask, height, width, minArea, { areaSize });
  let area = 0;
  for (let i = 0; i < r.mask.length; i++) area += r.mask[i]!;
  return { mask: r.mask, positive: area > 0, area, regionsRemoved: r.removed };
}

/** Reads `ImageId,<probability>` rows (a header line is skipped), e.g. stacked classifier probabilities. */
export async function readProbabilities(path: string): Promise<Map<string, number>> {
  const text = await readFile(path, 'utf8');
  const out = new Map<string, number>();
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '') return;
    const [id, value, ...rest] = line.split(',').map((s) => s.trim());
    const p = Number(value);
    if (i === 0 && !Number.isFinite(p)) return; // header
    if (!id || rest.length > 0 || value === undefined || value === '' || !Number.isFinite(p) || p < 0 || p > 1) {
      throw new Error(`${path}:${i + 1}: expected "ImageId,probability" with a probability in [0, 1] but received ${JSON.stringify(line.slice(0, 80))}`);
    }
    if (out.has(id)) throw new Error(`${path}:${i + 1}: ImageId ${id} repeated`);
    out.set(id, p);
  });
  return out;
}

/**
 * The classifier probabilities of a probability-map file (`.pnm` from `infer`/`blend` with a model
 * that has a classification head), or of an `ImageId,probability` CSV: whichever `path` holds.
 */
export async function readRankingProbabilities(path: string): Promise<Map<string, number>> {
  const head = Buffer.alloc(MAP_STORE_MAGIC.length);
  const file = await open(path, 'r');
  try {
    await file.read(head, 0, head.length, 0);
  } finally {
    await file.close();
  }
  if (!head.equals(MAP_STORE_MAGIC)) return readProbabilities(path);
  const maps = await openMapSet([path]);
  try {
    const out = new Map<string, number>();
    const none: string[] = [];
    for (const id of maps.ids) {
      const p = maps.label(id);
      if (p === null) none.push(id);
      else out.set(id, p);
    }
    if (none.length > 0) throw new Error(`${path}: ${none.length} map(s) hold no classifier probability (made by a model without a classification head?): ${listSome(none)}`);
    return out;
  } finally {
    await maps.close();
  }
}

function listSome(ids: readonly string[]): string {
  return `${ids.slice(0, 5).join(', ')}${ids.length > 5 ? `, ... (${ids.length} in all)` : ''}`;
}

/**
 * Writes the submission for `sampleIds` (the sample submission's ids, in its order) from the maps
 * of `mapPaths`: one file, files over distinct images (joined), or files over the same images
 * (blended on the fly with their weights, `{ path, weight }`; see `openMapSet`). The maps must
 * cover exactly the sample's ids: missing or extra ids are an error listing some of them.
 */
export async function makeSubmission(mapPaths: readonly (string | BlendInput)[], sampleIds: readonly string[], outPath: string, options: SubmitOptions = {}): Promise<SubmitResult> {
  if (!Array.isArray(mapPaths) || mapPaths.length === 0) throw invalidParameterError('mapPaths', 'at least one map file', mapPaths);
  const triplet = options.triplet ?? DEFAULT_SUBMIT_TRIPLET;
  assertTriplet('triplet', triplet);
  const size = options.size ?? 1024;
  assertInteger('size', size, 1, 1 << 15);
  const minArea = options.minArea ?? 0;
  assertNumber('minArea', minArea, 0);
  if (options.nonEmptyRatio !== undefined) assertNumber('nonEmptyRatio', options.nonEmptyRatio, 0, 1);
  if (options.gate) assertNumber('gate.threshold', options.gate.threshold, 0, 1);
  if (options.rankBy !== undefined && options.nonEmptyRatio === undefined) throw invalidParameterError('rankBy', 'nonEmptyRatio as well (it ranks images for non_empty_ratio)', 'no nonEmptyRatio');
  const maps = await openMapSet(mapPaths);
  try {
    const sample = new Set(sampleIds);
    if (sample.size !== sampleIds.length) throw new Error('the sample submission repeats ids');
    const missing = sampleIds.filter((id) => !maps.has(id));
    const extra = maps.ids.filter((id) => !sample.has(id));
    if (missing.length > 0 || extra.length > 0) {
      const parts: string[] = [];
      if (missing.length > 0) parts.push(`${missing.length} sample-submission id(s) have no map: ${listSome(missing)}`);
      if (extra.length > 0) parts.push(`${extra.length} map id(s) are not in the sample submission: ${listSome(extra)}`);
      throw new Error(`the maps do not match the sample submission: ${parts.join('; ')}`);
    }
    let gateProbs: ReadonlyMap<string, number> | null = null;
    if (options.gate) {
      if (options.gate.probabilities === 'maps') {
        const m = new Map<string, number>();
        const none: string[] = [];
        for (const id of sampleIds) {
          const p = maps.label(id);
          if (p === null) none.push(id);
          else m.set(id, p);
        }
        if (none.length > 0) throw new Error(`classifier gating from the maps, but ${none.length} map(s) hold no classifier probability (made without a classification head?): ${listSome(none)}`);
        gateProbs = m;
      } else {
        gateProbs = options.gate.probabilities;
        const noProb = sampleIds.filter((id) => !gateProbs!.has(id));
        if (noProb.length > 0) throw new Error(`the classifier probabilities miss ${noProb.length} sample-submission id(s): ${listSome(noProb)}`);
      }
    }
    if (options.rankBy) {
      const noProb = sampleIds.filter((id) => !options.rankBy!.has(id));
      if (noProb.length > 0) throw new Error(`the ranking probabilities miss ${noProb.length} sample-submission id(s): ${listSome(noProb)}`);
    }
    const { height, width } = maps;
    const post: PostprocessOptions = { triplet, minArea, areaSize: options.areaSize ?? 1024 };
    const gated = (id: string) => gateProbs !== null && !(gateProbs.get(id)! > options.gate!.threshold);
    const total = sampleIds.length;
    // non_empty_ratio ranks every image's predicted area first (one pass of counts, no masks kept).
    let keep: boolean[] | null = null;
    if (options.nonEmptyRatio !== undefined) {
      const counts = new Float64Array(total);
      for (let k = 0; k < total; k++) {
        const id = sampleIds[k]!;
        if (!gated(id)) {
          counts[k] = options.rankBy ? options.rankBy.get(id)! : postprocessMap(await maps.read(id), height, width, post).area;
        }
        options.onProgress?.(k + 1, total, 1);
      }
      keep = nonEmptyRatio(counts, options.nonEmptyRatio);
    }
    const writer = await SubmissionWriter.open(outPath);
    const predRuns = new Map<string, Runs>();
    let positives = 0;
    let tripletPositives = 0;
    let gatedOut = 0;
    let ratioRemoved = 0;
    let regionsRemoved = 0;
    try {
      for (let k = 0; k < total; k++) {
        const id = sampleIds[k]!;
        const result = postprocessMap(await maps.read(id), height, width, post);
        regionsRemoved += result.regionsRemoved;
        let mask: Uint8Array | null = result.positive ? result.mask : null;
        if (result.positive) tripletPositives++;
        if (mask && gated(id)) {
          mask = null;
          gatedOut++;
        }
        if (mask && keep && !keep[k]) {
          mask = null;
          ratioRemoved++;
        }
        let runs: Runs = new Int32Array(0);
        if (mask) {
          const full = height === size && width === size ? mask : resizeMask(mask, height, width, size, size);
          runs = encodeRuns(full, size, size);
        }
        if (runs.length > 0) positives++;
        await writer.write(id, formatRuns(runs));
        if (options.truth) predRuns.set(id, runs);
        options.onProgress?.(k + 1, total, keep ? 2 : 1);
      }
    } catch (err) {
      await writer.abort();
      throw err;
    }
    await writer.close();
    let score: SubmitResult['score'] = null;
    if (options.truth) {
      const report = evaluate(options.truth as ReadonlyMap<string, readonly string[]>, predRuns, { width: size, height: size });
      score = { ...report, emptyBaseline: report.images === 0 ? 0 : report.empty.count / report.images };
    }
    return { out: outPath, images: total, positives, triplet: [...triplet] as Triplet, minArea, tripletPositives, gatedOut, ratioRemoved, regionsRemoved, mapSize: [height, width], size, score };
  } finally {
    await maps.close();
  }
}
