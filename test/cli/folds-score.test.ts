import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseJson, runCli } from '../helpers/cli.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pn-cli-fs-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

const TRAIN = ['ImageId, EncodedPixels', 'e1, -1', 'p1, 0 2', 'e2, -1', 'p1, 2 2', 'p2, 8 4', 'e3, -1', 'e4, -1', 'p3, 1 1'].join('\n');

describe('pneumo-native folds', () => {
  it('writes stratified folds and reports the counts', async () => {
    const labels = await file('train-rle.csv', `${TRAIN}\n`);
    const out = join(dir, 'folds.csv');
    const result = await runCli(['folds', '--labels', labels, '--k', '3', '--seed', '7', '--out', out, '--json']);
    expect(result.code, result.stderr).toBe(0);
    const report = parseJson<{ images: number; positive: number; folds: { fold: number; positive: number; negative: number }[] }>(result);
    expect(report.images).toBe(7);
    expect(report.positive).toBe(3);
    expect(report.folds.map((f) => f.positive)).toEqual([1, 1, 1]);
    const text = await readFile(out, 'utf8');
    expect(text.split('\n')[0]).toBe('fname,fold,exist_labels');
    expect(text).toMatch(/^p1\.png,\d,1$/m);
    const again = join(dir, 'folds2.csv');
    await runCli(['folds', '--labels', labels, '--k', '3', '--seed', '7', '--out', again]);
    expect(await readFile(again, 'utf8')).toBe(text);
  });

  it('adds an always-train fold from a sample submission or an id list', async () => {
    const labels = await file('train2.csv', `${TRAIN}\n`);
    const sample = await file('sample.csv', 'ImageId,EncodedPixels\ne4,-1\np3,-1\n');
    const out = join(dir, 'folds-s2.csv');
    const result = await runCli(['folds', '--labels', labels, '--k', '2', '--out', out, '--always-train', sample]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/stage_2 \(always train\)\s+2\s+1\s+1/);
    const text = await readFile(out, 'utf8');
    expect(text.trimEnd().split('\n').slice(-2)).toEqual(['e4.png,stage_2,0', 'p3.png,stage_2,1']);
    const byIds = await runCli(['folds', '--labels', labels, '--k', '2', '--out', join(dir, 'f3.csv'), '--always-train', 'e4,p3']);
    expect(byIds.code, byIds.stderr).toBe(0);
    expect(await readFile(join(dir, 'f3.csv'), 'utf8')).toBe(text);
    const unknown = await runCli(['folds', '--labels', labels, '--out', join(dir, 'f4.csv'), '--always-train', 'nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/--always-train: 1 id\(s\) not in --labels .*: nope/);
  });

  it('fails clearly on a bad labels file and a bad k', async () => {
    const bad = await file('bad.csv', 'Id,Pixels\na,-1\n');
    const result = await runCli(['folds', '--labels', bad, '--out', join(dir, 'x.csv')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/bad\.csv:1: bad header "Id,Pixels"/);
    const k = await runCli(['folds', '--labels', bad, '--out', join(dir, 'x.csv'), '--k', '1']);
    expect(k.code).toBe(2);
    expect(k.stderr).toMatch(/--k must be an integer >= 2/);
  });
});

describe('pneumo-native score', () => {
  it('prints mean Dice with the empty / non-empty split (hand-computed)', async () => {
    const truth = await file('truth.csv', `${TRAIN}\n`);
    // e1 1, e2 0, e3 1, e4 1 | p1 [0,4) vs [2,6) 0.5, p2 0, p3 1
    const pred = await file('pred.csv', 'ImageId,EncodedPixels\ne1,-1\ne2,3 1\ne3,-1\ne4,-1\np1,2 4\np2,-1\np3,1 1\n');
    const json = await runCli(['score', '--truth', truth, '--pred', pred, '--size', '4', '--json']);
    expect(json.code, json.stderr).toBe(0);
    expect(parseJson(json)).toEqual({
      meanDice: 4.5 / 7,
      images: 7,
      empty: { count: 4, meanDice: 0.75 },
      nonEmpty: { count: 3, meanDice: 0.5 },
      missing: [],
      extra: [],
    });
    const text = await runCli(['score', '--truth', truth, '--pred', pred, '--size', '4']);
    expect(text.stdout).toMatch(/^Mean Dice 0\.6429 over 7 images/);
    expect(text.stdout).toMatch(/^empty\s+4\s+0\.7500$/m);
    expect(text.stdout).toMatch(/^non-empty\s+3\s+0\.5000$/m);
  });

  it('exits 1 listing missing and extra ids, still printing the score of the common ids', async () => {
    const truth = await file('truth2.csv', `${TRAIN}\n`);
    const pred = await file('pred2.csv', 'ImageId,EncodedPixels\ne1,-1\np1,0 4\nzz,-1\n');
    const result = await runCli(['score', '--truth', truth, '--pred', pred, '--size', '4', '--json']);
    expect(result.code).toBe(1);
    const report = parseJson<{ meanDice: number; images: number; missing: string[]; extra: string[] }>(result);
    expect(report.images).toBe(2);
    expect(report.meanDice).toBe(1);
    expect(report.missing).toEqual(['e2', 'p2', 'e3', 'e4', 'p3']);
    expect(report.extra).toEqual(['zz']);
    expect(result.stderr).toMatch(/pred2\.csv is missing 5 image\(s\) of .*truth2\.csv:\n  e2\n  p2/);
    expect(result.stderr).toMatch(/pred2\.csv has 1 image\(s\) not in .*truth2\.csv:\n  zz/);
  });

  it('names the file and image of malformed RLE', async () => {
    const truth = await file('truth3.csv', `${TRAIN}\n`);
    const pred = await file('pred3.csv', 'ImageId,EncodedPixels\ne1,1 2 3\n');
    const result = await runCli(['score', '--truth', truth, '--pred', pred, '--size', '4']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/pred3\.csv: RLE of image e1: odd number of values \(3\)/);
  });
});
