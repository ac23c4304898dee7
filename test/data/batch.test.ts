import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { ensureRuntime } from '../../src/core/runtime.js';
import { Tensor } from '../../src/core/tensor.js';
import { decodeBatch, hasNativeJpeg, imageSource, readImageBatch, stageToDevice } from '../../src/data/batch.js';
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

  describe('native file reading (SIIM fast path)', () => {
    /** Inserts a sequence of undefined length (one undefined-length item) at the data set's start. */
    function withSequence(bytes: Uint8Array): Buffer {
      const view = Buffer.from(bytes);
      expect(view.readUInt16LE(132)).toBe(0x0002); // (0002,0000) File Meta Information Group Length
      const start = 132 + 12 + view.readUInt32LE(140);
      const sq = Buffer.concat([
        Buffer.from([0x08, 0x00, 0x40, 0x11, 0x53, 0x51, 0, 0, 0xff, 0xff, 0xff, 0xff]), // (0008,1140) SQ, undefined length
        Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff]), // item, undefined length
        Buffer.from([0x08, 0x00, 0x50, 0x11, 0x55, 0x49, 4, 0]), // (0008,1150) UI, 4 bytes
        Buffer.from('1.2\0', 'latin1'),
        Buffer.from([0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0]), // item delimiter
        Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]), // sequence delimiter
      ]);
      return Buffer.concat([view.subarray(0, start), sq, view.subarray(start)]);
    }

    let files: Record<string, string>;
    beforeAll(async () => {
      const image = { pixels: source, width: SIZE, height: SIZE };
      const variants: Record<string, Uint8Array> = {
        'siim.dcm': await writeDicom(image, { encoding: 'jpeg-baseline', quality: 90 }),
        'fragments.dcm': await writeDicom(image, { encoding: 'jpeg-baseline', quality: 90, fragments: 3, offsetTable: true }),
        'mono1.dcm': await writeDicom(image, { encoding: 'jpeg-baseline', photometric: 'MONOCHROME1' }),
        'frames.dcm': await writeDicom({ pixels: Uint8Array.from([...source, ...source.map((v) => 255 - v)]), width: SIZE, height: SIZE }, { encoding: 'jpeg-baseline', frames: 2 }),
        'implicit.dcm': await writeDicom(image, { encoding: 'implicit-le' }),
        'plain.jpg': await sharp(source, { raw: { width: SIZE, height: SIZE, channels: 1 } }).jpeg({ quality: 90 }).toBuffer(),
      };
      variants['sequence.dcm'] = withSequence(variants['siim.dcm']!);
      const siim = Buffer.from(variants['siim.dcm']!);
      variants['truncated.dcm'] = siim.subarray(0, siim.length - 2000);
      files = {};
      for (const [name, bytes] of Object.entries(variants)) {
        files[name] = join(dir, name);
        writeFileSync(files[name]!, bytes);
      }
    });

    it('reads SIIM-like JPEG DICOMs and JPEG files natively, leaving every other file to the full reader', async () => {
      const names = ['siim.dcm', 'mono1.dcm', 'fragments.dcm', 'c.png', 'sequence.dcm', 'frames.dcm', 'implicit.dcm', 'plain.jpg', 'b.dcm'];
      const paths = names.map((n) => files[n] ?? join(dir, n));
      const { images, fallback } = await ensureRuntime().readImageFiles(paths, 64, false, 0, 1);
      new Tensor(images!).dispose();
      expect(fallback.map((i) => names[i])).toEqual(['mono1.dcm', 'c.png', 'frames.dcm', 'implicit.dcm', 'b.dcm']);
    });

    it('gives the same pixels as the TypeScript reader, row for row, in a mixed batch', async () => {
      const names = ['siim.dcm', 'mono1.dcm', 'fragments.dcm', 'c.png', 'sequence.dcm', 'frames.dcm', 'implicit.dcm', 'plain.jpg'];
      const paths = names.map((n) => files[n] ?? join(dir, n));
      for (const [size, normalize] of [
        [SIZE, false],
        [128, true],
        [100, false],
      ] as const) {
        const ours = await readImageBatch(paths, { size, normalize });
        const sources = await Promise.all(paths.map(async (p) => imageSource(await readFile(p), p)));
        const reference = await decodeBatch(sources, { size, normalize });
        expect(ours.shape).toEqual(reference.shape);
        expect(ours.dtype).toBe(normalize ? 'float32' : 'uint8');
        const a = ours.takeData(normalize ? 'float32' : 'uint8');
        const b = reference.takeData(normalize ? 'float32' : 'uint8');
        const plane = size * size;
        for (let row = 0; row < names.length; row += 1) {
          expect(Array.from(a.subarray(row * plane, (row + 1) * plane)), `${names[row]} at ${size}`).toEqual(Array.from(b.subarray(row * plane, (row + 1) * plane)));
        }
      }
    });

    it('leaves a truncated SIIM DICOM to the full reader, whose error names the file', async () => {
      const { images, fallback } = await ensureRuntime().readImageFiles([files['truncated.dcm']!, files['siim.dcm']!], 64, false, 0, 1);
      new Tensor(images!).dispose();
      expect(fallback).toEqual([0]);
      await expect(readImageBatch([files['siim.dcm']!, files['truncated.dcm']!], { size: 64 })).rejects.toThrow(/truncated\.dcm/);
      await expect(readImageBatch([files['siim.dcm']!, join(dir, 'missing.dcm')], { size: 64 })).rejects.toThrow(/missing\.dcm/);
    });

    it('decodes into chosen rows of an existing batch and rejects a batch of the wrong shape or dtype', async () => {
      const source0 = await imageSource(await readFile(join(dir, 'b.dcm')), 'b.dcm');
      const batch = Tensor.from(new Uint8Array(3 * 64 * 64).fill(7), [3, 1, 64, 64]);
      await ensureRuntime().decodeImageBatchInto(batch.native, [2], [source0], 64, false, 0, 1);
      const values = await batch.data('uint8');
      const alone = (await decodeBatch([source0], { size: 64 })).takeData('uint8');
      expect(values.subarray(0, 2 * 64 * 64).every((v) => v === 7)).toBe(true);
      expect(Array.from(values.subarray(2 * 64 * 64))).toEqual(Array.from(alone));
      await expect(ensureRuntime().decodeImageBatchInto(batch.native, [0], [source0], 64, true, 0.5, 0.5)).rejects.toThrow(/Expected a contiguous CPU \[B, 1, 64, 64\] Float batch/);
      await expect(ensureRuntime().decodeImageBatchInto(batch.native, [3], [source0], 64, false, 0, 1)).rejects.toThrow(/row 3 is outside the batch of 3/);
      batch.dispose();
    });

    it('reads into a given batch (a reused buffer): same pixels, the same tensor back, clear errors', async () => {
      const names = ['siim.dcm', 'c.png', 'fragments.dcm'];
      const paths = names.map((n) => files[n] ?? join(dir, n));
      for (const normalize of [false, true]) {
        const fresh = await readImageBatch(paths, { size: 64, normalize });
        const into = normalize ? Tensor.from(new Float32Array(3 * 64 * 64).fill(9), [3, 1, 64, 64]) : Tensor.from(new Uint8Array(3 * 64 * 64).fill(9), [3, 1, 64, 64]);
        for (let round = 0; round < 2; round += 1) {
          const back = await readImageBatch(paths, { size: 64, normalize, into });
          expect(back).toBe(into);
          expect(Array.from(await into.data(normalize ? 'float32' : 'uint8'))).toEqual(Array.from(await fresh.data(normalize ? 'float32' : 'uint8')));
        }
        const pngOnly = await readImageBatch([join(dir, 'c.png')], { size: 64, normalize, into: normalize ? Tensor.from(new Float32Array(64 * 64), [1, 1, 64, 64]) : Tensor.from(new Uint8Array(64 * 64), [1, 1, 64, 64]) });
        expect(Array.from(await pngOnly.data(normalize ? 'float32' : 'uint8'))).toEqual(Array.from((await fresh.data(normalize ? 'float32' : 'uint8')).subarray(64 * 64, 2 * 64 * 64)));
        pngOnly.dispose();
        fresh.dispose();
        into.dispose();
      }
      const wrong = Tensor.from(new Uint8Array(2 * 64 * 64), [2, 1, 64, 64]);
      await expect(readImageBatch(paths, { size: 64, into: wrong })).rejects.toThrow('Expected a uint8 Tensor of shape [3, 1, 64, 64] for into but received a uint8 Tensor of shape [2, 1, 64, 64]');
      await expect(readImageBatch(paths.slice(0, 2), { size: 64, normalize: true, into: wrong })).rejects.toThrow('Expected a float32 Tensor of shape [2, 1, 64, 64] for into but received a uint8 Tensor');
      await expect(readImageBatch(paths, { size: 64, into: new Uint8Array(4) as never })).rejects.toThrow(/Expected a uint8 Tensor of shape \[3, 1, 64, 64\] for into/);
      const kept = Tensor.from(new Uint8Array(2 * 64 * 64), [2, 1, 64, 64]);
      await expect(readImageBatch([files['siim.dcm']!, files['truncated.dcm']!], { size: 64, into: kept })).rejects.toThrow(/truncated\.dcm/);
      expect(kept.disposed).toBe(false);
      kept.dispose();
      wrong.dispose();
    });
  });
});

describe('stageToDevice', () => {
  it('returns CPU batches as they are on "cpu" and names what it cannot stage', async () => {
    const images = Tensor.from(Uint8Array.from([1, 2, 3, 4]), [1, 1, 2, 2]);
    const masks = Tensor.from(Uint8Array.from([0, 255, 255, 0]), [1, 1, 2, 2]);
    const [a, b] = await stageToDevice([images, masks], 'cpu');
    expect([...(await a!.data('uint8'))]).toEqual([1, 2, 3, 4]);
    expect([...(await b!.data('uint8'))]).toEqual([0, 255, 255, 0]);
    a!.dispose();
    b!.dispose();
    // The inputs stay the caller's.
    expect([...(await images.data('uint8'))]).toEqual([1, 2, 3, 4]);
    await expect(stageToDevice([images, 'x' as unknown as Tensor], 'cpu')).rejects.toThrow(/tensors/);
    await expect(stageToDevice([images], 'tpu')).rejects.toThrow(/tpu/);
    if (!(await ensureRuntime().runtimeInfo()).cudaAvailable) await expect(stageToDevice([images], 'cuda')).rejects.toThrow(/CUDA/);
    images.dispose();
    masks.dispose();
  });
});
