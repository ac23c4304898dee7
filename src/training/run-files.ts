/**
 * The files a training run writes in its folder `<output.dir>/<name>/part<part>/fold<k>/`:
 *
 * - `last.ckpt`: the state after the latest epoch (weights, optimizer, trainer state), for resume;
 * - `epoch<NNN>.ckpt`: the top-K validated epochs; `best.ckpt`: a copy of the best one;
 * - `summary.csv`: one row per validated epoch (epoch, score, the best triplet, Dice on positive
 *   images, the all-empty baseline), as the first place's summary;
 * - `metrics.jsonl`: one JSON object per epoch (every figure, validated or not);
 * - `train.log`: the text log; `curves.png`: loss and scores by epoch.
 *
 * `summary.csv` and `metrics.jsonl` are rewritten whole from the run's history after every epoch
 * (atomically), so that a run resumed after `kill -9` never holds rows of an epoch it redoes.
 */
import { appendFile, rm } from 'node:fs/promises';
import { copyFileAtomic, makeDir, writeFileAtomic } from '../core/atomic-write.js';
import { join } from 'node:path';
import type { Triplet } from '../scoring/triplet.js';

/** What one epoch did; the trainer's history and the JSONL lines. */
export interface EpochRecord {
  /** 0-based epoch. */
  epoch: number;
  /** Mean training loss over the epoch's steps. */
  loss: number;
  /** Learning rate of the first parameter group at the epoch's last step. */
  lr: number;
  /** Encoder learning rate when it differs (separate groups), else null. */
  encoderLr: number | null;
  encoderFrozen: boolean;
  /** Training images seen. */
  images: number;
  steps: number;
  /** Sample rate p of the epoch (sample-rate sampler), else null. */
  sampleRate: number | null;
  /** Mean global gradient norm before clipping. */
  gradNorm: number;
  seconds: number;
  imagesPerSecond: number;
  /** Fraction of the epoch's training time spent waiting for data. */
  dataWait: number;
  /** Validation (null on epochs that were not validated). */
  validation: ValidationRecord | null;
}

/** One validation: the score is the best mean per-image Dice over the triplet grid. */
export interface ValidationRecord {
  /** Mean per-image Dice of the best triplet (segmentation), or ROC AUC (classifier). */
  score: number;
  /** The triplet that gave the score (segmentation). */
  triplet: Triplet | null;
  /** Mean Dice of every triplet of the grid, in grid order. */
  tripletScores: number[];
  /** Mean Dice over the images with a pneumothorax, at the best triplet. */
  dicePositive: number | null;
  /** Mean Dice over the empty images, at the best triplet. */
  diceEmpty: number | null;
  /** The score an all-empty prediction gets on this validation set (its share of empty images). */
  emptyBaseline: number;
  images: number;
  positives: number;
  /** Classifier: accuracy at probability 0.5. */
  accuracy?: number;
  seconds: number;
  /** Validation loss is not computed: the score is what checkpoints are chosen by. */
}

export const SUMMARY_HEADER = 'epoch,score,top,area,bottom,dice_positive,dice_empty,empty_baseline,loss,lr';

function fixed(x: number | null | undefined, digits = 6): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '' : Number(x.toFixed(digits)).toString();
}

/** summary.csv: one row per validated epoch. */
export function formatSummary(history: readonly EpochRecord[]): string {
  const rows = [SUMMARY_HEADER];
  for (const r of history) {
    const v = r.validation;
    if (!v) continue;
    const [top, area, bottom] = v.triplet ?? [null, null, null];
    rows.push([r.epoch, fixed(v.score), fixed(top), fixed(area, 0), fixed(bottom), fixed(v.dicePositive), fixed(v.diceEmpty), fixed(v.emptyBaseline), fixed(r.loss), r.lr.toExponential(4)].join(','));
  }
  return `${rows.join('\n')}\n`;
}

/** metrics.jsonl: one object per epoch. */
export function formatMetrics(history: readonly EpochRecord[]): string {
  return history.map((r) => JSON.stringify(r)).join('\n') + (history.length > 0 ? '\n' : '');
}

/** Writes `text` to `path` atomically (`core/atomic-write`: complete, flushed, renamed over it). */
export async function writeAtomic(path: string, text: string | Uint8Array): Promise<void> {
  await writeFileAtomic(path, text);
}

/** Copies atomically (`core/atomic-write`). */
export async function copyAtomic(from: string, to: string): Promise<void> {
  await copyFileAtomic(from, to);
}

/** The paths of one fold's run folder. */
export class RunFiles {
  constructor(readonly dir: string) {}

  get last(): string {
    return join(this.dir, 'last.ckpt');
  }

  get best(): string {
    return join(this.dir, 'best.ckpt');
  }

  get summary(): string {
    return join(this.dir, 'summary.csv');
  }

  get metrics(): string {
    return join(this.dir, 'metrics.jsonl');
  }

  get log(): string {
    return join(this.dir, 'train.log');
  }

  get curves(): string {
    return join(this.dir, 'curves.png');
  }

  get config(): string {
    return join(this.dir, 'config.json');
  }

  epochCheckpoint(epoch: number): string {
    return join(this.dir, `epoch${String(epoch).padStart(3, '0')}.ckpt`);
  }

  /** Creates the folder; a read-only or full file system is a FileWriteError naming it. */
  async create(): Promise<void> {
    await makeDir(this.dir);
  }

  /** Appends a timestamped line to train.log. */
  async appendLog(message: string): Promise<void> {
    await appendFile(this.log, `${new Date().toISOString()} ${message}\n`);
  }

  async writeHistory(history: readonly EpochRecord[]): Promise<void> {
    await writeAtomic(this.summary, formatSummary(history));
    await writeAtomic(this.metrics, formatMetrics(history));
  }

  async remove(path: string): Promise<void> {
    await rm(path, { force: true });
  }
}
