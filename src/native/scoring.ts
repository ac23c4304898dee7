/**
 * The scoring slice of the N-API boundary: native/binding/scoring.cc over
 * native/inference/thresholds_api.h (the threshold search).
 */
import type { NativeModel } from './model.js';
import type { NativeTensor } from './tensor.js';

/** Per-map cumulative counts over threshold levels: `above[m * levels + k]` = #(p > level k). */
export interface NativeMapSummaries {
  levels: number;
  above: Int32Array;
  /** #(p > level k and truth); present when summarised with truth. */
  truthAbove?: Int32Array;
  truthArea?: Int32Array;
}

/** What `predictSummaries` returns: one batch's summaries (with truth) and the maps' size. */
export interface NativePredictedSummaries extends NativeMapSummaries {
  /** Maps: batch x classes. */
  count: number;
  height: number;
  width: number;
  truthAbove: Int32Array;
  truthArea: Int32Array;
}

/** The threshold-search exports. */
export interface ScoringBinding {
  /**
   * Summarises `count` maps of `pixels` each: uint8 maps over 256 levels (level k: v > k), float32
   * maps over the sorted distinct `thresholds`. `threads` <= 0 uses every core.
   */
  summariseMaps(maps: Uint8Array | Float32Array, count: number, pixels: number, truth: Uint8Array | null, thresholds: Float64Array | null, threads: number): Promise<NativeMapSummaries>;
  /** Scores triplets given as level indices: per triplet [mean, meanEmpty, meanNonEmpty, positives] (NaN for no images). */
  scoreTriplets(
    above: Int32Array,
    truthAbove: Int32Array,
    truthArea: Int32Array,
    count: number,
    levels: number,
    tops: Int32Array,
    areas: Float64Array,
    bottoms: Int32Array,
    scale: number,
  ): Promise<Float64Array>;
  /**
   * Validation in one crossing: modelPredict(model, images, tta), then the maps and the masks
   * (> 0.5) summarised over the sorted float32 `thresholds`, in one task on the compute thread.
   */
  predictSummaries(model: NativeModel, images: NativeTensor, masks: NativeTensor, tta: boolean, thresholds: Float64Array, threads: number): Promise<NativePredictedSummaries>;
}
