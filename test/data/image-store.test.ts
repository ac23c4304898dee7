/**
 * The prepared image store (`.pnimg`): round trip against the PNGs, resumable conversion, every
 * kind of damage named, and the training loader giving identical batches from the store and from
 * the PNG folder.
 */
import { copyFile, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertToStore, ImageStoreReader, ImageStoreWriter, storePath } from '../../src/data/image-store.js';
import { AugmentPipeline } from '../../src/training/augment/pipeline.js';
import { BatchLoader, openPreparedDataset, readSamples } from '../../src/training/loader.js';
import { makeTrainFixture, type TrainFixture } from '../training/train-fixture.js';
import { runCli } from '../helpers/cli.js';

let fixture: TrainFixture;
let store: string;

beforeAll(async () => {
  fixture = await makeTrainFixture(12, 64, 3);
  store = storePath(fixture.data, 'train');
  const report = await convertToStore({ dir: fixture.data, split: 'train' });
  expect(report).toMatchObject({ split: 'train', size: 64, count: 12, written: 12, skipped: 0 });
}, 120_000);
afterAll(() => rm(fixture.root, { recursive: true, force: true }));

async function sharpGray(path: string): Promise<Uint8Array> {
  return new Uint8Array(await sharp(path).toColourspace('b-w').raw().toBuffer());
}

describe('image store', () => {
  it('holds every image and mask exactly as sharp decodes the PNGs, with a page-aligned layout', async () => {
    const reader = await ImageStoreReader.open(store);
    try {
      expect(reader.count).toBe(12);
      expect(reader.size).toBe(64);
      expect(reader.hasMasks).toBe(true);
      expect([...reader.ids]).toEqual([...reader.ids].sort());
      expect(reader.producer).toMatchObject({ command: 'store', split: 'train', prepare: { imgSize: 64 } });
      expect(reader.header.layout.images % 4096).toBe(0);
      expect(reader.header.layout.masks! % 4096).toBe(0);
      const order = [5, 0, 11, 3];
      const { images, masks } = await reader.readBatch(order);
      for (let k = 0; k < order.length; k++) {
        const id = reader.ids[order[k]!]!;
        expect(Buffer.compare(images.subarray(k * 4096, (k + 1) * 4096), await sharpGray(join(fixture.data, 'train', `${id}.png`)))).toBe(0);
        expect(Buffer.compare(masks!.subarray(k * 4096, (k + 1) * 4096), await sharpGray(join(fixture.data, 'mask', `${id}.png`)))).toBe(0);
      }
    } finally {
      await reader.close();
    }
  });

  it('resumes an interrupted conversion and ends byte for byte equal to a clean one', async () => {
    const out = join(fixture.root, 'resumed.pnimg');
    let calls = 0;
    await expect(
      convertToStore({
        dir: fixture.data,
        split: 'train',
        out,
        batch: 4,
        onProgress: () => {
          if (++calls === 2) throw new Error('interrupted');
        },
      }),
    ).rejects.toThrow('interrupted');
    // A partial store is refused by readers, naming what is missing.
    await expect(ImageStoreReader.open(out)).rejects.toThrow(/8 of 12 images were never written .*rerun `pneumo-native store` to resume/);
    const resumed = await convertToStore({ dir: fixture.data, split: 'train', out, batch: 4 });
    expect(resumed).toMatchObject({ written: 8, skipped: 4, count: 12 });
    expect(Buffer.compare(await readFile(out), await readFile(store))).toBe(0);
    // A complete store converts nothing again.
    expect(await convertToStore({ dir: fixture.data, split: 'train', out })).toMatchObject({ written: 0, skipped: 12 });
  });

  it('refuses to resume into a store of other images unless told to overwrite', async () => {
    const out = join(fixture.root, 'other.pnimg');
    const writer = await ImageStoreWriter.create(out, { ids: ['a', 'b'], size: 64, masks: true });
    await writer.close();
    await expect(convertToStore({ dir: fixture.data, split: 'train', out })).rejects.toThrow(`${out} already holds other images`);
    expect(await convertToStore({ dir: fixture.data, split: 'train', out, overwrite: true })).toMatchObject({ written: 12 });
  });

  it('names the file and the image when a store is damaged, truncated or not a store', async () => {
    const reader = await ImageStoreReader.open(store);
    const { layout } = reader.header;
    const id3 = reader.ids[3]!;
    await reader.close();

    const damaged = join(fixture.root, 'damaged.pnimg');
    await copyFile(store, damaged);
    const fh = await open(damaged, 'r+');
    await fh.write(Buffer.from([0x5a]), 0, 1, layout.masks! + 3 * layout.imageBytes + 100);
    await fh.close();
    const bad = await ImageStoreReader.open(damaged);
    await expect(bad.readBatch([2])).resolves.toBeDefined();
    await expect(bad.readBatch([1, 3])).rejects.toThrow(`${damaged}: image 3 (${id3}) is damaged: checksum`);
    await bad.close();

    const truncated = join(fixture.root, 'truncated.pnimg');
    await copyFile(store, truncated);
    await truncate(truncated, (await stat(store)).size - 10);
    await expect(ImageStoreReader.open(truncated)).rejects.toThrow(`${truncated}: the image store is truncated`);

    const header = join(fixture.root, 'header.pnimg');
    const bytes = await readFile(store);
    bytes[40] = bytes[40]! ^ 0x01;
    await writeFile(header, bytes);
    await expect(ImageStoreReader.open(header)).rejects.toThrow(`${header}: the image store header is damaged (checksum`);

    const notStore = join(fixture.root, 'not.pnimg');
    await writeFile(notStore, Buffer.from('PNMAPS\0\x01 and more bytes here'));
    await expect(ImageStoreReader.open(notStore)).rejects.toThrow(`${notStore}: not a pneumo-native image store (bad magic`);
    await writeFile(notStore, Buffer.from('short'));
    await expect(ImageStoreReader.open(notStore)).rejects.toThrow('shorter than its 16-byte preamble');
  });

  it('names the missing masks of a folder that cannot be converted', async () => {
    await expect(convertToStore({ dir: join(fixture.root, 'nowhere'), split: 'train' })).rejects.toThrow(/cannot list the prepared train\/ folder/);
  });
});

