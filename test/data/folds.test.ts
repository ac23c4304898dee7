import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALWAYS_TRAIN_FOLD, FoldSplit, formatFolds, makeFolds, readFolds, writeFolds } from '../../src/data/folds.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pn-folds-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** 103 images, 23 positive (given as RLE rows, some with two regions). */
function labels(): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (let i = 0; i < 103; i++) map.set(`1.2.3.${i}`, i % 9 === 4 ? ['10 5', '40 2'] : i % 9 === 0 ? ['7 3'] : []);
  return map;
}

describe('folds: assignment', () => {
  it('stratifies: per class and in total, fold sizes differ by at most 1', () => {
    const map = labels();
    const positives = [...map.values()].filter((rows) => rows.length > 0).length;
    for (const k of [2, 5, 7]) {
      const rows = makeFolds(map, { k, seed: 42 });
      expect(rows).toHaveLength(103);
      const counts = new FoldSplit(rows).counts();
      expect(counts.map((c) => c.fold)).toEqual(Array.from({ length: k }, (_, f) => f));
      const spread = (xs: number[]) => Math.max(...xs) - Math.min(...xs);
      expect(spread(counts.map((c) => c.positive))).toBeLessThanOrEqual(1);
      expect(spread(counts.map((c) => c.negative))).toBeLessThanOrEqual(1);
      expect(spread(counts.map((c) => c.images))).toBeLessThanOrEqual(1);
      expect(counts.reduce((s, c) => s + c.positive, 0)).toBe(positives);
    }
  });

  it('is deterministic per seed, independent of row order, and changes with the seed', () => {
    const map = labels();
    const reversed = new Map([...map].reverse());
    const a = makeFolds(map, { k: 5, seed: 42 });
    expect(makeFolds(reversed, { k: 5, seed: 42 })).toEqual(a);
    expect(makeFolds(map, { k: 5, seed: 43 }).map((r) => r.fold)).not.toEqual(a.map((r) => r.fold));
  });

  it('writes fname = <id>.png sorted by fname, with exist_labels', () => {
    const rows = makeFolds(new Map([['b', ['1 2']], ['a', []], ['c', []]]), { k: 2, seed: 1 });
    expect(rows.map((r) => r.fname)).toEqual(['a.png', 'b.png', 'c.png']);
    expect(rows.map((r) => r.existLabels)).toEqual([0, 1, 0]);
    expect(formatFolds(rows).split('\n')[0]).toBe('fname,fold,exist_labels');
  });

  it('puts always-train images in their own fold, last, never validated', () => {
    const map = labels();
    const always = ['1.2.3.0', '1.2.3.1', '1.2.3.4'];
    const rows = makeFolds(map, { k: 5, seed: 42, alwaysTrain: always });
    expect(rows.slice(-3).map((r) => [r.id, r.fold, r.existLabels])).toEqual([
      ['1.2.3.0', ALWAYS_TRAIN_FOLD, 1],
      ['1.2.3.1', ALWAYS_TRAIN_FOLD, 0],
      ['1.2.3.4', ALWAYS_TRAIN_FOLD, 1],
    ]);
    const split = new FoldSplit(rows);
    expect(split.k).toBe(5);
    for (let f = 0; f < 5; f++) {
      expect(split.valIds(f).some((id) => always.includes(id))).toBe(false);
      expect(always.every((id) => split.trainIds(f).includes(id))).toBe(true);
      expect(split.trainIds(f).length + split.valIds(f).length).toBe(103);
    }
    expect(formatFolds(rows)).toContain('\n1.2.3.0.png,stage_2,1\n');
  });

  it('rejects bad parameters with clear errors', () => {
    expect(() => makeFolds(labels(), { k: 1, seed: 1 })).toThrow(/Expected an integer between 2 and 1000 for k but received 1/);
    expect(() => makeFolds(new Map([['a', []]]), { k: 2, seed: 1 })).toThrow(/Cannot make 2 folds from 1 image/);
    expect(() => makeFolds(labels(), { k: 2, seed: 1, alwaysTrain: ['zzz'] })).toThrow(/Expected ids present in the labels for alwaysTrain but received "zzz"/);
    expect(() => new FoldSplit(makeFolds(labels(), { k: 3, seed: 1 })).val(3)).toThrow(/Expected an integer between 0 and 2 for fold/);
  });
});

describe('folds: files', () => {
  it('round-trips through a file', async () => {
    const rows = makeFolds(labels(), { k: 5, seed: 42, alwaysTrain: ['1.2.3.9'] });
    const path = join(dir, 'folds.csv');
    await writeFolds(path, rows);
    expect(await readFolds(path)).toEqual(rows);
  });

  it("reads the first place's layout (fold label stage_2) and -1", async () => {
    const path = join(dir, 'sneddy.csv');
    await writeFile(path, 'fname,fold,exist_labels\nx.png,0,0\ny.png,4,1\nz.png,stage_2,1\nw.png,-1,0\n');
    const rows = await readFolds(path);
    expect(rows.map((r) => [r.id, r.fold, r.existLabels])).toEqual([
      ['x', 0, 0],
      ['y', 4, 1],
      ['z', -1, 1],
      ['w', -1, 0],
    ]);
    expect(await readFile(path, 'utf8')).toContain('stage_2');
  });

  it('names the file and line of bad content', async () => {
    const cases: [string, RegExp][] = [
      ['name,fold\n', /bad\.csv:1: bad header "name,fold": missing column fname, exist_labels/],
      ['fname,fold,exist_labels\na.png,x,0\n', /bad\.csv:2: bad fold "x"/],
      ['fname,fold,exist_labels\na.png,0,2\n', /bad\.csv:2: bad exist_labels "2": expected 0 or 1/],
      ['fname,fold,exist_labels\na.png,0,0\na.png,1,0\n', /bad\.csv:3: image a listed twice/],
      ['fname,fold,exist_labels\na.png,0\n', /bad\.csv:2: expected 3 columns but found 2/],
    ];
    const path = join(dir, 'bad.csv');
    for (const [text, message] of cases) {
      await writeFile(path, text);
      await expect(readFolds(path)).rejects.toThrow(message);
    }
    await expect(readFolds(join(dir, 'missing.csv'))).rejects.toThrow(/missing\.csv: no such file/);
  });
});
