/**
 * A tiny prepared dataset for the trainer tests: synthetic SIIM-like DICOMs (half of them positive)
 * prepared to 64 px PNGs with a folds file, as `synth` -> `prepare` -> `folds` would write it.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeFolds, writeFolds } from '../../src/data/folds.js';
import { readTrainLabels } from '../../src/data/labels.js';
import { prepare } from '../../src/data/prepare.js';
import { synthesize } from '../../src/data/synth/index.js';

export interface TrainFixture {
  root: string;
  /** The prepared folder (train/, mask/, folds.csv). */
  data: string;
}

/** Writes `images` synthetic images (half positive) prepared at `size` px with `k` folds. */
export async function makeTrainFixture(images = 16, size = 64, k = 4): Promise<TrainFixture> {
  const root = await mkdtemp(join(tmpdir(), 'pn-train-'));
  const siim = join(root, 'siim');
  await synthesize({ out: siim, train: images, test: 0, seed: 11, size: 128, positiveRate: 0.5, workers: 0 });
  const data = join(root, `png${size}`);
  await prepare({ trainDicom: join(siim, 'dicom-images-train'), labels: join(siim, 'train-rle.csv'), out: data, imgSize: size, workers: 0 });
  const labels = await readTrainLabels(join(siim, 'train-rle.csv'));
  await writeFolds(join(data, 'folds.csv'), makeFolds(labels, { k, seed: 42 }));
  return { root, data };
}
