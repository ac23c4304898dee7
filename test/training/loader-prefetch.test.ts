/**
 * The BatchLoader's prefetch (batches read, decoded and augmented ahead of the consumer): the same
 * batches, byte for byte and in the same order, whatever the depth and whether loaded one at a
 * time, from the image store and from the PNG folder; batches prepared ahead are disposed when the
 * consumer stops early; the consumer's wait is counted.
 */
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveSeed } from '../../src/core/random.js';
import { counters } from '../../src/core/runtime.js';
import { convertToStore } from '../../src/data/image-store.js';
import { AugmentPipeline } from '../../src/training/augment/pipeline.js';
import { BatchLoader, openPreparedDataset } from '../../src/training/loader.js';
import type { LoadedBatch, PreparedDataset } from '../../src/training/loader.js';
import { makeTrainFixture, type TrainFixture } from './train-fixture.js';

let fixture: TrainFixture;
let fromStore: PreparedDataset;
let fromPng: PreparedDataset;

beforeAll(async () => {
  fixture = await makeTrainFixture(10, 64, 2);
  await convertToStore({ dir: fixture.data, split: 'train' });
  fromStore = await openPreparedDataset(fixture.data, 'folds.csv');
  fromPng = await openPreparedDataset(fixture.data, 'folds.csv', { store: 'png' });
  expect(fromStore.store).not.toBeNull();
}, 120_000);
afterAll(async () => {
  await fromStore?.store?.close();
  await rm(fixture.root, { recursive: true, force: true });
});

interface Seen {
  index: number;
  ids: string[];
  images: number[];
  masks: number[];
  labels: number[];
}

async function snapshot(b: LoadedBatch): Promise<Seen> {
  const seen = { index: b.index, ids: b.ids, images: Array.from(await b.images.data('float32')), masks: Array.from(await b.masks.data('float32')), labels: Array.from(await b.labels.data('float32')) };
  b.dispose();
  return seen;
}

const order = Int32Array.from([7, 2, 9, 0, 4, 1, 8, 3, 6, 5]);
const SEED = 1234;

describe('BatchLoader prefetch', () => {
  for (const source of ['store', 'png'] as const) {
    it(`yields the same batches in the same order at every depth and one at a time (${source})`, async () => {
      const dataset = source === 'store' ? fromStore : fromPng;
      const options = { size: 48, batchSize: 3, pipeline: AugmentPipeline.preset('first-place'), channels: 3 as const };
      // One at a time: what a loop without prefetch loads.
      const plain = new BatchLoader(dataset.samples, { ...options, depth: 1 });
      const expected: Seen[] = [];
      for (let b = 0; b * 3 < order.length; b++) expected.push(await snapshot(await plain.load(order.subarray(b * 3, (b + 1) * 3), deriveSeed(SEED, b), b)));
      expect(expected.map((s) => s.ids.length)).toEqual([3, 3, 3, 1]);
      for (const depth of [1, 2, 4]) {
        const loader = new BatchLoader(dataset.samples, { ...options, depth });
        const got: Seen[] = [];
        for await (const b of loader.epoch(order, SEED)) got.push(await snapshot(b));
        expect(got.map((s) => s.index)).toEqual([0, 1, 2, 3]);
        expect(got).toEqual(expected);
        expect(loader.batchesLoaded).toBe(4);
        expect(loader.waitSeconds).toBeGreaterThanOrEqual(0);
      }
    });
  }

  it('gives the same batches from the store and from the PNG folder', async () => {
    const options = { size: 64, batchSize: 5, pipeline: AugmentPipeline.preset('first-place'), channels: 3 as const, depth: 3 };
    const run = async (dataset: PreparedDataset): Promise<Seen[]> => {
      const out: Seen[] = [];
      for await (const b of new BatchLoader(dataset.samples, options).epoch(order, SEED)) out.push(await snapshot(b));
      return out;
    };
    expect(await run(fromStore)).toEqual(await run(fromPng));
  });

  it('disposes the batches prepared ahead when the consumer stops early', async () => {
    const loader = new BatchLoader(fromStore.samples, { size: 64, batchSize: 2, pipeline: AugmentPipeline.preset('none'), channels: 3, depth: 3 });
    const before = counters().liveTensors;
    let first: LoadedBatch | undefined;
    for await (const b of loader.epoch(order, SEED)) {
      first = b;
      break;
    }
    first!.dispose();
    // The prefetched batches settle and are disposed after the loop has returned.
    for (let k = 0; k < 50 && counters().liveTensors > before; k++) await new Promise((r) => setTimeout(r, 20));
    expect(counters().liveTensors).toBe(before);
  });
});
