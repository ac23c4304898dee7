/**
 * The threshold search over stored maps (what `pneumo-native thresholds` runs): streams map files
 * chunk by chunk, summarises each chunk natively once against the truth, and scores a triplet
 * grid from the summaries (src/scoring/thresholds.ts). Truth RLE is decoded at `truthSize` (SIIM:
 * 1024) and, when the maps are smaller, resized bilinearly to the maps' size and binarised at 0.5
 * (as `prepare` makes training masks). Triplet areas are counted at `areaSize`.
 */
import { assertInteger, invalidParameterError } from '../core/validate.js';
import { decodeUnion } from '../data/rle.js';
import { resizeMask } from '../scoring/resize.js';
import { bestTriplet, defaultGrid, scoreTriplets, summariseMaps } from '../scoring/thresholds.js';
import type { MapSummaries, TripletScore } from '../scoring/thresholds.js';
import type { Triplet } from '../scoring/triplet.js';
import { openMapSet } from './blend.js';
import type { BlendInput } from './blend.js';
import { MapReader } from './maps.js';

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
  /** The map files searched, with their map count and weight. */
  maps: { path: string; count: number; weight: number }[];
  /** How the files were read: one file, files over distinct images, or blended files over the same images. */
  mode: 'single' | 'union' | 'blend';
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
 * Scores `grid` on the maps of `mapPaths` against `truth` (`id -> RLE rows`, as
 * `labels.readTrainLabels` returns). Several files over distinct images (e.g. one per fold's
 * out-of-fold maps) are joined and must share size and dtype; several files over the same images
 * (pipelines) are blended on the fly with their weights (`{ path, weight }`). Every map id must be
 * in the truth.
 */
export async function searchThresholds(
  mapPaths: readonly (string | BlendInput)[],
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
  // Files over the same images are blended on the fly (float maps); otherwise each file's chunks
  // are read as stored (uint8 maps are summarised over all 256 levels).
  const set = await openMapSet(mapPaths);
  const readers: MapReader[] = [];
  try {
    const missing = set.ids.filter((id) => !truth.has(id));
    if (missing.length > 0) {
      throw new Error(`${missing.length} map image(s) have no truth: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
    }
    const { height, width } = set;
    const pixels = height * width;
    const gridThresholds = [...new Set(grid.flatMap((t) => [t[0], t[2]]))];
    const total = set.ids.length;
    let done = 0;
    const parts: MapSummaries[] = [];
    const summarise = async (ids: readonly string[], maps: Uint8Array | Float32Array) => {
      const masks = new Uint8Array(ids.length * pixels);
      ids.forEach((id, k) => {
        const full = decodeUnion(truth.get(id)!, truthSize, truthSize, id);
        masks.set(resizeMask(full, truthSize, truthSize, height, width), k * pixels);
      });
      // Float maps are compared at exactly the grid's thresholds.
      parts.push(await summariseMaps(maps, height, width, { truth: masks, thresholds: maps instanceof Float32Array ? gridThresholds : undefined }));
      done += ids.length;
      options.onProgress?.(done, total);
    };
    if (set.mode === 'blend') {
      for (let start = 0; start < total; start += chunk) {
        const ids = set.ids.slice(start, start + chunk);
        const maps = new Float32Array(ids.length * pixels);
        for (let k = 0; k < ids.length; k++) maps.set(await set.read(ids[k]!), k * pixels);
        await summarise(ids, maps);
      }
    } else {
      for (const input of mapPaths) readers.push(await MapReader.open(typeof input === 'string' ? input : input.path));
      const dtype = readers[0]!.dtype;
      for (const r of readers) {
        if (r.dtype !== dtype) throw new Error(`${r.path} holds ${r.dtype} maps but ${readers[0]!.path} holds ${dtype}: blend or re-infer them to one dtype first`);
        for (let start = 0; start < r.count; start += chunk) {
          const n = Math.min(chunk, r.count - start);
          await summarise(r.ids.slice(start, start + n), await r.readForSearch(start, n));
        }
      }
    }
    // One concatenation at the end (not one per chunk, which would copy quadratically).
    const summaries = parts[0]!.concat(...parts.slice(1));
    const scores = await scoreTriplets(summaries, grid, { areaSize });
    const best = bestTriplet(scores);
    const emptyImages = best.empty.count;
    return {
      maps: set.paths.map((path, k) => ({ path, count: set.mode === 'union' ? readers[k]!.count : set.ids.length, weight: set.weights[k]! })),
      mode: set.mode,
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
    await Promise.all([set.close(), ...readers.map((r) => r.close())]);
  }
}
