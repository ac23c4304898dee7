import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { read } from '../../src/data/dicom.js';
import { readSampleSubmission, readTrainLabels } from '../../src/data/labels.js';
import { decodeUnion } from '../../src/data/rle.js';
import { generateImage, generateMasks, planDataset, synthesize } from '../../src/data/synth/index.js';
import type { SynthImageSpec } from '../../src/data/synth/index.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pn-synth-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const spec = (index: number, positive: boolean, size = 128, seed = 5): SynthImageSpec => ({ seed, split: 'train', index, positive, size });

function mean(values: number[]): number {
  return values.reduce((s, v) => s + v, 0) / values.length;
}

describe('synth: one image', () => {
  it('is deterministic per (seed, split, index) and varies between images', () => {
    const a = generateImage(spec(3, true));
    const b = generateImage(spec(3, true));
    expect(Buffer.from(a.pixels).equals(Buffer.from(b.pixels))).toBe(true);
    expect(a.masks.map((m) => Buffer.from(m).toString('base64'))).toEqual(b.masks.map((m) => Buffer.from(m).toString('base64')));
    expect(Buffer.from(generateImage(spec(4, true)).pixels).equals(Buffer.from(a.pixels))).toBe(false);
    expect(Buffer.from(generateImage({ ...spec(3, true), split: 'test' }).pixels).equals(Buffer.from(a.pixels))).toBe(false);
    expect(Buffer.from(generateImage(spec(3, true, 128, 6)).pixels).equals(Buffer.from(a.pixels))).toBe(false);
  });

  it('gives negative images no mask and positive images 1-3 non-empty regions inside one lung field each', () => {
    expect(generateImage(spec(0, false)).masks).toEqual([]);
    const counts = new Set<number>();
    for (let index = 0; index < 40; index++) {
      const image = generateImage(spec(index, true, 128));
      expect(image.masks.length).toBeGreaterThanOrEqual(1);
      expect(image.masks.length).toBeLessThanOrEqual(3);
      counts.add(image.masks.length);
      image.masks.forEach((mask, r) => {
        const lung = (image.regions[r]?.lung ?? -1) + 1;
        let area = 0;
        for (let p = 0; p < mask.length; p++) {
          if (mask[p] === 0) continue;
          area++;
          expect(image.lungs[p], `image ${index} region ${r} pixel ${p}`).toBe(lung);
        }
        expect(area, `image ${index} region ${r}`).toBeGreaterThan(0);
      });
    }
    expect(counts.has(1) && counts.has(2)).toBe(true);
  });

  it('recomputes the same masks without rendering (the resume path)', () => {
    for (const index of [1, 2, 7]) {
      const rendered = generateImage(spec(index, true, 96)).masks;
      const recomputed = generateMasks(spec(index, true, 96));
      expect(recomputed.map((m) => Buffer.from(m).toString('base64'))).toEqual(rendered.map((m) => Buffer.from(m).toString('base64')));
    }
  });

  it('looks like a chest radiograph: dark background, dark lungs, bright mediastinum and abdomen', () => {
    for (let index = 0; index < 5; index++) {
      const size = 128;
      const { pixels, lungs } = generateImage(spec(index, false, size));
      const at = (x: number, y: number) => pixels[Math.floor(y * size) * size + Math.floor(x * size)] as number;
      const lungValues: number[] = [];
      for (let p = 0; p < lungs.length; p++) if (lungs[p] !== 0) lungValues.push(pixels[p] as number);
      const lungMean = mean(lungValues);
      const corner = mean([at(0.01, 0.99), at(0.99, 0.99)]);
      const mediastinum: number[] = [];
      for (let y = 0.45; y < 0.6; y += 0.02) mediastinum.push(at(0.5, y));
      const abdomen = mean([at(0.5, 0.95), at(0.4, 0.95), at(0.6, 0.95)]);
      expect(lungValues.length).toBeGreaterThan(size * size * 0.2);
      expect(corner, `image ${index}`).toBeLessThan(lungMean);
      expect(mean(mediastinum), `image ${index}`).toBeGreaterThan(lungMean + 40);
      expect(abdomen, `image ${index}`).toBeGreaterThan(lungMean + 40);
    }
  });

  it('shows the pneumothorax: a darker region bounded by a brighter pleural line, compared with the same image without it', () => {
    let darker = 0;
    let lined = 0;
    const n = 12;
    for (let index = 0; index < n; index++) {
      const size = 256;
      const positive = generateImage(spec(index, true, size, 11));
      const negative = generateImage(spec(index, false, size, 11)); // same anatomy and texture streams
      const union = new Uint8Array(size * size);
      for (const mask of positive.masks) for (let p = 0; p < mask.length; p++) union[p]! |= mask[p]!;
      const inside: number[] = [];
      const edge: number[] = [];
      for (let p = 0; p < union.length; p++) {
        const delta = (positive.pixels[p] as number) - (negative.pixels[p] as number);
        if (union[p]) inside.push(delta);
        // Lung just outside the region (the collapsed lung's edge): the pleural line.
        else if (positive.lungs[p] && (union[p - 1] || union[p + 1] || union[p - size] || union[p + size])) edge.push(delta);
      }
      if (mean(inside) < -4) darker++;
      if (mean(edge) > 2) lined++;
    }
    expect(darker).toBe(n);
    expect(lined).toBe(n);
  });
});