describe('training from the store', () => {
  it('opens the store when the folder has one, the PNGs with store: png', async () => {
    const fromStore = await openPreparedDataset(fixture.data, 'folds.csv');
    const fromPng = await openPreparedDataset(fixture.data, 'folds.csv', { store: 'png' });
    expect(fromStore.store?.path).toBe(store);
    expect(fromPng.store).toBeNull();
    expect(fromStore.preparedSize).toBe(fromPng.preparedSize);
    expect(fromStore.samples.map((s) => s.id)).toEqual(fromPng.samples.map((s) => s.id));
    await fromStore.store?.close();
  });

  for (const size of [64, 48]) {
    it(`yields identical augmented batches from the store and from the PNG folder (${size} px from 64)`, async () => {
      const fromStore = await openPreparedDataset(fixture.data, 'folds.csv');
      const fromPng = await openPreparedDataset(fixture.data, 'folds.csv', { store: 'png' });
      const pipeline = AugmentPipeline.preset('first-place');
      const options = { size, batchSize: 4, pipeline, channels: 3 as const, depth: 2 };
      const a = new BatchLoader(fromStore.samples, options);
      const b = new BatchLoader(fromPng.samples, options);
      const order = Int32Array.from([7, 2, 9, 0, 11, 4, 1, 5]);
      const batchesA = [];
      for await (const batch of a.epoch(order, 99)) batchesA.push(batch);
      let n = 0;
      for await (const batch of b.epoch(order, 99)) {
        const other = batchesA[n++]!;
        expect(other.ids).toEqual(batch.ids);
        expect(Buffer.compare(Buffer.from(other.images.dataSync('float32').buffer), Buffer.from(batch.images.dataSync('float32').buffer))).toBe(0);
        expect(Buffer.compare(Buffer.from(other.masks.dataSync('float32').buffer), Buffer.from(batch.masks.dataSync('float32').buffer))).toBe(0);
        batch.dispose();
        other.dispose();
      }
      expect(n).toBe(2);
      // Raw reads agree too, masks binary after the resize.
      const [si, sm] = await readSamples(fromStore.samples.slice(0, 3), size);
      const [pi, pm] = await readSamples(fromPng.samples.slice(0, 3), size);
      expect(Buffer.compare(Buffer.from(si.dataSync('uint8')), Buffer.from(pi.dataSync('uint8')))).toBe(0);
      const maskBytes = sm.dataSync('uint8');
      expect(Buffer.compare(Buffer.from(maskBytes), Buffer.from(pm.dataSync('uint8')))).toBe(0);
      expect(maskBytes.every((v) => v === 0 || v === 255)).toBe(true);
      for (const t of [si, sm, pi, pm]) t.dispose();
      await fromStore.store?.close();
    });
  }

  it('refuses a store that lacks images of the folds file, naming them', async () => {
    const partial = join(fixture.root, 'few.pnimg');
    const writer = await ImageStoreWriter.create(partial, { ids: ['x'], size: 64, masks: true });
    await writer.write(0, new Uint8Array(4096), new Uint8Array(4096));
    await writer.close();
    await expect(openPreparedDataset(fixture.data, 'folds.csv', { store: partial })).rejects.toThrow(`${partial} lacks 12 images listed in`);
  });
});

describe('the store command', () => {
  it('converts a prepared folder (JSON report), resumes as a no-op, and rejects a bad --split', async () => {
    const out = join(fixture.root, 'cli.pnimg');
    const first = await runCli(['store', '--data', fixture.data, '--split', 'train', '--out', out, '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject([{ split: 'train', out, size: 64, count: 12, written: 12, skipped: 0 }]);
    expect(Buffer.compare(await readFile(out), await readFile(store))).toBe(0);
    const again = await runCli(['store', '--data', fixture.data, '--out', out, '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject([{ written: 0, skipped: 12 }]);
    const bad = await runCli(['store', '--data', fixture.data, '--split', 'valid']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--split: expected train or test but got "valid"');
  }, 60_000);
});
