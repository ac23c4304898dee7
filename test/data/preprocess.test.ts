/**
 * The one pre-processing path (preprocessImages): decode -> resize -> normalise -> channels in one
 * native call, compared with the compositions it replaces: a uint8 batch normalised by the
 * augmentation pipeline's Normalize (inference, validation), and decodeBatch's normalised gray
 * batch multiplied out to the model's channels (quantize false; the Segmenter's input until it
 * took inference's pre-processing, test/serve/parity.test.ts).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { Tensor } from '../../src/core/tensor.js';
import { IMAGENET_GRAY, decodeBatch, imageSource, imagenetPreprocess, preprocessImages, readImageBatch } from '../../src/data/batch.js';
import type { ImageSource, Preprocess } from '../../src/data/batch.js';
import { writeDicom } from '../../src/data/dicom.js';
import { AugmentPipeline } from '../../src/training/augment/index.js';

let dir: string;
let files: string[];
let sources: ImageSource[];

/** Gradients, a disc and a bar: values that round differently when resized. */
function pattern(width: number, height: number): Uint8Array {
  const px = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let v = 30 + (170 * x) / width + (45 * y) / height;
      if ((x - width * 0.6) ** 2 + (y - height * 0.4) ** 2 < (width * 0.15) ** 2) v = 240;
      if (y > height * 0.75 && y < height * 0.8) v = 5;
      px[y * width + x] = Math.round(v);
    }
  }
  return px;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pn-preprocess-'));
  const a = pattern(128, 128);
  const b = pattern(96, 80);
  writeFileSync(join(dir, 'a.dcm'), await writeDicom({ pixels: a, width: 128, height: 128 }, { encoding: 'jpeg-baseline', quality: 95 }));
  writeFileSync(join(dir, 'b.dcm'), await writeDicom({ pixels: b, width: 96, height: 80 }, { encoding: 'explicit-le' }));
  writeFileSync(join(dir, 'c.png'), await sharp(a, { raw: { width: 128, height: 128, channels: 1 } }).png().toBuffer());
  writeFileSync(join(dir, 'd.jpg'), await sharp(b, { raw: { width: 96, height: 80, channels: 1 } }).jpeg({ quality: 90 }).toBuffer());
  files = ['a.dcm', 'b.dcm', 'c.png', 'd.jpg'].map((f) => join(dir, f));
  sources = await Promise.all(files.map(async (f) => imageSource(await readFile(f), f)));
});

/** The largest absolute difference of two float32 batches of one shape. */
async function maxDiff(a: Tensor, b: Tensor): Promise<number> {
  expect(a.shape).toEqual(b.shape);
  expect(a.dtype).toBe('float32');
  expect(b.dtype).toBe('float32');
  const x = await a.data('float32');
  const y = await b.data('float32');
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  return worst;
}

/** Today's inference / validation input: uint8 batch, then the pipeline's Normalize for `channels`. */
async function viaPipeline(pipeline: AugmentPipeline, size: number, channels: 1 | 3): Promise<Tensor> {
  const uint8 = await readImageBatch(files, { size });
  try {
    const plan = pipeline.sample(new Random(0), files.length, size, size);
    return (await pipeline.apply(uint8, undefined, plan, { channels })).images;
  } finally {
    uint8.dispose();
  }
}

/** decodeBatch's normalised gray, multiplied out to `channels` (the Segmenter's former input). */
async function viaSegmenter(size: number, channels: 1 | 3, stats: { mean: number; std: number }): Promise<Tensor> {
  const gray = await decodeBatch(sources, { size, normalize: stats });
  if (channels === 1) return gray;
  const ones = Tensor.from(new Float32Array([1, 1, 1]), [1, 3, 1, 1]);
  try {
    return await gray.mul(ones);
  } finally {
    ones.dispose();
    gray.dispose();
  }
}

