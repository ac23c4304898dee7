import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { decodeBatch, hasNativeJpeg, imageSource, readImageBatch } from '../../src/data/batch.js';
import { read, writeDicom } from '../../src/data/dicom.js';

const SIZE = 256;
let dir: string;
let source: Uint8Array;

/** A smooth test pattern with edges: gradients, a bright disc and a dark bar. */
function pattern(size: number): Uint8Array {
  const px = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let v = 40 + (150 * x) / size + (40 * y) / size;
      if ((x - size * 0.6) ** 2 + (y - size * 0.4) ** 2 < (size * 0.15) ** 2) v = 235;
      if (y > size * 0.75 && y < size * 0.8) v = 10;
      px[y * size + x] = Math.round(v);
    }
  }
  return px;
}

function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pn-batch-'));
  source = pattern(SIZE);
  writeFileSync(join(dir, 'a.dcm'), await writeDicom({ pixels: source, width: SIZE, height: SIZE }, { encoding: 'jpeg-baseline', quality: 95 }));
  writeFileSync(join(dir, 'b.dcm'), await writeDicom({ pixels: source, width: SIZE, height: SIZE }, { encoding: 'explicit-le' }));
  writeFileSync(join(dir, 'c.png'), await sharp(source, { raw: { width: SIZE, height: SIZE, channels: 1 } }).png().toBuffer());
  writeFileSync(join(dir, 'bad.dcm'), Buffer.alloc(50));
});

describe('native image batches', () => {
  it('is built with libjpeg-turbo here (setup installs libturbojpeg0-dev)', () => {
    expect(hasNativeJpeg()).toBe(true);
  });

  it('decodes SIIM-like JPEG DICOMs at full size exactly like the reference reader', async () => {
    const batch = await readImageBatch([join(dir, 'a.dcm')], { size: SIZE });
    expect(batch.shape).toEqual([1, 1, SIZE, SIZE]);
    expect(batch.dtype).toBe('uint8');
    const reference = await read(join(dir, 'a.dcm'));
    const ours = batch.takeData('uint8');
    expect(meanAbsDiff(ours, reference.pixels)).toBeLessThan(0.05);
    expect(meanAbsDiff(ours, source)).toBeLessThan(3);
  });

  it('downscales with DCT scaling close to a full decode + bilinear resize', async () => {
    const half = (await readImageBatch([join(dir, 'a.dcm')], { size: SIZE / 2 })).takeData('uint8');
    const reference = await read(join(dir, 'a.dcm'), { size: SIZE / 2 });
    expect(half.length).toBe((SIZE / 2) ** 2);
    expect(meanAbsDiff(half, reference.pixels)).toBeLessThan(2.5);
    const odd = (await readImageBatch([join(dir, 'a.dcm')], { size: 100 })).takeData('uint8');
    const oddRef = await read(join(dir, 'a.dcm'), { size: 100 });
    expect(meanAbsDiff(odd, oddRef.pixels)).toBeLessThan(3);
  });

  it('mixes encodings in one batch (JPEG DICOM, native DICOM, PNG) and normalises in the same pass', async () => {
    const files = ['a.dcm', 'b.dcm', 'c.png'].map((f) => join(dir, f));
    const u8 = (await readImageBatch(files, { size: 128 })).takeData('uint8');
    const f32 = await readImageBatch(files, { size: 128, normalize: true });
    expect(f32.shape).toEqual([3, 1, 128, 128]);
    expect(f32.dtype).toBe('float32');
    const values = f32.takeData('float32');
    // Normalised from the unrounded resampled value: within half a gray level of the uint8 output.
    const halfLevel = 0.5 / 255 / 0.229 + 1e-6;
    for (let i = 0; i < values.length; i += 97) expect(Math.abs(values[i]! - (u8[i]! / 255 - 0.485) / 0.229)).toBeLessThanOrEqual(halfLevel);
    // The lossless DICOM and the PNG give identical pixels.
    const plane = 128 * 128;
    expect(Array.from(u8.subarray(plane, 2 * plane))).toEqual(Array.from(u8.subarray(2 * plane)));
    const custom = (await readImageBatch([files[1]!], { size: 128, normalize: { mean: 0.5, std: 0.5 } })).takeData('float32');
    expect(Math.abs(custom[0]! - (u8[plane]! / 255 - 0.5) / 0.5)).toBeLessThanOrEqual(0.5 / 255 / 0.5 + 1e-6);
  });

  it('names the failing file, and rejects bad options', async () => {
    await expect(readImageBatch([join(dir, 'a.dcm'), join(dir, 'bad.dcm')], { size: 64 })).rejects.toThrow(/bad\.dcm/);
    await expect(readImageBatch([join(dir, 'a.dcm')], { size: 0 })).rejects.toThrow(/Expected an integer between 1 and 16384 for size but received 0/);
    const truncated = { data: (await imageSource(await import('node:fs/promises').then((f) => f.readFile(join(dir, 'c.png'))), 'c.png')).data.subarray(0, 10), jpeg: false as const, width: SIZE, height: SIZE };
    await expect(decodeBatch([truncated], { size: 64 }, ['broken.raw'])).rejects.toThrow(/broken\.raw.*raw pixels hold 10 bytes/);
    const corruptJpeg = { data: Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 4, 1, 2]), jpeg: true as const };
    await expect(decodeBatch([corruptJpeg], { size: 64 }, ['corrupt.jpg'])).rejects.toThrow(/corrupt\.jpg/);
  });
});
