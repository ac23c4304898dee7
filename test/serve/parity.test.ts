/**
 * No train/serve skew: the Segmenter feeds a model exactly what validation and `infer` feed it
 * (`imagenetPreprocess(size, inChannels)`: ImageNet's per-channel statistics on the 8-bit resized
 * image), so its probabilities for an image are `inferMaps`' for the same model, image and size.
 *
 * Compared bit for bit with inferMaps' own computation (preprocessImages(paths,
 * imagenetPreprocess) then Model.predict, averaged with weight 1: an exact copy), through the
 * Segmenter's exact outputs (maxProbability, and masks p > bottom at several cuts); and with the
 * map file inferMaps writes (float16) within float16's rounding, 2^-12 on [0, 1], a tolerance the
 * old serving normalisation (gray statistics on all 3 channels, unrounded) is checked to exceed.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imagenetPreprocess, preprocessImages } from '../../src/data/batch.js';
import type { Preprocess } from '../../src/data/batch.js';
import { inferMaps } from '../../src/inference/infer.js';
import { MapReader } from '../../src/inference/maps.js';
import { Model } from '../../src/models/model.js';
import { Segmenter } from '../../src/serve/segmenter.js';
import { SIZE, chestFiles } from './fixtures.js';

const FLOAT16_ROUNDING = 2 ** -12;
let dir: string;
const images: Record<string, { path: string; bytes: Buffer }> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pn-serve-parity-'));
  const files = await chestFiles(0);
  for (const [name, bytes] of [
    ['png', files.png],
    ['dicomJpeg', files.dicomJpeg],
    ['dicomRaw', files.dicomRaw],
    ['jpeg', files.jpeg],
  ] as const) {
    const path = join(dir, `${name}.${name === 'png' ? 'png' : name === 'jpeg' ? 'jpg' : 'dcm'}`);
    writeFileSync(path, bytes);
    images[name] = { path, bytes };
  }
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** The probabilities of `model` for one image file under `spec` (inferMaps' computation). */
async function probabilities(model: Model, path: string, spec: Preprocess): Promise<Float32Array> {
  const input = await preprocessImages([path], spec);
  try {
    const out = await model.predict(input);
    out.label?.dispose();
    return out.mask.takeData('float32');
  } finally {
    input.dispose();
  }
}

/** Cuts between distinct values of `probs` at a few quantiles: a mask p > cut changes at each. */
function cuts(probs: Float32Array): number[] {
  const sorted = Float32Array.from(probs).sort();
  return [0.1, 0.5, 0.9].map((q) => {
    const i = Math.floor(q * (sorted.length - 1));
    return (sorted[i]! + sorted[i + 1]!) / 2;
  });
}

for (const channels of [3, 1] as const) {
  describe(`a ${channels}-channel model`, () => {
    it("Segmenter's probabilities equal infer's for the same model, image and size", async () => {
      const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 5, inChannels: channels });
      const ckpt = join(dir, `m${channels}.ckpt`);
      await model.save(ckpt, { metadata: { imgSize: SIZE } });
      const seg = await Segmenter.load(ckpt, { size: SIZE, maskSize: 'model' });
      const out = join(dir, `maps${channels}.pnm`);
      const list = Object.entries(images).map(([id, { path }]) => ({ id, path }));
      await inferMaps([{ path: ckpt }], list, out, { size: SIZE, dtype: 'float16', batchSize: 1, overwrite: true });
      const maps = await MapReader.open(out);
      try {
        expect(seg.options.normalize).toEqual({ mean: [...imagenetPreprocess(SIZE, channels).mean], std: [...imagenetPreprocess(SIZE, channels).std] });
        for (const [id, { path, bytes }] of Object.entries(images)) {
          const probs = await probabilities(model, path, imagenetPreprocess(SIZE, channels));
          let max = 0;
          for (const p of probs) max = Math.max(max, p);
          // Bit for bit: the served maximum and the masks p > cut.
          for (const cut of cuts(probs)) {
            const r = await seg.predict(bytes, { triplet: [0, 0, cut] });
            expect(r.maxProbability, id).toBe(max);
            expect([r.width, r.height]).toEqual([SIZE, SIZE]);
            const expected = Uint8Array.from(probs, (p) => (p > cut ? 1 : 0));
            expect(Buffer.from(r.mask).equals(Buffer.from(expected)), `${id} mask at ${cut}`).toBe(true);
          }
          // The map infer wrote: the same probabilities, stored as float16.
          const map = await maps.read(id);
          let worst = 0;
          for (let i = 0; i < map.length; i++) worst = Math.max(worst, Math.abs(map[i]! - probs[i]!));
          expect(worst, id).toBeLessThanOrEqual(FLOAT16_ROUNDING);
          if (channels === 3) {
            // The serving normalisation this replaced is told apart at that tolerance.
            const old = await probabilities(model, path, { size: SIZE, channels, mean: [0.485], std: [0.229], quantize: false });
            let gap = 0;
            for (let i = 0; i < old.length; i++) gap = Math.max(gap, Math.abs(old[i]! - map[i]!));
            expect(gap, id).toBeGreaterThan(FLOAT16_ROUNDING);
          }
        }
      } finally {
        await maps.close();
        seg.dispose();
        model.dispose();
      }
    }, 120_000);
  });
}

describe('normalize: an explicit override of the statistics', () => {
  it('uses them on the same 8-bit resized image, one value for every channel or one per channel', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 6, inChannels: 3 });
    const shared = Segmenter.fromModel(model, { size: SIZE, maskSize: 'model', normalize: { mean: 0.5, std: 0.25 } });
    const perChannel = Segmenter.fromModel(await Model.create({ backbone: 'tiny_unet_r18', seed: 6, inChannels: 3 }), { size: SIZE, normalize: { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] } });
    try {
      expect(shared.options.normalize).toEqual({ mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] });
      const { path, bytes } = images.png!;
      const probs = await probabilities(model, path, { size: SIZE, channels: 3, mean: [0.5], std: [0.25] });
      let max = 0;
      for (const p of probs) max = Math.max(max, p);
      expect((await shared.predict(bytes)).maxProbability).toBe(max);
      const other = await probabilities(model, path, { size: SIZE, channels: 3, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] });
      let otherMax = 0;
      for (const p of other) otherMax = Math.max(otherMax, p);
      expect((await perChannel.predict(bytes)).maxProbability).toBe(otherMax);
      expect(otherMax).not.toBe(max);
    } finally {
      shared.dispose();
      perChannel.dispose();
    }
  });

  it('is checked, naming the option', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 6, inChannels: 3 });
    try {
      expect(() => Segmenter.fromModel(model, { normalize: { mean: [0.5, 0.5], std: 0.2 } })).toThrow(/a number or an array of 1 or 3 numbers .* for options\.normalize\.mean but received/);
      expect(() => Segmenter.fromModel(model, { normalize: { mean: 0.5, std: 0 } })).toThrow(/options\.normalize\.std/);
      expect(() => Segmenter.fromModel(model, { normalize: { mean: [0.5, Number.NaN, 0.5], std: 1 } })).toThrow(/options\.normalize\.mean\[1\]/);
      expect(() => Segmenter.fromModel(model, { normalize: 'imagenet' as never })).toThrow(/\{ mean, std \} for options\.normalize/);
    } finally {
      model.dispose();
    }
  });
});
