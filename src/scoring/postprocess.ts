/**
 * Post-processing of probability maps into masks (SPEC sections 4 and 6):
 *
 * - the first place's triplet rule `(top, area, bottom)`: an image is empty when fewer than
 *   `area` pixels (counted at 1024 x 1024) have p > top, else its mask is p > bottom;
 * - removal of connected regions under a minimum area, holes of the kept regions filled (the
 *   first place's filled external contours);
 * - the 42nd place's `non_empty_ratio`: rank images by predicted positive-pixel count and keep
 *   only the top fraction positive.
 *
 * Maps are row-major `Float32Array` probabilities, or `Uint8Array` holding round(p * 255) as the
 * map store keeps them; a uint8 value v is above threshold t when v > t * 255, so a uint8 map and
 * the float map it was made from give the same masks up to the rounding. Float maps compare in
 * float32, as numpy and PyTorch do.
 */
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';
import { assertTriplet } from './triplet.js';
import type { Triplet } from './triplet.js';

/** A probability map: float probabilities in [0, 1], or uint8 = round(p * 255). */
export type ProbabilityMap = Float32Array | Uint8Array;

export interface TripletOptions {
  /**
   * The side the triplet's area refers to (default 1024, SIIM's size): a map of H x W counts each
   * pixel as (areaSize / H) * (areaSize / W) pixels.
   */
  areaSize?: number;
}

export interface TripletResult {
  /** Row-major 0/1 mask at the map's size (all zero when `positive` is false). */
  mask: Uint8Array;
  /** Whether the image passed the top/area test. */
  positive: boolean;
  /** Pixels of the mask, at the map's size. */
  area: number;
}

export function assertMap(name: string, map: unknown, height: number, width: number): asserts map is ProbabilityMap {
  assertInteger('height', height, 1, 1 << 15);
  assertInteger('width', width, 1, 1 << 15);
  if (!(map instanceof Float32Array) && !(map instanceof Uint8Array)) throw invalidParameterError(name, 'a Float32Array or Uint8Array probability map', map);
  if (map.length !== height * width) throw invalidParameterError(`${name} length`, `${height} x ${width} = ${height * width} values`, map.length);
}

/**
 * The comparison value for threshold `t` on a map of this type: v > t * 255 for uint8, and for
 * float32 maps p > t with t rounded to float32 (as numpy and PyTorch compare a float32 array).
 */
export function cutFor(map: ProbabilityMap, t: number): number {
  return map instanceof Uint8Array ? t * 255 : Math.fround(t);
}

/** The area scale of one pixel of an H x W map counted at `areaSize` x `areaSize`. */
export function areaScale(height: number, width: number, areaSize = 1024): number {
  assertNumber('areaSize', areaSize, 1, 1 << 20);
  return (areaSize / height) * (areaSize / width);
}

/** Pixels of `map` strictly above threshold `t` (in [0, 1]). */
export function countAbove(map: ProbabilityMap, t: number): number {
  const cut = cutFor(map, t);
  let n = 0;
  for (let i = 0; i < map.length; i++) if (map[i]! > cut) n++;
  return n;
}

/** The 0/1 mask p > t. */
export function thresholdMap(map: ProbabilityMap, t: number): Uint8Array {
  const cut = cutFor(map, t);
  const mask = new Uint8Array(map.length);
  for (let i = 0; i < map.length; i++) mask[i] = map[i]! > cut ? 1 : 0;
  return mask;
}

/**
 * The triplet rule (SPEC section 4): empty when count(p > top), counted at `areaSize`, is under
 * `area`; otherwise p > bottom.
 */
export function applyTriplet(probs: ProbabilityMap, height: number, width: number, triplet: Triplet, options: TripletOptions = {}): TripletResult {
  assertMap('probs', probs, height, width);
  assertTriplet('triplet', triplet);
  const [top, area, bottom] = triplet;
  const scale = areaScale(height, width, options.areaSize ?? 1024);
  if (countAbove(probs, top) * scale < area) return { mask: new Uint8Array(probs.length), positive: false, area: 0 };
  const mask = thresholdMap(probs, bottom);
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i]!;
  return { mask, positive: true, area: n };
}

// ---- connected regions ---------------------------------------------------------------------------

export interface RegionOptions {
  /** Count areas at this side, as for triplets (default: the mask's own pixels). */
  areaSize?: number;
  /** Fill the holes of kept regions (default true, as the first place's filled contours). */
  fillHoles?: boolean;
}

