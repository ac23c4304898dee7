/** Pseudo-labels: only images above the confidence rule join training, with their masks, never validated. */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { ALWAYS_TRAIN_FOLD, readFolds, writeFolds } from '../../src/data/folds.js';
import { writeGrayPng } from '../../src/data/prepare/task.js';
import { MapWriter } from '../../src/inference/maps.js';
import { pseudoLabel } from '../../src/inference/pseudo.js';
import { openPreparedDataset, splitFold } from '../../src/training/loader.js';

const root = mkdtempSync(join(tmpdir(), 'pn-pseudo-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('pseudoLabel', () => {
  it('adds only confident images, with their thresholded masks, in the always-train fold', async () => {
    const size = 16;
    const prepared = join(root, 'png16');
    for (const d of ['train', 'mask', 'test']) mkdirSync(join(prepared, d), { recursive: true });
    writeFileSync(join(prepared, 'prepare.json'), JSON.stringify({ imgSize: size }));
    // Four labelled training images in 2 folds.
    const rows = ['a', 'b', 'c', 'd'].map((id, i) => ({ id, fname: `${id}.png`, fold: i % 2, existLabels: (i < 2 ? 1 : 0) as 0 | 1 }));
    for (const r of rows) {
      await writeGrayPng(new Uint8Array(size * size).fill(100), size, join(prepared, 'train', r.fname));
      await writeGrayPng(new Uint8Array(size * size), size, join(prepared, 'mask', r.fname));
    }
    await writeFolds(join(prepared, 'folds.csv'), rows);
    // Test maps at 8 x 8 (half the prepared size): a confident positive, a confident empty, an
    // uncertain image (max 0.7), a small positive under the area rule.
    const ids = ['pos', 'empty', 'unsure', 'small'];
    const maps = join(root, 'test.pnm');
    const w = await MapWriter.create(maps, { ids, height: 8, width: 8, dtype: 'float16', producer: {} });
    const pos = new Float32Array(64).fill(0.02);
    for (const i of [9, 10, 17, 18, 19]) pos[i] = 0.97;
    const small = new Float32Array(64).fill(0.01);
    small[0] = 0.99;
    await w.write(0, pos);
    await w.write(1, new Float32Array(64).fill(0.05));
    await w.write(2, new Float32Array(64).fill(0.05).map((v, i) => (i === 20 ? 0.7 : v)));
    await w.write(3, small);
    await w.close();
    for (const id of ids) await writeGrayPng(new Uint8Array(size * size).fill(id.length * 20), size, join(prepared, 'test', `${id}.png`));

    // minArea 20000 at 1024: one 8x8 map pixel counts 16384, five count 81920.
    const out = join(prepared, 'folds-pseudo.csv');
    const r = await pseudoLabel(maps, prepared, join(prepared, 'folds.csv'), out, { confidence: 0.9, minArea: 20000 });
    expect(r).toMatchObject({ considered: 4, positives: ['pos'], empties: ['empty'], uncertain: 2 });
    expect(existsSync(join(prepared, 'train', 'unsure.png'))).toBe(false);
    expect(existsSync(join(prepared, 'train', 'small.png'))).toBe(false);
    // The mask: the map thresholded at 0.5, resized (nearest) to the prepared size.
    const mask = new Uint8Array(await sharp(join(prepared, 'mask', 'pos.png')).toColourspace('b-w').raw().toBuffer());
    const expected = new Uint8Array(size * size);
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) expected[y * size + x] = pos[(y >> 1) * 8 + (x >> 1)]! > 0.5 ? 255 : 0;
    expect(mask).toEqual(expected);
    expect(new Uint8Array(await sharp(join(prepared, 'mask', 'empty.png')).toColourspace('b-w').raw().toBuffer()).every((v) => v === 0)).toBe(true);
    expect(readFileSync(join(prepared, 'train', 'pos.png'))).toEqual(readFileSync(join(prepared, 'test', 'pos.png')));
    // The new folds file: the old rows unchanged, the added images always trained on, never validated.
    const newRows = await readFolds(out);
    expect(newRows.slice(0, 4)).toEqual(rows);
    expect(newRows.slice(4)).toEqual([
      { id: 'pos', fname: 'pos.png', fold: ALWAYS_TRAIN_FOLD, existLabels: 1 },
      { id: 'empty', fname: 'empty.png', fold: ALWAYS_TRAIN_FOLD, existLabels: 0 },
    ]);
    expect(await readFolds(join(prepared, 'folds.csv'))).toEqual(rows);
    const dataset = await openPreparedDataset(prepared, out);
    for (const fold of [0, 1]) {
      const { train, val } = splitFold(dataset, fold);
      expect(val.map((s) => s.id).sort()).toEqual(rows.filter((x) => x.fold === fold).map((x) => x.id).sort());
      expect(train.map((s) => s.id)).toEqual(expect.arrayContaining(['pos', 'empty']));
    }
    // Labelled images are refused.
    await expect(pseudoLabel(maps, prepared, out, join(root, 'again.csv'))).rejects.toThrow(/image pos is already in .*folds-pseudo\.csv: pseudo-labels are for unlabelled images/);
  });
});
