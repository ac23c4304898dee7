/**
 * Validation of a fold: predict every validation image (`Model.predict`, optionally with flip TTA)
 * and score the probability maps against the masks.
 *
 * Segmentation: each batch crosses the native boundary once (`predictBatchSummaries`): predict,
 * the truth thresholded, and each map summarised natively (pixels above every threshold level and
 * those inside the truth); every triplet of `config.validation.triplets` is scored from the
 * summaries (src/inference); the epoch's score is the best triplet's mean per-image Dice. Also
 * reported: the Dice on positive and on empty images at that triplet, and the all-empty baseline
 * (the share of empty images: what predicting nothing scores).
 *
 * Classification: ROC AUC of the label probability (the score) and accuracy at 0.5.
 */
import { ensureRuntime } from '../core/runtime.js';
import type { Tensor } from '../core/tensor.js';
import type { Model } from '../models/model.js';
import { bestTriplet, scoreTriplets } from '../scoring/thresholds.js';
import { MapSummaries } from '../scoring/thresholds.js';
import { shardRange } from '../distributed/index.js';
import type { Triplet } from '../scoring/triplet.js';
import type { ExperimentConfig } from './config.js';
import type { BatchLoader } from './loader.js';
import type { ValidationRecord } from './run-files.js';

/** ROC AUC of scores against 0/1 labels (ties count one half); NaN with a single class. */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const order = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let pos = 0;
  let neg = 0;
  let rankSum = 0;
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) {
      if (labels[order[k]!]! > 0) {
        pos++;
        rankSum += rank;
      } else {
        neg++;
      }
    }
    i = j + 1;
  }
  if (pos === 0 || neg === 0) return NaN;
  return (rankSum - (pos * (pos + 1)) / 2) / (pos * neg);
}

/**
 * Validation sharded over the ranks of a data-parallel run: rank r predicts its contiguous range of
 * the images, and `gather` (c10d all_gather) returns every rank's serialised results in rank order,
 * so that every rank scores all the images and reaches the same record.
 */
export interface ValidationShard {
  rank: number;
  worldSize: number;
  gather(bytes: Uint8Array): Promise<Uint8Array[]>;
}

function int32Bytes(parts: (Int32Array | Float64Array)[]): Uint8Array {
  const total = parts.reduce((a, p) => a + 4 + p.byteLength, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let o = 0;
  for (const p of parts) {
    view.setInt32(o, p.byteLength, true);
    o += 4;
    out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), o);
    o += p.byteLength;
  }
  return out;
}

function bytesParts(bytes: Uint8Array): Uint8Array[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Uint8Array[] = [];
  for (let o = 0; o < bytes.byteLength; ) {
    const len = view.getInt32(o, true);
    out.push(bytes.slice(o + 4, o + 4 + len));
    o += 4 + len;
  }
  return out;
}

/**
 * One batch of segmentation validation in one native call: prediction (sigmoid, flip TTA with
 * `tta`), the masks thresholded at 0.5 and every map summarised over `thresholds` (sorted and
 * distinct in float32), in C++ on the compute thread; neither maps nor masks enter JS. Equals
 * `summariseMaps(predict(images).mask data, h, w, { truth: masks > 0.5, thresholds })`.
 */
export async function predictBatchSummaries(model: Model, images: Tensor, masks: Tensor, tta: boolean, thresholds: readonly number[]): Promise<MapSummaries> {
  const s = await ensureRuntime().predictSummaries(model.native, images.native, masks.native, tta, Float64Array.from(thresholds), 0);
  return new MapSummaries(s.height, s.width, 'float32', thresholds, s.count, s.above, s.truthAbove, s.truthArea);
}

/** Predicts and scores every image of `loader` (the validation samples, in order); with `shard`, this rank's share, gathered. */
export async function validate(model: Model, loader: BatchLoader, config: ExperimentConfig, shard?: ValidationShard): Promise<ValidationRecord> {
  const started = performance.now();
  const n = loader.samples.length;
  const positives = loader.samples.filter((s) => s.positive).length;
  const range = shard ? shardRange(n, shard.rank, shard.worldSize) : { start: 0, end: n };
  const indices = Int32Array.from({ length: range.end - range.start }, (_, i) => range.start + i);
  const tta = config.validation.tta;
  {
    if (config.task === 'classify') {
      const probs: number[] = [];
      const labels: number[] = [];
      for await (const batch of loader.epoch(indices, 0)) {
        try {
          const out = await model.predict(batch.images, { tta });
          out.mask.dispose();
          if (!out.label) throw new Error(`${model.describe()} has no classification head: task classify needs one`);
          probs.push(...out.label.takeData('float32'));
          labels.push(...(await batch.labels.data('float32')));
        } finally {
          batch.dispose();
        }
      }
      if (shard) {
        const all = await shard.gather(int32Bytes([Float64Array.from(probs), Float64Array.from(labels)]));
        probs.length = 0;
        labels.length = 0;
        for (const bytes of all) {
          const [p, l] = bytesParts(bytes).map((b) => new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8));
          probs.push(...p!);
          labels.push(...l!);
        }
      }
      const correct = probs.reduce((a, p, i) => a + ((p >= 0.5 ? 1 : 0) === labels[i] ? 1 : 0), 0);
      return {
        score: rocAuc(probs, labels),
        triplet: null,
        tripletScores: [],
        dicePositive: null,
        diceEmpty: null,
        emptyBaseline: (n - positives) / n,
        images: n,
        positives,
        accuracy: correct / n,
        seconds: (performance.now() - started) / 1000,
      };
    }
    const triplets = config.validation.triplets;
    // Float maps are summarised over exactly the grid's thresholds (compared in float32, sorted).
    const thresholds = [...new Set(triplets.flatMap((t) => [Math.fround(t[0]), Math.fround(t[2])]))].sort((a, b) => a - b);
    let summaries: MapSummaries | undefined;
    for await (const batch of loader.epoch(indices, 0)) {
      try {
        const part = await predictBatchSummaries(model, batch.images, batch.masks, tta, thresholds);
        summaries = summaries ? summaries.concat(part) : part;
      } finally {
        batch.dispose();
      }
    }
    if (shard) {
      // Every rank's summaries, in rank order (the images' order); a rank without images sends none.
      const mine = summaries ? int32Bytes([Int32Array.of(summaries.count, summaries.height, summaries.width), summaries.above, summaries.truthAbove!, summaries.truthArea!]) : new Uint8Array(0);
      const parts: MapSummaries[] = [];
      for (const bytes of await shard.gather(mine)) {
        if (bytes.byteLength === 0) continue;
        const [head, above, truthAbove, truthArea] = bytesParts(bytes).map((b) => new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4));
        parts.push(new MapSummaries(head![1]!, head![2]!, 'float32', thresholds, head![0]!, above!, truthAbove!, truthArea!));
      }
      summaries = parts[0]!.concat(...parts.slice(1));
    }
    const scores = await scoreTriplets(summaries!, triplets, { areaSize: config.validation.areaSize });
    const best = bestTriplet(scores);
    return {
      score: best.meanDice ?? 0,
      triplet: [...best.triplet] as Triplet,
      tripletScores: scores.map((s) => s.meanDice ?? 0),
      dicePositive: best.nonEmpty.meanDice,
      diceEmpty: best.empty.meanDice,
      emptyBaseline: (n - positives) / n,
      images: n,
      positives,
      seconds: (performance.now() - started) / 1000,
    };
  }
}

