/**
 * The data chain end to end through the compiled CLI: synth -> prepare -> folds -> score, as a
 * user would run it on the SIIM data.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFolds } from '../../src/data/folds.js';
import { readTrainLabels, writeSubmission } from '../../src/data/labels.js';
import { decodeUnion, encode } from '../../src/data/rle.js';
import { parseJson, runCli } from '../helpers/cli.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pn-chain-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Score {
  meanDice: number;
  images: number;
  empty: { count: number; meanDice: number | null };
  nonEmpty: { count: number; meanDice: number | null };
}

describe('synth -> prepare -> folds -> score', () => {
  it('runs the whole data chain on a small synthetic dataset', async () => {
    const data = join(dir, 'siim');
    const synth = await runCli(['synth', '--out', data, '--train', '10', '--test', '5', '--seed', '7', '--size', '256', '--positive-rate', '0.4', '--workers', '2', '--json']);
    expect(synth.code, synth.stderr).toBe(0);

    const prepared = join(dir, 'png128');
    const prepare = await runCli([
      'prepare',
      '--train-dicom',
      join(data, 'dicom-images-train'),
      '--test-dicom',
      join(data, 'dicom-images-test'),
      '--labels',
      join(data, 'train-rle.csv'),
      '--out',
      prepared,
      '--img-size',
      '128',
      '--workers',
      '2',
      '--json',
    ]);
    expect(prepare.code, prepare.stderr).toBe(0);
    const labels = await readTrainLabels(join(data, 'train-rle.csv'));
    expect(labels.size).toBe(10);
    for (const [id, rows] of labels) {
      expect(existsSync(join(prepared, 'train', `${id}.png`))).toBe(true);
      const mask = await sharp(join(prepared, 'mask', `${id}.png`)).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
      expect(mask.info.width).toBe(128);
      const positive = mask.data.some((v) => v > 127);
      expect(positive, id).toBe(rows.length > 0);
    }

    const foldsFile = join(dir, 'folds.csv');
    const folds = await runCli(['folds', '--labels', join(data, 'train-rle.csv'), '--k', '3', '--seed', '42', '--out', foldsFile, '--json']);
    expect(folds.code, folds.stderr).toBe(0);
    const rows = await readFolds(foldsFile);
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(labels.keys()));
    for (const row of rows) expect(existsSync(join(prepared, 'train', row.fname))).toBe(true);
    expect(rows.filter((r) => r.existLabels === 1)).toHaveLength(4);

    // The sample submission predicts no pneumothorax anywhere: full marks on the empty images only.
    const truth = join(data, 'test-rle.csv');
    const allEmpty = await runCli(['score', '--truth', truth, '--pred', join(data, 'stage_2_sample_submission.csv'), '--size', '256', '--json']);
    expect(allEmpty.code, allEmpty.stderr).toBe(0);
    const empty = parseJson<Score>(allEmpty);
    expect(empty.images).toBe(5);
    expect(empty.nonEmpty).toEqual({ count: 2, meanDice: 0 });
    expect(empty.empty).toEqual({ count: 3, meanDice: 1 });
    expect(empty.meanDice).toBeCloseTo(0.6, 12);

    // The truth itself, written as a submission (one row per image, regions unioned), scores 1.
    const perfect = join(dir, 'perfect.csv');
    const testLabels = await readTrainLabels(truth);
    const rows2 = [...testLabels].map(([id, regions]) => ({ id, rle: regions.length === 0 ? '-1' : encode(decodeUnion(regions, 256, 256, id), 256, 256) }));
    expect(await writeSubmission(perfect, rows2)).toBe(5);
    const best = await runCli(['score', '--truth', truth, '--pred', perfect, '--size', '256', '--json']);
    expect(best.code, best.stderr).toBe(0);
    expect(parseJson<Score>(best)).toMatchObject({ meanDice: 1, images: 5, nonEmpty: { count: 2, meanDice: 1 } });
  });
});
