import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, encode } from '../../src/data/rle.js';
import { resizeMask } from '../../src/inference/resize.js';
import { MapWriter } from '../../src/inference/maps.js';
import { makeSubmission, postprocessMap, readProbabilities, readRankingProbabilities } from '../../src/inference/submit.js';

const dir = await mkdtemp(join(tmpdir(), 'pn-submit-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

const S = 16;
const ids = ['a', 'b', 'c', 'd', 'e'];

/** Map i: a square of p = 0.9 with side 2 * i (a: none), on 0.1 background; b also has a lone 0.9 pixel. */
function mapOf(i: number): Float32Array {
  const m = new Float32Array(S * S).fill(0.1);
  for (let y = 2; y < 2 + 2 * i; y++) for (let x = 3; x < 3 + 2 * i; x++) m[y * S + x] = 0.9;
  if (i === 1) m[14 * S + 14] = 0.9;
  return m;
}

beforeAll(async () => {
  const w = await MapWriter.create(join(dir, 'maps.pnm'), { ids, height: S, width: S, producer: { test: 'submit' } });
  for (let i = 0; i < ids.length; i++) await w.write(i, mapOf(i), i / 4);
  await w.close();
});

async function rows(path: string): Promise<string[][]> {
  return (await readFile(path, 'utf8')).trim().split('\n').map((l) => l.split(','));
}

describe('submit', () => {
  it('writes masks at 1024 in the sample order, -1 for empty, and scores against truth', async () => {
    const out = join(dir, 'sub.csv');
    const order = ['c', 'a', 'e', 'b', 'd'];
    // truth at 1024: image c's 4x4 square resized bilinearly and binarised at 0.5: rows 128..383,
    // cols 192..447 less the rounded corners
    const small = Uint8Array.from(mapOf(2), (v) => (v > 0.5 ? 1 : 0));
    const square = resizeMask(small, S, S, 1024, 1024);
    expect(square[128 * 1024 + 300]).toBe(1);
    expect(square[127 * 1024 + 300]).toBe(0);
    expect(square[300 * 1024 + 447]).toBe(1);
    expect(square[300 * 1024 + 448]).toBe(0);
    expect(square[128 * 1024 + 192]).toBe(0);
    const truth = new Map<string, string[]>([
      ['a', []],
      ['b', []],
      ['c', [encode(square, 1024, 1024)]],
      ['d', []],
      ['e', []],
    ]);
    // area 1 at 16x16 counted at 1024: 1 px = 4096; c's 16 px = 65536
    const r = await makeSubmission([join(dir, 'maps.pnm')], order, out, { triplet: [0.5, 4096, 0.5], truth });
    const csv = await rows(out);
    expect(csv[0]).toEqual(['ImageId', 'EncodedPixels']);
    expect(csv.slice(1).map((row) => row[0])).toEqual(order);
    expect(csv[2]![1]).toBe('-1');
    const c = decode(csv[1]![1]!, 1024, 1024);
    expect(Buffer.from(c).equals(Buffer.from(square))).toBe(true);
    expect(r).toMatchObject({ images: 5, positives: 4, tripletPositives: 4, size: 1024, mapSize: [16, 16] });
    expect(r.score!.nonEmpty.meanDice).toBe(1);
    expect(r.score!.empty).toEqual({ count: 4, meanDice: 0.25 }); // only a is predicted empty
    expect(r.score!.emptyBaseline).toBe(0.8);
  });

  it('removes small regions, gates by classifier, keeps the non_empty_ratio', async () => {
    const out = join(dir, 'sub2.csv');
    // b: a 2x2 square (4 px) and a lone pixel; min area 2 px = 2 * 4096 at 1024 removes the pixel
    const r = await makeSubmission([join(dir, 'maps.pnm')], ids, out, { triplet: [0.5, 1, 0.5], minArea: 2 * 4096, size: S });
    expect(r.regionsRemoved).toBe(1);
    const b = decode((await rows(out))[2]![1]!, S, S);
    expect(b.reduce((s, v) => s + v, 0)).toBe(4);
    // the maps' own classifier probabilities are i / 4: a gate of 0.5 keeps d (0.75) and e (1)
    const g = await makeSubmission([join(dir, 'maps.pnm')], ids, out, { triplet: [0.5, 1, 0.5], gate: { probabilities: 'maps', threshold: 0.5 }, size: S });
    expect(g).toMatchObject({ positives: 2, gatedOut: 2 });
    expect((await rows(out)).slice(1).map((row) => row[1] !== '-1')).toEqual([false, false, false, true, true]);
    const probs = new Map(ids.map((id, i) => [id, i === 1 ? 0.9 : 0.1]));
    const g2 = await makeSubmission([join(dir, 'maps.pnm')], ids, out, { triplet: [0.5, 1, 0.5], gate: { probabilities: probs, threshold: 0.65 }, size: S });
    expect(g2.positives).toBe(1);
    // non_empty_ratio 0.4 of 5 images: the 2 largest (e, d)
    const n = await makeSubmission([join(dir, 'maps.pnm')], ids, out, { triplet: [0.5, 1, 0.5], nonEmptyRatio: 0.4, size: S });
    expect(n).toMatchObject({ positives: 2, ratioRemoved: 2 });
    expect((await rows(out)).slice(1).map((row) => row[1] !== '-1')).toEqual([false, false, false, true, true]);
  });

  it('ranks by a classifier for non_empty_ratio (42nd place): its top fraction keeps the segmentation', async () => {
    const out = join(dir, 'sub-rank.csv');
    // The classifier prefers b and c (small squares) over d and e (large): with the ratio 0.4 those
    // two keep their masks and d, e go empty, the reverse of ranking by area.
    const probs = new Map(ids.map((id, i) => [id, [0.05, 0.9, 0.8, 0.2, 0.1][i]!]));
    const r = await makeSubmission([join(dir, 'maps.pnm')], ids, out, { triplet: [0.5, 1, 0.5], nonEmptyRatio: 0.4, rankBy: probs, size: S });
    expect(r).toMatchObject({ positives: 2, ratioRemoved: 2 });
    expect((await rows(out)).slice(1).map((row) => row[1] !== '-1')).toEqual([false, true, true, false, false]);
    // The probabilities may come from a classifier's maps (their stored probability, i / 4 here).
    const fromMaps = await readRankingProbabilities(join(dir, 'maps.pnm'));
    expect([...fromMaps.entries()]).toEqual(ids.map((id, i) => [id, i / 4]));
    const csv = join(dir, 'rank.csv');
    await writeFile(csv, 'ImageId,p\na,0.5\nb,0.25\n');
    expect([...(await readRankingProbabilities(csv)).entries()]).toEqual([['a', 0.5], ['b', 0.25]]);
    await expect(makeSubmission([join(dir, 'maps.pnm')], ids, out, { nonEmptyRatio: 0.4, rankBy: new Map([['a', 1]]) })).rejects.toThrow(/ranking probabilities miss 4 sample-submission id\(s\): b, c, d, e/);
    await expect(makeSubmission([join(dir, 'maps.pnm')], ids, out, { rankBy: probs })).rejects.toThrow(/nonEmptyRatio/);
  });

  it('rejects maps that miss sample-submission ids or hold others, listing them', async () => {
    const out = join(dir, 'sub3.csv');
    await expect(makeSubmission([join(dir, 'maps.pnm')], [...ids, 'x1', 'x2'], out)).rejects.toThrow(/2 sample-submission id\(s\) have no map: x1, x2/);
    await expect(makeSubmission([join(dir, 'maps.pnm')], ids.slice(0, 3), out)).rejects.toThrow(/2 map id\(s\) are not in the sample submission: d, e/);
    await expect(makeSubmission([join(dir, 'maps.pnm')], ids, out, { gate: { probabilities: new Map([['a', 1]]), threshold: 0.5 } })).rejects.toThrow(/miss 4 sample-submission id\(s\): b, c, d, e/);
    await expect(readFile(out)).rejects.toThrow(); // nothing written
  });

  it('blends files over the same images on the fly, joins files over distinct images', async () => {
    // b.pnm: the same ids, every map 0.1 everywhere: 0.5/0.5 with maps.pnm puts the squares at 0.5
    const w = await MapWriter.create(join(dir, 'flat.pnm'), { ids: [...ids].reverse(), height: 8, width: 8, dtype: 'float16' });
    for (let i = 0; i < ids.length; i++) await w.write(i, new Float32Array(64).fill(0.1), 0.5);
    await w.close();
    const out = join(dir, 'blend-sub.csv');
    const r = await makeSubmission([{ path: join(dir, 'maps.pnm'), weight: 1 }, { path: join(dir, 'flat.pnm'), weight: 1 }], ids, out, { triplet: [0.45, 1, 0.45], size: S, gate: { probabilities: 'maps', threshold: 0.4 } });
    // labels: maps.pnm's i / 4 blended with 0.5: 0.25, 0.375, 0.5, 0.625, 0.75; the gate at 0.4
    // empties b (a has no square)
    expect(r).toMatchObject({ positives: 3, tripletPositives: 4, gatedOut: 1, mapSize: [S, S] });
    const d = decode((await rows(out))[4]![1]!, S, S);
    expect(d.reduce((s, v) => s + v, 0)).toBe(36); // d's 6x6 square at (0.9 + 0.1) / 2 = 0.5 > 0.45
    await expect(makeSubmission([{ path: join(dir, 'maps.pnm'), weight: 2 }, { path: join(dir, 'other.pnm') }], ids, out)).rejects.toThrow();
    const o = await MapWriter.create(join(dir, 'other.pnm'), { ids: ['f'], height: S, width: S });
    await o.write(0, mapOf(2));
    await o.close();
    await expect(makeSubmission([{ path: join(dir, 'maps.pnm'), weight: 2 }, { path: join(dir, 'other.pnm') }], ids, out)).rejects.toThrow(/map weights blend files over the same images/);
    const u = await makeSubmission([join(dir, 'maps.pnm'), join(dir, 'other.pnm')], [...ids, 'f'], out, { triplet: [0.5, 1, 0.5], size: S });
    expect(u.positives).toBe(5);
  });

  it('post-processes one map and reads probability files', async () => {
    const p = postprocessMap(mapOf(2), S, S, { triplet: [0.5, 16 * 4096, 0.5] });
    expect(p).toMatchObject({ positive: true, area: 16 });
    expect(postprocessMap(mapOf(2), S, S, { triplet: [0.5, 16 * 4096 + 1, 0.5] }).positive).toBe(false);
    await writeFile(join(dir, 'p.csv'), 'ImageId,probability\na,0.25\nb,1\n');
    expect(await readProbabilities(join(dir, 'p.csv'))).toEqual(new Map([['a', 0.25], ['b', 1]]));
    await writeFile(join(dir, 'bad.csv'), 'ImageId,probability\na,1.5\n');
    await expect(readProbabilities(join(dir, 'bad.csv'))).rejects.toThrow(/bad.csv:2: expected "ImageId,probability" with a probability in \[0, 1\]/);
  });
});
