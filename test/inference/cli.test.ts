import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { encode } from '../../src/data/rle.js';
import { MapWriter } from '../../src/inference/maps.js';
import { parseJson, runCli } from '../helpers/cli.js';

const dir = await mkdtemp(join(tmpdir(), 'pn-infer-cli-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

const S = 32; // map size
const T = 64; // truth size
const ids = Array.from({ length: 24 }, (_, i) => `1.2.276.0.7230010.3.1.4.${i}`);

/** Maps: a bump on noise at each truth disc (stronger on positives); truth RLE at 64. */
async function makeSet(): Promise<void> {
  const rng = new Random(7);
  const writer = await MapWriter.create(join(dir, 'oof.pnm'), { ids, height: S, width: S, producer: { test: true } });
  let csv = 'ImageId, EncodedPixels\n';
  for (let i = 0; i < ids.length; i++) {
    const positive = i % 3 === 0;
    const cy = 8 + rng.next() * 16;
    const cx = 8 + rng.next() * 16;
    const r = 3 + rng.next() * 4;
    const truth = new Uint8Array(T * T);
    for (let y = 0; y < T; y++) for (let x = 0; x < T; x++) if (positive && Math.hypot((y + 0.5) / 2 - cy, (x + 0.5) / 2 - cx) < r) truth[y * T + x] = 1;
    const map = new Float32Array(S * S);
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const d = Math.hypot(y + 0.5 - cy, x + 0.5 - cx) / r;
        map[y * S + x] = Math.min(1, (positive ? 0.95 : 0.5 * rng.next()) * Math.exp(-d * d * d * d) + 0.1 * rng.next());
      }
    }
    await writer.write(i, map);
    csv += `${ids[i]}, ${positive ? encode(truth, T, T) : '-1'}\n`;
  }
  await writer.close();
  await writeFile(join(dir, 'truth.csv'), csv);
}

beforeAll(makeSet);

