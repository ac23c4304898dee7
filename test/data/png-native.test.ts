/**
 * Native PNG decoding (libpng) in the batch path: gray PNGs never go through JavaScript and decode
 * to exactly what sharp gives; every other PNG falls back to sharp with the same result or the
 * same error; masks are resized and thresholded natively exactly as the loader did in JavaScript.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import type { PngOptions } from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { ensureRuntime } from '../../src/core/runtime.js';
import { Tensor } from '../../src/core/tensor.js';
import { decodeBatch, hasNativePng, imageSource, readImageBatch } from '../../src/data/batch.js';

let dir: string;
const rng = new Random(3);

function noise(w: number, h: number): Uint8Array {
  return Uint8Array.from({ length: w * h }, (_, i) => (((i % w) * 3 + Math.floor(i / w) * 5) & 0xff) ^ rng.int(0, 40));
}

/** A 0/255 mask of a few discs. */
function blobs(size: number): Uint8Array {
  const m = new Uint8Array(size * size);
  for (let d = 0; d < 4; d++) {
    const cx = rng.int(0, size - 1);
    const cy = rng.int(0, size - 1);
    const r = rng.int(3, size / 4);
    for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) m[y * size + x] = 255;
  }
  return m;
}

async function gray(pixels: Uint8Array, w: number, h: number, png: PngOptions = {}): Promise<Buffer> {
  return sharp(pixels, { raw: { width: w, height: h, channels: 1 } }).toColourspace('b-w').png(png).toBuffer();
}

async function sharpGray(path: string): Promise<Uint8Array> {
  return new Uint8Array(await sharp(await readFile(path)).toColourspace('b-w').raw().toBuffer());
}

const files: Record<string, string> = {};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pn-png-'));
  const put = (name: string, bytes: Uint8Array) => {
    files[name] = join(dir, name);
    writeFileSync(files[name]!, bytes);
  };
  put('plain.png', await gray(noise(64, 64), 64, 64));
  put('fast.png', await gray(noise(64, 64), 64, 64, { compressionLevel: 1, adaptiveFiltering: true }));
  put('interlaced.png', await gray(noise(64, 64), 64, 64, { progressive: true }));
  put('odd.png', await gray(noise(37, 53), 37, 53));
  put('mask.png', await gray(blobs(64), 64, 64));
  put('rgb.png', await sharp(noise(64, 64 * 3), { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer());
  const good = await gray(noise(64, 64), 64, 64);
  put('truncated.png', good.subarray(0, Math.floor(good.length * 0.6)));
  const corrupt = Buffer.from(good);
  corrupt[corrupt.length - 30] = corrupt[corrupt.length - 30]! ^ 0xff; // inside IDAT: bad CRC / data
  put('corrupt.png', corrupt);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('native PNG decoding', () => {
  it('is built with libpng here (setup installs libpng-dev)', () => {
    expect(hasNativePng()).toBe(true);
  });

  it('decodes gray PNGs (any filter, interlaced, odd sizes) natively, equal to sharp', async () => {
    for (const name of ['plain.png', 'fast.png', 'interlaced.png', 'mask.png']) {
      const { images, fallback } = await ensureRuntime().readImageFiles([files[name]!], 64, false, 0, 1, 0);
      expect(fallback, name).toEqual([]);
      const t = new Tensor(images!);
      expect(Buffer.compare(Buffer.from(t.takeData('uint8')), Buffer.from(await sharpGray(files[name]!))), name).toBe(0);
    }
    // Another size: the native decode then the same bilinear resize sharp's pixels would get.
    const odd = await ensureRuntime().readImageFiles([files['odd.png']!], 48, false, 0, 1, 0);
    expect(odd.fallback).toEqual([]);
    const viaSharp = await decodeBatch([{ data: await sharpGray(files['odd.png']!), jpeg: false, width: 37, height: 53 }], { size: 48 });
    expect(Buffer.compare(Buffer.from(new Tensor(odd.images!).takeData('uint8')), Buffer.from(viaSharp.takeData('uint8')))).toBe(0);
  });

  it('leaves colour, truncated and corrupt PNGs to sharp: same pixels, or an error naming the file', async () => {
    const paths = [files['plain.png']!, files['rgb.png']!, files['truncated.png']!, files['corrupt.png']!];
    const { images, fallback } = await ensureRuntime().readImageFiles(paths, 64, false, 0, 1, 0);
    new Tensor(images!).dispose();
    expect(fallback).toEqual([1, 2, 3]);
    const rgb = await readImageBatch([files['rgb.png']!], { size: 64 });
    const src = await imageSource(await readFile(files['rgb.png']!), files['rgb.png']!);
    expect(Buffer.compare(Buffer.from(rgb.takeData('uint8')), Buffer.from(src.data))).toBe(0);
    await expect(readImageBatch([files['plain.png']!, files['truncated.png']!], { size: 64 })).rejects.toThrow(files['truncated.png']!);
    await expect(readImageBatch([files['corrupt.png']!], { size: 64 })).rejects.toThrow(files['corrupt.png']!);
  });

  it('normalises natively decoded PNGs as it does every other source', async () => {
    const t = await readImageBatch([files['plain.png']!], { size: 64, normalize: true });
    const px = await sharpGray(files['plain.png']!);
    const values = t.takeData('float32');
    let worst = 0;
    for (let i = 0; i < px.length; i++) worst = Math.max(worst, Math.abs(values[i]! - (px[i]! / 255 - 0.485) / 0.229));
    expect(worst).toBeLessThan(1e-5);
  });
});

describe('masks thresholded natively', () => {
  for (const size of [64, 48, 97]) {
    it(`equals the JavaScript threshold of the bilinear resize at ${size} px (native PNG and sharp sources)`, async () => {
      const resized = (await readImageBatch([files['mask.png']!], { size })).takeData('uint8');
      const expected = resized.map((v) => (v >= 128 ? 255 : 0));
      const native = (await readImageBatch([files['mask.png']!], { size, threshold: true })).takeData('uint8');
      expect(Buffer.compare(Buffer.from(native), Buffer.from(expected))).toBe(0);
      const viaSharp = (await decodeBatch([{ data: await sharpGray(files['mask.png']!), jpeg: false, width: 64, height: 64 }], { size, threshold: true })).takeData('uint8');
      expect(Buffer.compare(Buffer.from(viaSharp), Buffer.from(expected))).toBe(0);
      expect(native.every((v) => v === 0 || v === 255)).toBe(true);
    });
  }

  it('refuses threshold with normalize', async () => {
    await expect(readImageBatch([files['mask.png']!], { size: 64, threshold: true, normalize: true })).rejects.toThrow(/threshold/);
  });
});
