/**
 * CUDA: the batch augmentation on the training device. The same seeded plan applied to a batch on
 * CUDA and on the CPU gives the same images and masks (images within 0.02 of a 0-255 level on
 * average and 2 levels at the 99.9th percentile: float32 grid_sample differs by an ulp at sample
 * positions, which moves a few pixels by a fraction of a level; masks identical except a handful
 * of pixels on region edges), and the loader with device 'cuda' yields the CPU's batches.
 * Skips with one line without a CUDA device.
 */
import { rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { Tensor } from '../../src/core/tensor.js';
import { AugmentPipeline } from '../../src/training/augment/pipeline.js';
import { BatchLoader, openPreparedDataset } from '../../src/training/loader.js';
import { makeTrainFixture } from '../training/train-fixture.js';
import { announce, values } from './cuda.js';

const run = await announce('augment.gpu');

function compare(a: Float32Array, b: Float32Array): { mean: number; p999: number; differ: number } {
  const d = Float32Array.from(a, (v, i) => Math.abs(v - b[i]!)).sort();
  let sum = 0;
  for (const v of d) sum += v;
  return { mean: sum / d.length, p999: d[Math.floor(d.length * 0.999)]!, differ: d.filter((v) => v > 0).length / d.length };
}

describe.skipIf(!run)('augmentation on CUDA equals the CPU', () => {
  for (const preset of ['first-place', 'second-place', 'unetpp'] as const) {
    it(`${preset}: the same plan on CUDA and CPU tensors (1024 px, batch 4)`, async () => {
      const size = 1024;
      const rng = new Random(3);
      const pixels = Uint8Array.from({ length: 4 * size * size }, (_, i) => ((i % size) ^ Math.floor(i / size)) & 0xff ^ rng.int(0, 15));
      const maskBytes = Uint8Array.from(pixels, (v) => (v > 180 ? 255 : 0));
      const images = Tensor.from(pixels, [4, 1, size, size]);
      const masks = Tensor.from(maskBytes, [4, 1, size, size]);
      const pipeline = AugmentPipeline.preset(preset);
      // Every geometric transform drawn at least once over the seeds.
      for (const seed of [1, 2, 3, 4]) {
        const plan = pipeline.sample(new Random(seed), 4, size, size);
        const cpu = await pipeline.apply(images, masks, plan);
        const gi = await images.to('cuda');
        const gm = await masks.to('cuda');
        const gpu = await pipeline.apply(gi, gm, plan);
        expect(gpu.images.device).toMatch(/^cuda/);
        const img = compare(await values(gpu.images), await values(cpu.images));
        const std = 0.229 * 255; // normalised units -> 0-255 levels
        expect(img.mean * std, `${preset} seed ${seed} mean`).toBeLessThan(0.02);
        expect(img.p999 * std, `${preset} seed ${seed} p99.9`).toBeLessThan(2);
        const m = compare(await values(gpu.masks!), await values(cpu.masks!));
        expect(m.differ, `${preset} seed ${seed} mask pixels that differ`).toBeLessThan(1e-4);
        for (const t of [gi, gm, cpu.images, cpu.masks!, gpu.images, gpu.masks!]) t.dispose();
      }
      images.dispose();
      masks.dispose();
    }, 120_000);
  }

  it('stageToDevice copies CPU batches to cuda through pinned memory (values unchanged)', async () => {
    const { stageToDevice } = await import('../../src/data/batch.js');
    const bytes = Uint8Array.from({ length: 2 * 256 * 256 }, (_, i) => (i * 31) & 0xff);
    const host = Tensor.from(bytes, [2, 1, 256, 256]);
    const [onDevice] = await stageToDevice([host], 'cuda');
    expect(onDevice!.device).toMatch(/^cuda/);
    expect([...(await values(onDevice!))]).toEqual([...bytes]);
    onDevice!.dispose();
    host.dispose();
  });

  it('the loader on cuda yields the batches of the loader on the cpu', async () => {
    const fixture = await makeTrainFixture(8, 64, 2);
    try {
      const dataset = await openPreparedDataset(fixture.data, 'folds.csv');
      const pipeline = AugmentPipeline.preset('first-place');
      const order = Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
      const cpu = new BatchLoader(dataset.samples, { size: 64, batchSize: 4, pipeline, channels: 3 });
      const gpu = new BatchLoader(dataset.samples, { size: 64, batchSize: 4, pipeline, channels: 3, device: 'cuda' });
      const a = [];
      for await (const b of cpu.epoch(order, 7)) a.push(b);
      let k = 0;
      for await (const b of gpu.epoch(order, 7)) {
        expect(b.images.device).toMatch(/^cuda/);
        const img = compare(await values(b.images), await values(a[k]!.images));
        expect(img.mean * 0.229 * 255).toBeLessThan(0.05);
        b.dispose();
        a[k++]!.dispose();
      }
    } finally {
      await rm(fixture.root, { recursive: true, force: true });
    }
  }, 120_000);
});

