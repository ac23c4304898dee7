/**
 * The threshold search over stored maps (what `pneumo-native thresholds` runs): streams map files
 * chunk by chunk, summarises each chunk natively once against the truth, and scores a triplet
 * grid from the summaries (src/inference/thresholds.ts). Truth RLE is decoded at `truthSize` (SIIM:
 * 1024) and, when the maps are smaller, resized bilinearly to the maps' size and binarised at 0.5
 * (as `prepare` makes training masks). Triplet areas are counted at `areaSize`.
 */
import { assertInteger, invalidParameterError } from '../core/validate.js';
import { decodeUnion } from '../data/rle.js';
import type { Triplet } from '../training/config.js';
import { MapReader } from './maps.js';
import { resizeMask } from './resize.js';
import { bestTriplet, defaultGrid, scoreTriplets, summariseMaps } from './thresholds.js';
import type { MapSummaries, TripletScore } from './thresholds.js';

export interface ThresholdSearchOptions {
  /** Triplets to score (default `defaultGrid()`: the SPEC's 8 then a finer grid). */
  grid?: readonly Triplet[];
  /** The side triplet areas refer to (default 1024). */
  areaSize?: number;
  /** The side truth RLE refers to (default 1024). */
  truthSize?: number;
  /** Maps read and summarised per native call (default 32). */
  chunk?: number;
  /** Called after each chunk with maps done and the total. */
  onProgress?: (done: number, total: number) => void;
}

export interface ThresholdSearchResult {
  /** The map files searched, with their map count. */
  maps: { path: string; count: number }[];
  height: number;
  width: number;
  images: number;
  emptyImages: number;
  nonEmptyImages: number;
  /** The score of predicting every image empty. */
  emptyBaseline: number;
  areaSize: number;
  /** One score per grid triplet, in grid order. */
  scores: TripletScore[];
  best: TripletScore;
}

/**
 * Scores `grid` on the maps of `mapPaths` (several files, e.g. one per fold's out-of-fold maps,
 * must share size and dtype and hold distinct ids) against `truth` (`id -> RLE rows`, as
 * `labels.readTrainLabels` returns). Every map id must be in the truth.
 */
export async function searchThresholds(
  mapPaths: readonly string[],
  truth: ReadonlyMap<string, readonly string[]>,
  options: ThresholdSearchOptions = {},
): Promise<ThresholdSearchResult> {
  if (!Array.isArray(mapPaths) || mapPaths.length === 0) throw invalidParameterError('mapPaths', 'at least one map file', mapPaths);
  const grid = options.grid ?? defaultGrid();
  const areaSize = options.areaSize ?? 1024;
  const truthSize = options.truthSize ?? 1024;
  const chunk = options.chunk ?? 32;
  assertInteger('truthSize', truthSize, 1, 1 << 15);
  assertInteger('chunk', chunk, 1, 4096);
  const readers: MapReader[] = [];
  try {
    for (const path of mapPaths) readers.push(await MapReader.open(path));
    const first = readers[0]!;
    const seen = new Map<string, string>();
    for (const r of readers) {
      if (r.height !== first.height || r.width !== first.width || r.dtype !== first.dtype) {
        throw new Error(`${r.path} holds ${r.height}x${r.width} ${r.dtype} maps but ${first.path} holds ${first.height}x${first.width} ${first.dtype}: blend or re-infer them to one size and dtype first`);
      }
      for (const id of r.ids) {
        const other = seen.get(id);
        if (other !== undefined) throw new Error(`image ${id} is in both ${other} and ${r.path}: the map files must hold distinct images`);
        seen.set(id, r.path);
      }
    }
    const missing = [...seen.keys()].filter((id) => !truth.has(id));
    if (missing.length > 0) {
      throw new Error(`${missing.length} map image(s) have no truth: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
    }
    const { height, width } = first;
    const pixels = height * width;
    // Float16 maps are compared at exactly the grid's thresholds.
    const thresholds = first.dtype === 'float16' ? [...new Set(grid.flatMap((t) => [t[0], t[2]]))] : undefined;
    const total = seen.size;
    let done = 0;
    const parts: MapSummaries[] = [];
    for (const r of readers) {
      for (let start = 0; start < r.count; start += chunk) {
        const n = Math.min(chunk, r.count - start);
        const maps = await r.readForSearch(start, n);
        const masks = new Uint8Array(n * pixels);
        for (let k = 0; k < n; k++) {
          const id = r.ids[start + k]!;
          const full = decodeUnion(truth.get(id)!, truthSize, truthSize, id);
          masks.set(resizeMask(full, truthSize, truthSize, height, width), k * pixels);
        }
        const part = await summariseMaps(maps, height, width, { truth: masks, thresholds });
        parts.push(part);
        done += n;
        options.onProgress?.(done, total);
      }
    }
    // One concatenation at the end (not one per chunk, which would copy quadratically).
    const summaries = parts[0]!.concat(...parts.slice(1));
    const scores = await scoreTriplets(summaries, grid, { areaSize });
    const best = bestTriplet(scores);
    const emptyImages = best.empty.count;
    return {
      maps: readers.map((r) => ({ path: r.path, count: r.count })),
      height,
      width,
      images: total,
      emptyImages,
      nonEmptyImages: best.nonEmpty.count,
      emptyBaseline: total === 0 ? 0 : emptyImages / total,
      areaSize,
      scores,
      best,
    };
  } finally {
    await Promise.all(readers.map((r) => r.close()));
  }
}