describe('pneumo-native thresholds', () => {
  it('searches the grid, prints the best, writes JSON and a heatmap', async () => {
    const out = join(dir, 'thr.json');
    const heatmap = join(dir, 'thr.png');
    const r = await runCli(['thresholds', '--maps', join(dir, 'oof.pnm'), '--truth', join(dir, 'truth.csv'), '--truth-size', String(T), '--out', out, '--heatmap', heatmap, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = parseJson<{ images: number; nonEmptyImages: number; emptyBaseline: number; scores: unknown[]; best: { meanDice: number; triplet: number[] } }>(r);
    expect(report.images).toBe(24);
    expect(report.nonEmptyImages).toBe(8);
    expect(report.emptyBaseline).toBeCloseTo(16 / 24, 12);
    expect(report.scores.length).toBeGreaterThan(100);
    expect(report.best.meanDice).toBeGreaterThan(report.emptyBaseline + 0.1);
    expect(JSON.parse(await readFile(out, 'utf8')).best).toEqual(report.best);
    const png = await readFile(heatmap);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect((await stat(heatmap)).size).toBeGreaterThan(5000);
    // the same file twice over the same images: blended on the fly (float maps), same scores
    const twice = await runCli(['thresholds', '--maps', `${join(dir, 'oof.pnm')}:1`, '--maps', `${join(dir, 'oof.pnm')}:3`, '--truth', join(dir, 'truth.csv'), '--truth-size', String(T), '--grid', 'spec', '--json', '--quiet']);
    expect(twice.code, twice.stderr).toBe(0);
    const blended = parseJson<{ mode: string; scores: { meanDice: number }[] }>(twice);
    expect(blended.mode).toBe('blend');
    const spec = (report.scores as { triplet: number[]; meanDice: number }[]).slice(0, 8);
    blended.scores.forEach((s, i) => expect(s.meanDice).toBeCloseTo(spec[i]!.meanDice, 12));
    const text = await runCli(['thresholds', '--maps', join(dir, 'oof.pnm'), '--truth', join(dir, 'truth.csv'), '--truth-size', String(T), '--grid', 'spec', '--quiet']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/The first place's triplets:/);
    expect(text.stdout).toMatch(/Best: top [\d.]+, area \d+, bottom [\d.]+: mean Dice [\d.]+ .*all-empty baseline 0\.6667/);
  });

  it('takes a product grid and names bad input', async () => {
    const ok = await runCli(['thresholds', '--maps', join(dir, 'oof.pnm'), '--truth', join(dir, 'truth.csv'), '--truth-size', String(T), '--tops', '0.6,0.7', '--areas', '0,500', '--bottoms', '0.3', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(parseJson<{ scores: unknown[] }>(ok).scores).toHaveLength(4);
    const bad = await runCli(['thresholds', '--maps', join(dir, 'oof.pnm'), '--truth', join(dir, 'truth.csv'), '--tops', '0.6,x', '--areas', '0', '--bottoms', '0.3']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--tops: expected comma-separated numbers/);
    await writeFile(join(dir, 'short.csv'), `ImageId, EncodedPixels\n${ids[0]}, -1\n`);
    const missing = await runCli(['thresholds', '--maps', join(dir, 'oof.pnm'), '--truth', join(dir, 'short.csv')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/23 map image\(s\) have no truth: 1\.2\.276\.0\.7230010\.3\.1\.4\.1,/);
  });
});

describe('pneumo-native submit', () => {
  it('writes a scored submission from the best triplet of a search', async () => {
    const sample = join(dir, 'sample.csv');
    await writeFile(sample, `ImageId,EncodedPixels\n${[...ids].reverse().map((id) => `${id},-1`).join('\n')}\n`);
    const thr = join(dir, 'thr-sub.json');
    const search = await runCli(['thresholds', '--maps', join(dir, 'oof.pnm'), '--truth', join(dir, 'truth.csv'), '--truth-size', String(T), '--grid', 'spec', '--out', thr, '--quiet']);
    expect(search.code, search.stderr).toBe(0);
    const out = join(dir, 'submission.csv');
    const r = await runCli(['submit', '--maps', join(dir, 'oof.pnm'), '--sample', sample, '--out', out, '--thresholds', thr, '--min-area', '50', '--size', String(T), '--truth', join(dir, 'truth.csv'), '--json', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const result = parseJson<{ images: number; positives: number; score: { meanDice: number; emptyBaseline: number } }>(r);
    expect(result.images).toBe(24);
    expect(result.positives).toBeGreaterThan(0);
    expect(result.score.meanDice).toBeGreaterThan(result.score.emptyBaseline);
    const lines = (await readFile(out, 'utf8')).trim().split('\n');
    expect(lines[0]).toBe('ImageId,EncodedPixels');
    expect(lines.slice(1).map((l) => l.split(',')[0])).toEqual([...ids].reverse());
    // the same submission scored by `score` agrees
    const scored = await runCli(['score', '--truth', join(dir, 'truth.csv'), '--pred', out, '--size', String(T), '--json']);
    expect(parseJson<{ meanDice: number }>(scored).meanDice).toBeCloseTo(result.score.meanDice, 12);
  });

  it('rejects a map set that misses sample-submission ids', async () => {
    const sample = join(dir, 'sample-more.csv');
    await writeFile(sample, `ImageId,EncodedPixels\n${[...ids, 'extra.1', 'extra.2'].map((id) => `${id},-1`).join('\n')}\n`);
    const out = join(dir, 'never.csv');
    const r = await runCli(['submit', '--maps', join(dir, 'oof.pnm'), '--sample', sample, '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/2 sample-submission id\(s\) have no map: extra\.1, extra\.2/);
    await expect(stat(out)).rejects.toThrow();
    const bad = await runCli(['submit', '--maps', join(dir, 'oof.pnm'), '--sample', sample, '--out', out, '--triplet', '0.75,2000']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--triplet: expected "top,area,bottom"/);
  });
});

describe('pneumo-native stack', () => {
  it('trains the stacking model on classifier probabilities and writes gate probabilities for submit', async () => {
    // two classifiers: noisy copies of the truth's positive flag
    const rng = new Random(9);
    const positive = ids.map((_, i) => i % 3 === 0);
    const write = async (name: string, list: string[], noise: number) => {
      const path = join(dir, name);
      await writeFile(path, `ImageId,probability\n${list.map((id, i) => `${id},${Math.min(1, Math.max(0, (positive[i] ? 0.8 : 0.2) + (rng.next() - 0.5) * noise)).toFixed(4)}`).join('\n')}\n`);
      return path;
    };
    const a = await write('cls-a.csv', ids, 0.4);
    const b = await write('cls-b.csv', ids, 0.5);
    const out = join(dir, 'stacked.csv');
    const r = await runCli(['stack', '--train', a, '--train', b, '--labels', join(dir, 'truth.csv'), '--test', a, '--test', b, '--out', out, '--folds', '3', '--epochs', '200', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = parseJson<{ trainImages: number; trainPositives: number; oofAuc: number; oofAccuracyAtGate: number; testPositiveAtGate: number }>(r);
    expect(report).toMatchObject({ trainImages: 24, trainPositives: 8 });
    expect(report.oofAuc).toBe(1);
    expect(report.testPositiveAtGate).toBe(8);
    const lines = (await readFile(out, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(25);
    const sample = join(dir, 'sample-gate.csv');
    await writeFile(sample, `ImageId,EncodedPixels\n${ids.map((id) => `${id},-1`).join('\n')}\n`);
    const sub = await runCli(['submit', '--maps', join(dir, 'oof.pnm'), '--sample', sample, '--out', join(dir, 'gated.csv'), '--triplet', '0.5,0,0.5', '--classifier', out, '--gate', '0.65', '--size', String(T), '--json', '--quiet']);
    expect(sub.code, sub.stderr).toBe(0);
    // area 0 makes every image positive; the gate keeps the 8 positives only
    expect(parseJson<{ positives: number; gatedOut: number }>(sub)).toMatchObject({ positives: 8, gatedOut: 16 });
  });
});
