/**
 * The inference chain end to end through the compiled CLI, on a small synthetic dataset and an
 * untrained tiny model: synth -> infer (out-of-fold and test, flip TTA, straight from DICOMs) ->
 * thresholds -> blend -> submit (scored against the test truth) -> score; swa on the side.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Model } from '../../src/models/model.js';
import { parseJson, runCli } from '../helpers/cli.js';

const dir = await mkdtemp(join(tmpdir(), 'pn-infer-chain-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('synth -> infer -> thresholds -> blend -> submit', () => {
  it('runs the inference chain and scores the submission', async () => {
    const data = join(dir, 'data');
    const synth = await runCli(['synth', '--out', data, '--train', '6', '--test', '5', '--seed', '3', '--size', '256', '--positive-rate', '0.5', '--workers', '2', '--json']);
    expect(synth.code, synth.stderr).toBe(0);
    const ckpt = [join(dir, 'a.ckpt'), join(dir, 'b.ckpt')];
    for (const [k, path] of ckpt.entries()) {
      const model = await Model.create({ backbone: 'tiny_unet_r18', seed: k + 1 });
      await model.save(path, { metadata: { imgSize: 64, epoch: k } });
      model.dispose();
    }
    const oof = join(dir, 'oof.pnm');
    const infer = await runCli(['infer', '--model', ckpt[0]!, '--model', `${ckpt[1]!}:3`, '--images', join(data, 'dicom-images-train'), '--tta', '--out', oof, '--json', '--quiet']);
    expect(infer.code, infer.stderr).toBe(0);
    expect(parseJson(infer)).toMatchObject({ images: 6, predicted: 6, size: 64, tta: true });
    const again = await runCli(['infer', '--model', ckpt[0]!, '--model', `${ckpt[1]!}:3`, '--images', join(data, 'dicom-images-train'), '--tta', '--out', oof, '--json', '--quiet']);
    expect(parseJson(again)).toMatchObject({ images: 6, predicted: 0 });

    const thr = join(dir, 'thr.json');
    const search = await runCli(['thresholds', '--maps', oof, '--truth', join(data, 'train-rle.csv'), '--truth-size', '256', '--grid', 'spec', '--out', thr, '--json', '--quiet']);
    expect(search.code, search.stderr).toBe(0);
    expect(parseJson<{ images: number; scores: unknown[] }>(search)).toMatchObject({ images: 6 });

    const test = join(dir, 'test.pnm');
    const t = await runCli(['infer', '--model', ckpt[0]!, '--images', join(data, 'dicom-images-test'), '--dtype', 'float16', '--out', test, '--quiet']);
    expect(t.code, t.stderr).toBe(0);
    const blended = join(dir, 'blended.pnm');
    const blend = await runCli(['blend', '--maps', `${test}:0.5`, '--maps', `${test}:0.5`, '--size', '128', '--out', blended, '--json', '--quiet']);
    expect(blend.code, blend.stderr).toBe(0);
    expect(parseJson(blend)).toMatchObject({ images: 5, size: 128 });

    const submission = join(dir, 'submission.csv');
    const sub = await runCli([
      'submit', '--maps', blended, '--sample', join(data, 'stage_2_sample_submission.csv'), '--thresholds', thr, '--min-area', '100',
      '--size', '256', '--truth', join(data, 'test-rle.csv'), '--out', submission, '--json', '--quiet',
    ]);
    expect(sub.code, sub.stderr).toBe(0);
    const result = parseJson<{ images: number; score: { images: number; meanDice: number; emptyBaseline: number } }>(sub);
    expect(result.images).toBe(5);
    expect(result.score.images).toBe(5);
    const sample = (await readFile(join(data, 'stage_2_sample_submission.csv'), 'utf8')).trim().split('\n').map((l) => l.split(',')[0]);
    const written = (await readFile(submission, 'utf8')).trim().split('\n').map((l) => l.split(',')[0]);
    expect(written).toEqual(sample);
    const score = await runCli(['score', '--truth', join(data, 'test-rle.csv'), '--pred', submission, '--size', '256', '--json']);
    expect(parseJson<{ meanDice: number }>(score).meanDice).toBeCloseTo(result.score.meanDice, 12);

    const swa = await runCli(['swa', '--checkpoints', ...ckpt, '--weights', '1,3', '--data', join(data, 'dicom-images-train'), '--batch-size', '3', '--out', join(dir, 'swa.ckpt'), '--json', '--quiet']);
    expect(swa.code, swa.stderr).toBe(0);
    expect(parseJson(swa)).toMatchObject({ bnImages: 6, bnBatches: 2, size: 64 });
  }, 300_000);
});