describe('synth: dataset plan', () => {
  it('honours the positive rate exactly per split, with SIIM-like unique ids', () => {
    const entries = planDataset({ seed: 1, train: 100, test: 40, size: 256, positiveRate: 0.22, quality: 90 });
    expect(entries.filter((e) => e.split === 'train' && e.positive)).toHaveLength(22);
    expect(entries.filter((e) => e.split === 'test' && e.positive)).toHaveLength(9);
    expect(new Set(entries.map((e) => e.id)).size).toBe(140);
    for (const e of entries) {
      expect(e.id).toMatch(/^1\.2\.276\.0\.7230010\.3\.1\.4\.8323329\.\d+\.\d+\.\d+$/);
      expect(e.file).toBe(join(e.split === 'train' ? 'dicom-images-train' : 'dicom-images-test', e.studyUid, e.seriesUid, `${e.id}.dcm`));
    }
    const views = new Set(entries.map((e) => e.tags.viewPosition));
    expect(views).toEqual(new Set(['PA', 'AP']));
  });
});

describe('synth: writing a dataset', () => {
  it('writes DICOMs, labels, a sample submission and a manifest; resumes; refuses other parameters', async () => {
    const out = join(dir, 'ds');
    const options = { out, train: 5, test: 3, seed: 9, size: 128, positiveRate: 0.4, workers: 0 };
    const first = await synthesize(options);
    expect(first.written).toBe(8);
    expect(first.train.positive).toBe(2);
    expect(first.test.positive).toBe(1);

    const train = await readTrainLabels(join(out, 'train-rle.csv'), { size: 128 });
    expect(train.size).toBe(5);
    expect([...train.values()].filter((rows) => rows.length > 0)).toHaveLength(2);
    expect((await readFile(join(out, 'train-rle.csv'), 'utf8')).split('\n')[0]).toBe('ImageId, EncodedPixels');
    const testIds = await readSampleSubmission(join(out, 'stage_2_sample_submission.csv'));
    expect(testIds).toHaveLength(3);
    expect([...(await readTrainLabels(join(out, 'test-rle.csv'))).keys()]).toEqual(testIds);

    const entries = planDataset(first.parameters);
    for (const entry of entries.slice(0, 3)) {
      const dicom = await read(join(out, entry.file));
      expect(dicom.id).toBe(entry.id);
      expect([dicom.width, dicom.height]).toEqual([128, 128]);
      expect(dicom.transferSyntax.uid).toBe('1.2.840.10008.1.2.4.50');
      expect(dicom.modality).toBe('CR');
      expect(dicom.viewPosition).toBe(entry.tags.viewPosition);
      // JPEG at quality 90: close to the rendered pixels.
      const rendered = generateImage({ seed: 9, split: entry.split, index: entry.index, positive: entry.positive, size: 128 }).pixels;
      let diff = 0;
      for (let p = 0; p < rendered.length; p++) diff += Math.abs((rendered[p] as number) - (dicom.pixels[p] as number));
      expect(diff / rendered.length).toBeLessThan(3);
      // The labels decode to the rendered masks' union.
      if (entry.split === 'train') {
        const masks = generateMasks({ seed: 9, split: 'train', index: entry.index, positive: entry.positive, size: 128 });
        const union = new Uint8Array(128 * 128);
        for (const m of masks) for (let p = 0; p < m.length; p++) union[p]! |= m[p]!;
        expect(Buffer.from(decodeUnion(train.get(entry.id) ?? [], 128, 128)).equals(Buffer.from(union))).toBe(true);
      }
    }

    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8'));
    expect(manifest.parameters).toEqual({ seed: 9, train: 5, test: 3, size: 128, positiveRate: 0.4, quality: 90 });
    const labelsBefore = await readFile(join(out, 'train-rle.csv'), 'utf8');
    const file = join(out, entries[0]!.file);
    const mtime = (await stat(file)).mtimeMs;
    const second = await synthesize(options);
    expect(second.written).toBe(0);
    expect(second.skipped).toBe(8);
    expect((await stat(file)).mtimeMs).toBe(mtime);
    expect(await readFile(join(out, 'train-rle.csv'), 'utf8')).toBe(labelsBefore);
    await expect(synthesize({ ...options, seed: 10 })).rejects.toThrow(/holds a synthetic dataset made with other parameters \(seed 9 -> 10\)/);
  });

  it('validates its options', async () => {
    await expect(synthesize({ out: join(dir, 'x'), train: -1, test: 0, seed: 1 })).rejects.toThrow(/Expected an integer between 0 and 1000000 for options.train but received -1/);
    await expect(synthesize({ out: join(dir, 'x'), train: 1, test: 0, seed: 1, size: 32 })).rejects.toThrow(/for options.size but received 32/);
    await expect(synthesize({ out: join(dir, 'x'), train: 1, test: 0, seed: 1, positiveRate: 2 })).rejects.toThrow(/for options.positiveRate/);
  });
});
