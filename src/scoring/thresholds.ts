/**
 * The triplet search (SPEC section 4), vectorised: each probability map is summarised ONCE, natively
 * (cumulative counts of pixels above each threshold level, and of those inside the truth), and every
 * `(top, area, bottom)` triplet is then scored from the summaries alone.
 *
 * uint8 maps (round(p * 255), as the map store keeps them) are summarised over all 256 levels, so
 * any threshold scores exactly; float32 maps are summarised over a threshold list (default: 0 to 1
 * in steps of 0.01 plus the thresholds of the default grid), and triplets must use those thresholds.
 * Scores equal thresholding each map with `applyTriplet` and averaging Dice as `metrics.evaluate`.
 */
import { ensureRuntime } from '../core/runtime.js';
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';
import { areaScale } from './postprocess.js';
import { DEFAULT_TRIPLETS, assertTriplet } from './triplet.js';
import type { Triplet } from './triplet.js';
import type { ProbabilityMap } from './postprocess.js';

/** Scores of one triplet over a set of maps. */
export interface TripletScore {
  triplet: Triplet;
  /** Mean Dice over all images (null when there are none). */
  meanDice: number | null;
  /** Images whose truth is empty: count and mean Dice. */
  empty: { count: number; meanDice: number | null };
  /** Images whose truth holds pneumothorax. */
  nonEmpty: { count: number; meanDice: number | null };
  /** Images the triplet predicts positive. */
  positives: number;
}

export interface SummariseOptions {
  /** Truth masks (row-major, non-zero = inside), one per map, or all concatenated. Needed to score. */
  truth?: Uint8Array | readonly Uint8Array[];
  /** Thresholds float32 maps are summarised over (default `defaultThresholds()`); ignored for uint8 maps. */
  thresholds?: readonly number[];
  /** Native threads (default: every core). */
  threads?: number;
}

/** Thresholds float maps are summarised over by default: 0 to 1 by 0.01, with every default-grid threshold. */
export function defaultThresholds(): number[] {
  const set = new Set<number>();
  for (let k = 0; k <= 100; k++) set.add(k / 100);
  for (const [top, , bottom] of defaultGrid()) {
    set.add(top);
    set.add(bottom);
  }
  return [...set].sort((a, b) => a - b);
}

function steps(from: number, to: number, step: number): number[] {
  const out: number[] = [];
  for (let k = 0; from + k * step <= to + 1e-9; k++) out.push(Math.round((from + k * step) * 1e6) / 1e6);
  return out;
}

/**
 * The default search grid: the SPEC's 8 triplets first, then a finer grid (top 0.5-0.9 by 0.05,
 * area 0-4000, bottom 0.2-0.5 by 0.05) without repeats; it holds the public-board best (0.7, 600, 0.3).
 */
export function defaultGrid(): Triplet[] {
  const grid: Triplet[] = DEFAULT_TRIPLETS.map((t) => [...t] as Triplet);
  const seen = new Set(grid.map((t) => t.join(',')));
  for (const top of steps(0.5, 0.9, 0.05)) {
    for (const area of [0, 300, 600, 1000, 1500, 2000, 2500, 3000, 4000]) {
      for (const bottom of steps(0.2, 0.5, 0.05)) {
        const key = `${top},${area},${bottom}`;
        if (!seen.has(key)) {
          seen.add(key);
          grid.push([top, area, bottom]);
        }
      }
    }
  }
  return grid;
}

/**
 * Builds a grid from value lists: every combination of `tops` x `areas` x `bottoms`.
 */
export function tripletGrid(tops: readonly number[], areas: readonly number[], bottoms: readonly number[]): Triplet[] {
  const grid: Triplet[] = [];
  for (const top of tops) for (const area of areas) for (const bottom of bottoms) grid.push([top, area, bottom]);
  grid.forEach((t, i) => assertTriplet(`grid[${i}]`, t));
  return grid;
}

function concat(parts: readonly Uint8Array[], pixels: number, name: string): Uint8Array {
  const out = new Uint8Array(parts.length * pixels);
  parts.forEach((p, i) => {
    if (!(p instanceof Uint8Array) || p.length !== pixels) throw invalidParameterError(`${name}[${i}]`, `a Uint8Array of ${pixels} values`, p);
    out.set(p, i * pixels);
  });
  return out;
}

