/**
 * The image store's native reader (native/data/image_batch.cpp readStoreBatch through
 * native/binding/store.cc): the same bytes as the JavaScript reader for random indices, resized
 * and normalised rows equal to the decoder's, the native CRC-32 equal to the JavaScript one, and
 * errors naming the file and the image (bad path, index out of range, truncated, damaged, never
 * written, closed).
 */
import { mkdtemp, open, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crc32 } from '../../src/core/checksum.js';
import { ensureRuntime } from '../../src/core/runtime.js';
import { Random } from '../../src/core/random.js';
import { decodeBatch } from '../../src/data/batch.js';
import { ImageStoreReader, ImageStoreWriter } from '../../src/data/image-store.js';

const SIZE = 24;
const COUNT = 9;
let dir: string;
let path: string;
const images: Uint8Array[] = [];
const masks: Uint8Array[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pn-store-native-'));
  path = join(dir, 'train.pnimg');
  const rng = new Random(7);
  const ids = Array.from({ length: COUNT }, (_, i) => `img${i}`);
  const writer = await ImageStoreWriter.create(path, { ids, size: SIZE, masks: true });
  for (let i = 0; i < COUNT; i++) {
    const image = Uint8Array.from({ length: SIZE * SIZE }, () => Math.floor(rng.next() * 256));
    const mask = Uint8Array.from({ length: SIZE * SIZE }, () => (rng.next() < 0.3 ? 255 : 0));
    images.push(image);
    masks.push(mask);
    await writer.write(i, image, mask);
  }
  await writer.close();
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('image store: native reader', () => {
  it('reads the same bytes as the JavaScript reader for random indices (repeats included)', async () => {
    const reader = await ImageStoreReader.open(path);
    try {
      const rng = new Random(3);
      for (let round = 0; round < 4; round++) {
        const order = Array.from({ length: 1 + Math.floor(rng.next() * 12) }, () => Math.floor(rng.next() * COUNT));
        const js = await reader.readBatch(order);
        const native = await reader.readTensors(order);
        expect(native.images.shape).toEqual([order.length, 1, SIZE, SIZE]);
        expect(native.images.dtype).toBe('uint8');
        expect(Buffer.compare(Buffer.from(native.images.takeData('uint8')), js.images)).toBe(0);
        expect(Buffer.compare(Buffer.from(native.masks!.takeData('uint8')), js.masks!)).toBe(0);
      }
      const onlyImages = await reader.readTensors([4, 1], { masks: false });
      expect(onlyImages.masks).toBeNull();
      expect(Array.from(onlyImages.images.takeData('uint8'))).toEqual([...images[4]!, ...images[1]!]);
    } finally {
      await reader.close();
    }
  });

  it('resizes (masks thresholded) and normalises as the batch decoder does', async () => {
    const reader = await ImageStoreReader.open(path);
    try {
      const order = [2, 7, 0];
      const raw = (planes: Uint8Array[]) => order.map((i) => ({ data: planes[i]!, jpeg: false as const, width: SIZE, height: SIZE }));
      for (const size of [16, 40]) {
        const native = await reader.readTensors(order, { size });
        const img = await decodeBatch(raw(images), { size });
        const msk = await decodeBatch(raw(masks), { size, threshold: true });
        expect(Array.from(native.images.takeData('uint8'))).toEqual(Array.from(img.takeData('uint8')));
        expect(Array.from(native.masks!.takeData('uint8'))).toEqual(Array.from(msk.takeData('uint8')));
      }
      const normalize = { mean: 0.485, std: 0.229 };
      const native = await reader.readTensors(order, { normalize, masks: false });
      expect(native.images.dtype).toBe('float32');
      const expected = await decodeBatch(raw(images), { size: SIZE, normalize });
      expect(Array.from(native.images.takeData('float32'))).toEqual(Array.from(expected.takeData('float32')));
    } finally {
      await reader.close();
    }
  });

  it('computes the same CRC-32 as the JavaScript one at every length and alignment', () => {
    const rng = new Random(11);
    const bytes = Uint8Array.from({ length: 4133 }, () => Math.floor(rng.next() * 256));
    for (const [start, end] of [[0, 0], [0, 1], [1, 8], [3, 67], [5, 4133], [0, 4096]] as const) {
      const part = bytes.subarray(start, end);
      expect(ensureRuntime().storeCrc32(part)).toBe(crc32(part));
      expect(ensureRuntime().storeCrc32(part, 0x1234abcd)).toBe(crc32(part, 0x1234abcd));
    }
  });

  it('names the file and the index: a bad path, an index out of range, a closed store', async () => {
    const missing = join(dir, 'missing.pnimg');
    expect(() => ensureRuntime().openImageStore(missing, { size: SIZE, count: 1, images: 4096, masks: null }, new Uint32Array(1), new Uint8Array(1))).toThrow(
      `${missing}: cannot open the image store`,
    );
    const reader = await ImageStoreReader.open(path);
    await expect(reader.readTensors([1, COUNT])).rejects.toThrow(`${path}: image index ${COUNT} is out of range (the store holds ${COUNT} images)`);
    await expect(reader.readTensors([-1])).rejects.toThrow(`${path}: image index -1 is out of range`);
    await reader.close();
    await expect(reader.readTensors([0])).rejects.toThrow(`${path}: the image store is closed`);
  });

  it('names the file and the image when the store is truncated, damaged or partly written', async () => {
    const copy = async (name: string): Promise<string> => {
      const to = join(dir, name);
      const fh = await open(to, 'w');
      await fh.write(await (await import('node:fs/promises')).readFile(path));
      await fh.close();
      return to;
    };
    // Truncated after the reader opened it: the native reader names the byte where it ends.
    const cut = await copy('cut.pnimg');
    const reader = await ImageStoreReader.open(cut);
    const end = reader.header.layout.masks! + (COUNT - 1) * SIZE * SIZE + 10;
    await truncate(cut, end);
    await expect(reader.readTensors([0])).rejects.toThrow(`${cut}: the image store is truncated`);
    await reader.close();

    const cutLater = await copy('cut-later.pnimg');
    const later = await ImageStoreReader.open(cutLater);
    await expect(later.readTensors([COUNT - 1])).resolves.toBeDefined();
    await truncate(cutLater, end);
    await expect(later.readTensors([0, COUNT - 1])).rejects.toThrow(`${cutLater}: the image store ends early (truncated at byte ${end}`);
    await later.close();

    // A damaged image byte: the checksum names the image and its id.
    const damaged = await copy('damaged.pnimg');
    const bad = await ImageStoreReader.open(damaged);
    const fh = await open(damaged, 'r+');
    await fh.write(Buffer.from([images[5]![3]! ^ 0xff]), 0, 1, bad.header.layout.images + 5 * SIZE * SIZE + 3);
    await fh.close();
    await expect(bad.readTensors([4])).resolves.toBeDefined();
    await expect(bad.readTensors([4, 5])).rejects.toThrow(`${damaged}: image 5 (img5) is damaged: checksum`);
    await bad.close();

    // An image never written (an interrupted conversion).
    const partial = join(dir, 'partial.pnimg');
    const writer = await ImageStoreWriter.create(partial, { ids: ['a', 'b'], size: SIZE, masks: true });
    await writer.write(0, images[0]!, masks[0]!);
    await writer.close();
    const part = await ImageStoreReader.open(partial, { requireComplete: false });
    await expect(part.readTensors([0])).resolves.toBeDefined();
    await expect(part.readTensors([1])).rejects.toThrow(`${partial}: image 1 (b) was never written`);
    await part.close();
  });
});