describe('preprocessImages: one native pass', () => {
  for (const size of [128, 64, 100]) {
    it(`equals a uint8 batch + the ImageNet Normalize for 3 channels (size ${size}, files)`, async () => {
      const ours = await preprocessImages(files, imagenetPreprocess(size, 3));
      const before = await viaPipeline(AugmentPipeline.preset('none'), size, 3);
      expect(ours.shape).toEqual([files.length, 3, size, size]);
      // Bit for bit where ATen's addcmul fuses the multiply-add (AVX2 / AVX-512), else within an ulp.
      expect(await maxDiff(ours, before)).toBeLessThanOrEqual(1e-6);
      // Per-channel statistics really differ: the channels are not copies.
      const data = await ours.data('float32');
      const plane = size * size;
      expect(data[0]).not.toBe(data[plane]);
      ours.dispose();
      before.dispose();
    });
  }

  it('equals a uint8 batch + a gray Normalize for 1 channel, from files and from prepared sources', async () => {
    const gray = new AugmentPipeline({ type: 'Compose', transforms: [{ type: 'Normalize', mean: [IMAGENET_GRAY.mean], std: [IMAGENET_GRAY.std], max_pixel_value: 255, p: 1 }] });
    for (const size of [128, 72]) {
      const fromFiles = await preprocessImages(files, imagenetPreprocess(size, 1));
      const fromSources = await preprocessImages(sources, imagenetPreprocess(size, 1), { names: files });
      const before = await viaPipeline(gray, size, 1);
      expect(fromFiles.shape).toEqual([files.length, 1, size, size]);
      expect(await maxDiff(fromFiles, before)).toBeLessThanOrEqual(1e-6);
      expect(await maxDiff(fromSources, before)).toBeLessThanOrEqual(1e-6);
      for (const t of [fromFiles, fromSources, before]) t.dispose();
    }
  });

  it('equals explicit per-channel statistics through the Normalize (3 channels)', async () => {
    const mean = [0.3, 0.5, 0.7];
    const std = [0.2, 0.25, 0.3];
    const pipeline = new AugmentPipeline({ type: 'Compose', transforms: [{ type: 'Normalize', mean, std, max_pixel_value: 255, p: 1 }] });
    const ours = await preprocessImages(sources, { size: 90, channels: 3, mean, std });
    const before = await viaPipeline(pipeline, 90, 3);
    expect(await maxDiff(ours, before)).toBeLessThanOrEqual(1e-6);
    ours.dispose();
    before.dispose();
  });

  for (const channels of [1, 3] as const) {
    for (const stats of [IMAGENET_GRAY, { mean: 0.4, std: 0.3 }]) {
      it(`equals decodeBatch + mul(channels) unrounded (${channels} channel(s), mean ${stats.mean})`, async () => {
        for (const size of [128, 100]) {
          const spec: Preprocess = { size, channels, mean: [stats.mean], std: [stats.std], quantize: false };
          const ours = await preprocessImages(sources, spec);
          const before = await viaSegmenter(size, channels, stats);
          expect(ours.shape).toEqual([sources.length, channels, size, size]);
          // The same float arithmetic on both sides: bit for bit.
          expect(await maxDiff(ours, before)).toBe(0);
          ours.dispose();
          before.dispose();
        }
      });
    }
  }

  it('rounds to 8 bits before normalising by default, not with quantize false (a resized image differs)', async () => {
    const rounded = await preprocessImages(sources, { size: 100, channels: 1, mean: [0], std: [1] });
    const exact = await preprocessImages(sources, { size: 100, channels: 1, mean: [0], std: [1], quantize: false });
    const r = await rounded.data('float32');
    const e = await exact.data('float32');
    expect(r.every((v) => Math.abs(v * 255 - Math.round(v * 255)) < 1e-3)).toBe(true);
    expect(e.some((v) => Math.abs(v * 255 - Math.round(v * 255)) > 0.01)).toBe(true);
    rounded.dispose();
    exact.dispose();
  });

  it('rejects a bad spec naming the field, and names the file that cannot be read', async () => {
    await expect(preprocessImages(files, { size: 64, channels: 2 as 3, mean: [0], std: [1] })).rejects.toThrow(/preprocess\.channels/);
    await expect(preprocessImages(files, { size: 64, channels: 3, mean: [0, 1], std: [1] })).rejects.toThrow(/preprocess\.mean/);
    await expect(preprocessImages(files, { size: 64, channels: 1, mean: [0], std: [0] })).rejects.toThrow(/preprocess\.std\[0\]/);
    await expect(preprocessImages(files, { size: 0, channels: 1, mean: [0], std: [1] })).rejects.toThrow(/preprocess\.size/);
    const bad = join(dir, 'bad.dcm');
    writeFileSync(bad, Buffer.alloc(50));
    await expect(preprocessImages([files[0]!, bad], imagenetPreprocess(64, 3))).rejects.toThrow(/bad\.dcm/);
  });
});