/**
 * Threshold summaries of a set of maps of one size: built by `summariseMaps`, merged across chunks
 * with `concat`, scored by `scoreTriplets`. Memory: 256 (or thresholds + 1) counts per map, not the maps.
 */
export class MapSummaries {
  constructor(
    readonly height: number,
    readonly width: number,
    /** The maps' type: uint8 levels are v > k for k = 0..255; float32 levels are `thresholds`. */
    readonly dtype: 'uint8' | 'float32',
    readonly thresholds: readonly number[] | null,
    readonly count: number,
    readonly above: Int32Array,
    readonly truthAbove: Int32Array | null,
    readonly truthArea: Int32Array | null,
  ) {}

  /** Levels per map. */
  get levels(): number {
    return this.dtype === 'uint8' ? 256 : this.thresholds!.length;
  }

  /** Whether truth was given (needed to score). */
  get hasTruth(): boolean {
    return this.truthArea !== null;
  }

  /** The level index of threshold `t`: floor(t * 255) for uint8 maps, its position (as float32) for float maps. */
  levelOf(t: number): number {
    if (this.dtype === 'uint8') return Math.min(255, Math.floor(t * 255));
    const k = this.thresholds!.indexOf(Math.fround(t));
    if (k < 0) throw new RangeError(`Expected a threshold the float maps were summarised over for ${t} but received one outside the list (pass it in thresholds)`);
    return k;
  }

  /** Pixels above threshold `t` in map `index`. */
  countAbove(index: number, t: number): number {
    return this.above[index * this.levels + this.levelOf(t)]!;
  }

  /** One summary of these maps followed by `others` (same size, type and thresholds). */
  concat(...others: MapSummaries[]): MapSummaries {
    const all = [this, ...others];
    for (const o of others) {
      if (o.height !== this.height || o.width !== this.width || o.dtype !== this.dtype || o.hasTruth !== this.hasTruth || o.thresholds?.join() !== this.thresholds?.join()) {
        throw invalidParameterError('others', `summaries of ${this.height}x${this.width} ${this.dtype} maps like this one`, `${o.height}x${o.width} ${o.dtype}`);
      }
    }
    const join = (arrays: (Int32Array | null)[]): Int32Array | null => {
      if (arrays.some((a) => a === null)) return null;
      const out = new Int32Array(arrays.reduce((n, a) => n + a!.length, 0));
      let at = 0;
      for (const a of arrays) {
        out.set(a!, at);
        at += a!.length;
      }
      return out;
    };
    return new MapSummaries(
      this.height,
      this.width,
      this.dtype,
      this.thresholds,
      all.reduce((n, s) => n + s.count, 0),
      join(all.map((s) => s.above))!,
      join(all.map((s) => s.truthAbove)),
      join(all.map((s) => s.truthArea)),
    );
  }
}

/**
 * Summarises maps natively, once, off the event loop: `maps` is a list of maps or all maps
 * concatenated (uint8 or float32, `height x width` each); `truth` the masks to score against.
 */
