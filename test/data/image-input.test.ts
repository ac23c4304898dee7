/**
 * The one image entry point (readImageInput / readImageFile): every format to what the native
 * decoder takes, decoding to exactly what the training reader (readImageBatch, native fast paths
 * included) gives for the same file; header-checked size limits; errors naming the input; and the
 * Segmenter's prepareInput as its thin SegmenterError wrapper.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeBatch, readImageBatch } from '../../src/data/batch.js';
import { writeDicom } from '../../src/data/dicom.js';
import { ImageInputError, hasNativeJpeg, readImageFile, readImageInput } from '../../src/data/image-input.js';
import type { InputFormat } from '../../src/data/image-input.js';
import { SegmenterError } from '../../src/serve/errors.js';
import { prepareInput } from '../../src/serve/input.js';

let dir: string;
const files: Record<string, string> = {};
const W = 72;
const H = 56;

function pattern(width: number, height: number, channels = 1): Uint8Array {
  const px = new Uint8Array(width * height * channels);
  for (let i = 0; i < px.length; i++) {
    const p = Math.floor(i / channels);
    const x = p % width;
    const y = Math.floor(p / width);
    px[i] = (30 + 2 * x + y + 40 * (i % channels) + ((x * y) % 23)) & 0xff;
  }
  return px;
}

const expected: Record<string, InputFormat> = {
  'gray.png': 'png',
  'rgb.png': 'png',
  'alpha.png': 'png',
  'gray.jpg': 'jpeg',
  'colour.jpg': 'jpeg',
  'cmyk.jpg': 'jpeg',
  'siim.dcm': 'dicom',
  'raw.dcm': 'dicom',
  // A DICOM whatever its name.
  'dicom.bin': 'dicom',
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pn-image-input-'));
  const gray = pattern(W, H);
  const raw1 = { raw: { width: W, height: H, channels: 1 as const } };
  const raw3 = { raw: { width: W, height: H, channels: 3 as const } };
  const put = (name: string, bytes: Uint8Array) => {
    files[name] = join(dir, name);
    writeFileSync(files[name]!, bytes);
  };
  put('gray.png', await sharp(gray, raw1).png().toBuffer());
  put('rgb.png', await sharp(pattern(W, H, 3), raw3).png().toBuffer());
  put('alpha.png', await sharp(pattern(W, H, 2), { raw: { width: W, height: H, channels: 2 } }).png().toBuffer());
  put('gray.jpg', await sharp(gray, raw1).toColourspace('b-w').jpeg({ quality: 90 }).toBuffer());
  put('colour.jpg', await sharp(pattern(W, H, 3), raw3).jpeg({ quality: 90 }).toBuffer());
  put('cmyk.jpg', await sharp(pattern(W, H, 3), raw3).toColourspace('cmyk').jpeg({ quality: 90 }).toBuffer());
  put('siim.dcm', await writeDicom({ pixels: gray, width: W, height: H }, { encoding: 'jpeg-baseline', quality: 90 }));
  put('raw.dcm', await writeDicom({ pixels: gray, width: W, height: H }, { encoding: 'explicit-le' }));
  put('dicom.bin', await readFile(files['raw.dcm']!));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('readImageInput', () => {
  it('reads every format, with its size, to the pixels the training reader gives for the file', async () => {
    for (const [name, format] of Object.entries(expected)) {
      const bytes = await readFile(files[name]!);
      const input = await readImageInput(bytes, name);
      expect([input.format, input.width, input.height], name).toEqual([format, W, H]);
      for (const size of [W, 48]) {
        const viaEntry = (await decodeBatch([input.source], { size }, [name])).takeData('uint8');
        const training = (await readImageBatch([files[name]!], { size })).takeData('uint8');
        expect(Buffer.compare(Buffer.from(viaEntry), Buffer.from(training)), `${name} at ${size}`).toBe(0);
      }
    }
  });

  it('keeps 8-bit gray and colour JPEG data for libjpeg-turbo, and decodes CMYK with sharp', async () => {
    const kind = async (name: string) => (await readImageInput(await readFile(files[name]!), name)).source.jpeg;
    expect(await kind('gray.jpg')).toBe(hasNativeJpeg());
    expect(await kind('colour.jpg')).toBe(hasNativeJpeg());
    expect(await kind('siim.dcm')).toBe(hasNativeJpeg());
    expect(await kind('cmyk.jpg')).toBe(false);
    expect(await kind('raw.dcm')).toBe(false);
  });

  it('passes raw pixels on, checked', async () => {
    const data = pattern(W, H);
    expect(await readImageInput({ data, width: W, height: H }, 'pixels')).toEqual({ source: { data, jpeg: false, width: W, height: H }, width: W, height: H, format: 'raw' });
    await expect(readImageInput({ data, width: W, height: H + 1 }, 'pixels')).rejects.toThrow(`pixels: Expected ${W * (H + 1)} bytes (${W}x${H + 1}) for input.data but received ${W * H}`);
  });

  it('refuses images over maxPixels from their header, naming the input', async () => {
    for (const name of [...Object.keys(expected)]) {
      const err = await readImageInput(await readFile(files[name]!), name, { maxPixels: W * H - 1 }).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(ImageInputError);
      expect((err as ImageInputError).tooLarge, name).toBe(true);
      expect((err as ImageInputError).message, name).toBe(`${name}: the ${expected[name] === 'dicom' ? 'DICOM' : expected[name]!.toUpperCase()} is ${W}x${H} (${W * H} pixels); the limit is ${W * H - 1} pixels`);
      expect((await readImageInput(await readFile(files[name]!), name, { maxPixels: W * H })).width, name).toBe(W);
    }
    const raw = await readImageInput({ data: new Uint8Array(W * H), width: W, height: H }, 'pixels', { maxPixels: 10 }).catch((e: unknown) => e);
    expect(raw).toMatchObject({ tooLarge: true, message: expect.stringMatching(/^pixels: the raw image is 72x56/) });
  });

  it('names the input and the reason for what it cannot read', async () => {
    const png = await readFile(files['gray.png']!);
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array(0), /^x: the input is empty$/],
      [Buffer.from('junk that is no image'), /^x: the input is not a DICOM \("DICM" at byte 128\), PNG or JPEG file \(21 bytes starting 6a756e6b20746861\)$/],
      [png.subarray(0, png.length >> 1), /^x: the PNG is truncated or corrupt/],
      [(await readFile(files['gray.jpg']!)).subarray(0, 12), /^x: the JPEG cannot be read/],
      [(await readFile(files['raw.dcm']!)).subarray(0, 400), /^x: the DICOM cannot be decoded: /],
    ];
    for (const [bytes, message] of cases) {
      const err = await readImageInput(bytes, 'x').catch((e: unknown) => e);
      expect(err, String(message)).toBeInstanceOf(ImageInputError);
      expect((err as ImageInputError).tooLarge).toBe(false);
      expect((err as ImageInputError).message).toMatch(message);
    }
    await expect(readImageFile(join(dir, 'missing.png'))).rejects.toThrow(`${join(dir, 'missing.png')}: cannot read the file (ENOENT)`);
    const cut = join(dir, 'cut.png');
    writeFileSync(cut, png.subarray(0, png.length >> 1));
    await expect(readImageBatch([cut], { size: 32 })).rejects.toThrow(`${cut}: the PNG is truncated or corrupt`);
  });
});

describe('prepareInput (the Segmenter) is the entry point with SegmenterErrors', () => {
  it('gives the same prepared input, and INPUT_TOO_LARGE / BAD_INPUT with the reason', async () => {
    for (const name of Object.keys(expected)) {
      const bytes = await readFile(files[name]!);
      expect(await prepareInput(bytes, 1 << 24), name).toEqual(await readImageInput(bytes, name, { maxPixels: 1 << 24 }));
    }
    const big = await prepareInput(await readFile(files['siim.dcm']!), 100).catch((e: unknown) => e);
    expect(big).toBeInstanceOf(SegmenterError);
    expect(big).toMatchObject({ code: 'INPUT_TOO_LARGE', message: `the DICOM is ${W}x${H} (${W * H} pixels); the limit is 100 pixels` });
    const bad = await prepareInput(new Uint8Array(0), 100).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: 'BAD_INPUT', message: 'the input is empty' });
    expect((bad as SegmenterError).cause).toBeInstanceOf(ImageInputError);
  });
});
