/**
 * Validation of a fold: predict every validation image (`Model.predict`, optionally with flip TTA)
 * and score the probability maps against the masks.
 *
 * Segmentation: each map is summarised natively once (pixels above every threshold level and
 * those inside the truth) and every triplet of `config.validation.triplets` is scored from the
 * summaries (src/inference); the epoch's score is the best triplet's mean per-image Dice. Also
 * reported: the Dice on positive and on empty images at that triplet, and the all-empty baseline
 * (the share of empty images: what predicting nothing scores).
 *
 * Classification: ROC AUC of the label probability (the score) and accuracy at 0.5.
 */
import type { Model } from '../models/model.js';
import { bestTriplet, scoreTriplets, summariseMaps } from '../inference/thresholds.js';
import type { MapSummaries } from '../inference/thresholds.js';
import type { ExperimentConfig, Triplet } from './config.js';
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

/** Predicts and scores every image of `loader` (the validation samples, in order). */
export async function validate(model: Model, loader: BatchLoader, config: ExperimentConfig): Promise<ValidationRecord> {
  const started = performance.now();
  const n = loader.samples.length;
  const positives = loader.samples.filter((s) => s.positive).length;
  const indices = Int32Array.from({ length: n }, (_, i) => i);
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
    // Float maps are summarised over exactly the grid's thresholds.
    const thresholds = [...new Set(triplets.flatMap((t) => [t[0], t[2]]))];
    let summaries: MapSummaries | undefined;
    for await (const batch of loader.epoch(indices, 0)) {
      try {
        const out = await model.predict(batch.images, { tta });
        out.label?.dispose();
        const [height, width] = out.mask.shape.slice(2) as [number, number];
        const maps = out.mask.takeData('float32');
        const truth = Uint8Array.from(await batch.masks.data('float32'), (v) => (v > 0.5 ? 1 : 0));
        const part = await summariseMaps(maps, height, width, { truth, thresholds });
        summaries = summaries ? summaries.concat(part) : part;
      } finally {
        batch.dispose();
      }
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