/** Labels 8-connected foreground regions: returns per-pixel labels (0 = background, 1..n) and n. */
export function labelRegions(mask: Uint8Array, height: number, width: number): { labels: Int32Array; count: number; areas: number[] } {
  const labels = new Int32Array(mask.length);
  const stack = new Int32Array(mask.length);
  const areas: number[] = [0];
  let count = 0;
  for (let start = 0; start < mask.length; start++) {
    if (mask[start] === 0 || labels[start] !== 0) continue;
    count++;
    let top = 0;
    let area = 0;
    stack[top++] = start;
    labels[start] = count;
    while (top > 0) {
      const p = stack[--top]!;
      area++;
      const r = (p / width) | 0;
      const c = p - r * width;
      for (let dr = -1; dr <= 1; dr++) {
        const rr = r + dr;
        if (rr < 0 || rr >= height) continue;
        for (let dc = -1; dc <= 1; dc++) {
          const cc = c + dc;
          if (cc < 0 || cc >= width) continue;
          const q = rr * width + cc;
          if (mask[q] !== 0 && labels[q] === 0) {
            labels[q] = count;
            stack[top++] = q;
          }
        }
      }
    }
    areas.push(area);
  }
  return { labels, count, areas };
}

/**
 * Fills holes: background pixels not 4-connected to the image border become foreground. Returns
 * a new mask.
 */
export function fillHoles(mask: Uint8Array, height: number, width: number): Uint8Array {
  const outside = new Uint8Array(mask.length);
  const stack = new Int32Array(mask.length);
  let top = 0;
  const seed = (p: number) => {
    if (mask[p] === 0 && outside[p] === 0) {
      outside[p] = 1;
      stack[top++] = p;
    }
  };
  for (let c = 0; c < width; c++) {
    seed(c);
    seed((height - 1) * width + c);
  }
  for (let r = 0; r < height; r++) {
    seed(r * width);
    seed(r * width + width - 1);
  }
  while (top > 0) {
    const p = stack[--top]!;
    const r = (p / width) | 0;
    const c = p - r * width;
    if (r > 0) seed(p - width);
    if (r < height - 1) seed(p + width);
    if (c > 0) seed(p - 1);
    if (c < width - 1) seed(p + 1);
  }
  const out = new Uint8Array(mask.length);
  for (let i = 0; i < mask.length; i++) out[i] = outside[i] === 0 ? 1 : 0;
  return out;
}

/**
 * Removes 8-connected regions whose filled area (region plus its holes) is under `minArea`, and
 * fills the holes of the regions kept. Area is in the mask's pixels, or counted at `areaSize` x
 * `areaSize` when given. Returns `{ mask, regions, removed }` (regions kept and removed).
 */
export function removeSmallRegions(
  mask: Uint8Array,
  height: number,
  width: number,
  minArea: number,
  options: RegionOptions = {},
): { mask: Uint8Array; regions: number; removed: number } {
  assertInteger('height', height, 1, 1 << 15);
  assertInteger('width', width, 1, 1 << 15);
  if (!(mask instanceof Uint8Array) || mask.length !== height * width) throw invalidParameterError('mask', `a Uint8Array of ${height} x ${width} = ${height * width} values`, mask);
  assertNumber('minArea', minArea, 0, Number.MAX_SAFE_INTEGER);
  const scale = options.areaSize === undefined ? 1 : areaScale(height, width, options.areaSize);
  const doFill = options.fillHoles ?? true;
  const filled = fillHoles(mask, height, width);
  // Each region's filled area: its pixels plus the holes it encloses. Labelling the filled mask
  // gives exactly one label per outer region (a hole's pixels join the region around it).
  const { labels, count, areas } = labelRegions(filled, height, width);
  const keep = new Uint8Array(count + 1);
  let regions = 0;
  for (let k = 1; k <= count; k++) {
    if (areas[k]! * scale >= minArea) {
      keep[k] = 1;
      regions++;
    }
  }
  const source = doFill ? filled : mask;
  const out = new Uint8Array(mask.length);
  for (let i = 0; i < out.length; i++) out[i] = source[i]! !== 0 && keep[labels[i]!] === 1 ? 1 : 0;
  return { mask: out, regions, removed: count - regions };
}

// ---- non_empty_ratio ---------------------------------------------------------------------------

/**
 * The 42nd place's `non_empty_ratio` (SPEC section 6): ranks images by predicted positive-pixel
 * count and keeps the top `ratio` of them (rounded to the nearest image) positive; images with no
 * positive pixel are never kept. Ties keep the earlier image. Returns one flag per image.
 */
export function nonEmptyRatio(positiveCounts: ArrayLike<number>, ratio: number): boolean[] {
  assertNumber('ratio', ratio, 0, 1);
  const n = positiveCounts.length;
  const order = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < n; i++) assertNumber(`positiveCounts[${i}]`, positiveCounts[i], 0);
  order.sort((a, b) => positiveCounts[b]! - positiveCounts[a]! || a - b);
  const keepCount = Math.round(ratio * n);
  const keep = new Array<boolean>(n).fill(false);
  for (let k = 0; k < keepCount; k++) {
    const i = order[k]!;
    if (positiveCounts[i]! > 0) keep[i] = true;
  }
  return keep;
}