export async function summariseMaps(
  maps: readonly ProbabilityMap[] | ProbabilityMap,
  height: number,
  width: number,
  options: SummariseOptions = {},
): Promise<MapSummaries> {
  assertInteger('height', height, 1, 1 << 15);
  assertInteger('width', width, 1, 1 << 15);
  const pixels = height * width;
  let data: ProbabilityMap;
  if (maps instanceof Uint8Array || maps instanceof Float32Array) {
    if (maps.length % pixels !== 0) throw invalidParameterError('maps length', `a multiple of ${height} x ${width} = ${pixels}`, maps.length);
    data = maps;
  } else if (Array.isArray(maps)) {
    const list = maps as readonly ProbabilityMap[];
    const float = list.length > 0 && list[0] instanceof Float32Array;
    const out = float ? new Float32Array(list.length * pixels) : new Uint8Array(list.length * pixels);
    list.forEach((m, i) => {
      if (!(float ? m instanceof Float32Array : m instanceof Uint8Array) || m.length !== pixels) {
        throw invalidParameterError(`maps[${i}]`, `a ${float ? 'Float32Array' : 'Uint8Array'} of ${height} x ${width} = ${pixels} values`, m);
      }
      out.set(m as never, i * pixels);
    });
    data = out;
  } else {
    throw invalidParameterError('maps', 'a list of Float32Array or Uint8Array maps, or one concatenated array', maps);
  }
  const count = data.length / pixels;
  let truth: Uint8Array | null = null;
  if (options.truth !== undefined) {
    truth = options.truth instanceof Uint8Array ? options.truth : Array.isArray(options.truth) ? concat(options.truth as readonly Uint8Array[], pixels, 'truth') : null;
    if (truth === null || truth.length !== count * pixels) throw invalidParameterError('truth', `${count} masks of ${height} x ${width}`, options.truth);
  }
  const threads = options.threads ?? 0;
  assertInteger('threads', threads, 0, 1024);
  const float = data instanceof Float32Array;
  let thresholds: number[] | null = null;
  if (float) {
    const given = options.thresholds ?? defaultThresholds();
    given.forEach((t, i) => assertNumber(`thresholds[${i}]`, t, 0, 1));
    // Compared in float32, as the maps' own type: 0.3 is 0.30000001192...
    thresholds = [...new Set(given.map((t) => Math.fround(t)))].sort((a, b) => a - b);
  }
  const s = await ensureRuntime().summariseMaps(data, count, pixels, truth, thresholds ? Float64Array.from(thresholds) : null, threads);
  return new MapSummaries(height, width, float ? 'float32' : 'uint8', thresholds, count, s.above, s.truthAbove ?? null, s.truthArea ?? null);
}

/**
 * Scores every triplet from the summaries (natively): mean Dice over all images and split into
 * empty and non-empty truth, as `applyTriplet` then `metrics.evaluate` would. Area is counted at
 * `areaSize` (default 1024).
 */
export async function scoreTriplets(summaries: MapSummaries, triplets: readonly Triplet[], options: { areaSize?: number } = {}): Promise<TripletScore[]> {
  if (!(summaries instanceof MapSummaries)) throw invalidParameterError('summaries', 'MapSummaries from summariseMaps', summaries);
  if (!summaries.hasTruth) throw new TypeError('Expected summaries made with truth for summaries but received summaries without truth (pass options.truth to summariseMaps)');
  if (!Array.isArray(triplets)) throw invalidParameterError('triplets', 'an array of [top, area, bottom] triplets', triplets);
  triplets.forEach((t, i) => assertTriplet(`triplets[${i}]`, t));
  const scale = areaScale(summaries.height, summaries.width, options.areaSize ?? 1024);
  const tops = Int32Array.from(triplets, (t) => summaries.levelOf(t[0]));
  const areas = Float64Array.from(triplets, (t) => t[1]);
  const bottoms = Int32Array.from(triplets, (t) => summaries.levelOf(t[2]));
  const raw = await ensureRuntime().scoreTriplets(
    summaries.above,
    summaries.truthAbove!,
    summaries.truthArea!,
    summaries.count,
    summaries.levels,
    tops,
    areas,
    bottoms,
    scale,
  );
  let nonEmptyCount = 0;
  for (let m = 0; m < summaries.count; m++) if (summaries.truthArea![m]! > 0) nonEmptyCount++;
  const value = (v: number) => (Number.isNaN(v) ? null : v);
  return triplets.map((triplet, j) => ({
    triplet: [...triplet] as Triplet,
    meanDice: value(raw[j * 4]!),
    empty: { count: summaries.count - nonEmptyCount, meanDice: value(raw[j * 4 + 1]!) },
    nonEmpty: { count: nonEmptyCount, meanDice: value(raw[j * 4 + 2]!) },
    positives: raw[j * 4 + 3]!,
  }));
}

/** The best-scoring triplet (the first of equals, so the SPEC's 8 win ties in the default grid). */
export function bestTriplet(scores: readonly TripletScore[]): TripletScore {
  if (scores.length === 0) throw invalidParameterError('scores', 'at least one triplet score', scores);
  let best = scores[0]!;
  for (const s of scores) if ((s.meanDice ?? -1) > (best.meanDice ?? -1)) best = s;
  return best;
}
