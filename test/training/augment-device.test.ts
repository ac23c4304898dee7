/**
 * The two resampling paths of the batch augmentation agree: the fused per-pixel CPU kernel (what
 * CPU training runs) and the ATen path (float32 coordinate tensors and grid_sample: what CUDA
 * training runs on the training device), both run here on CPU tensors with the same seeded plans.
 *
 * Stated tolerance: images within 0.05 of a 0-255 level on average and 1 level at the 99.9th
 * percentile (the ATen path composes coordinates in float32, the kernel in double: sample
 * positions differ by up to ~1e-4 px at 1024, up to ~1e-3 px after the elastic field); masks
 * identical but for at most 0.05% of pixels (nearest-neighbour ties on region edges).
 */
import { describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { Tensor } from '../../src/core/tensor.js';
import { AugmentPipeline } from '../../src/training/augment/pipeline.js';

function pattern(batch: number, size: number, seed: number): Uint8Array {
  const rng = new Random(seed);
  const px = new Uint8Array(batch * size * size);
  for (let b = 0; b < batch; b++) {
    const cx = rng.int(0, size);
    const cy = rng.int(0, size);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const ring = Math.hypot(x - cx, y - cy) < size / 5 ? 120 : 0;
        px[(b * size + y) * size + x] = Math.min(255, ((x * 3 + y * 2) % 97) + ring + rng.int(0, 20));
      }
    }
  }
  return px;
}

function stats(a: Float32Array, b: Float32Array): { mean: number; p999: number; differ: number } {
  const d = Float32Array.from(a, (v, i) => Math.abs(v - b[i]!)).sort();
  let sum = 0;
  for (const v of d) sum += v;
  let differ = 0;
  for (const v of d) if (v > 0) differ++;
  return { mean: sum / d.length, p999: d[Math.floor(d.length * 0.999)]!, differ: differ / d.length };
}

/** Every geometric transform, always applied, each border mode among them. */
const GEOMETRY = {
  affine: [{ type: 'ShiftScaleRotate', p: 1, shift_limit: 0.2, scale_limit: 0.2, rotate_limit: 45 }],
  constant: [{ type: 'ShiftScaleRotate', p: 1, shift_limit: 0.2, scale_limit: 0.2, rotate_limit: 30, border_mode: 0 }],
  replicate: [{ type: 'ShiftScaleRotate', p: 1, shift_limit: 0.3, scale_limit: 0.3, rotate_limit: 30, border_mode: 1 }],
  reflect: [{ type: 'ShiftScaleRotate', p: 1, shift_limit: 0.3, scale_limit: 0.3, rotate_limit: 30, border_mode: 2 }],
  wrap: [{ type: 'ShiftScaleRotate', p: 1, shift_limit: 0.3, scale_limit: 0.3, rotate_limit: 30, border_mode: 3 }],
  elastic: [{ type: 'ElasticTransform', p: 1, alpha: 120, sigma: 6, alpha_affine: 3.6 }],
  grid: [{ type: 'GridDistortion', p: 1 }],
  optical: [{ type: 'OpticalDistortion', p: 1, distort_limit: 2, shift_limit: 0.5 }],
  chain: [
    { type: 'HorizontalFlip', p: 1 },
    { type: 'GridDistortion', p: 1 },
    { type: 'OpticalDistortion', p: 1, distort_limit: 0.5, shift_limit: 0.2 },
    { type: 'ElasticTransform', p: 1, alpha: 60, sigma: 5, alpha_affine: 2 },
    { type: 'ShiftScaleRotate', p: 1, shift_limit: 0.0625, scale_limit: 0.1, rotate_limit: 45 },
  ],
} as const;

async function both(pipeline: AugmentPipeline, images: Tensor, masks: Tensor, seed: number, maskInterpolation: 'nearest' | 'bilinear' = 'nearest') {
  const [batch, , h, w] = images.shape as [number, number, number, number];
  const plan = pipeline.sample(new Random(seed), batch, h, w);
  const fused = await pipeline.apply(images, masks, plan, { maskInterpolation });
  const aten = await pipeline.apply(images, masks, plan, { maskInterpolation, resample: 'aten' });
  const out = {
    image: stats(fused.images.takeData('float32'), aten.images.takeData('float32')),
    mask: stats(fused.masks!.takeData('float32'), aten.masks!.takeData('float32')),
  };
  return out;
}

describe('fused CPU resampling vs the ATen (device) path on CPU tensors', () => {
  const size = 96;
  const images = Tensor.from(pattern(4, size, 1), [4, 1, size, size]);
  const masks = Tensor.from(Uint8Array.from(pattern(4, size, 2), (v) => (v > 110 ? 255 : 0)), [4, 1, size, size]);

  for (const [name, transforms] of Object.entries(GEOMETRY)) {
    for (const maskInterpolation of ['nearest', 'bilinear'] as const) {
      it(`${name}, masks ${maskInterpolation}`, async () => {
        const pipeline = new AugmentPipeline(transforms);
        for (const seed of [1, 2, 3]) {
          const r = await both(pipeline, images, masks, seed, maskInterpolation);
          expect(r.image.mean, `seed ${seed} mean`).toBeLessThan(0.05);
          expect(r.image.p999, `seed ${seed} p99.9`).toBeLessThan(1);
          expect(r.mask.differ, `seed ${seed} mask pixels that differ`).toBeLessThanOrEqual(5e-4);
        }
      });
    }
  }

  // The CPU kernel folds pointwise steps into its per-row table and runs steps that need the whole
  // image (CLAHE, blurs, median, noise, brightness by the image mean) after the resampling.
  const PHOTOMETRIC = {
    'pointwise (table in the row pass)': [
      { type: 'RandomGamma', p: 1, gamma_limit: [70, 130] },
      { type: 'RandomBrightnessContrast', p: 1, brightness_limit: 0.3, contrast_limit: 0.3 },
      { type: 'InvertImg', p: 0.5 },
    ],
    'brightness by the image mean': [{ type: 'RandomBrightnessContrast', p: 1, brightness_limit: 0.3, contrast_limit: 0.2, brightness_by_max: false }],
    'CLAHE, blur, median, noise': [
      { type: 'CLAHE', p: 1, clip_limit: 4, tile_grid_size: [4, 4] },
      { type: 'OneOf', p: 1, transforms: [{ type: 'Blur', blur_limit: 3 }, { type: 'MotionBlur', blur_limit: 3 }, { type: 'MedianBlur', blur_limit: 3 }] },
      { type: 'GaussNoise', p: 1, var_limit: [10, 50] },
    ],
  } as const;
  for (const [name, transforms] of Object.entries(PHOTOMETRIC)) {
    it(`photometric ${name}, after shift-scale-rotate, normalised to 3 channels`, async () => {
      const pipeline = new AugmentPipeline([
        { type: 'ShiftScaleRotate', p: 1, shift_limit: 0.1, scale_limit: 0.1, rotate_limit: 30 },
        ...transforms,
        { type: 'Normalize', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], max_pixel_value: 255 },
      ]);
      for (const seed of [4, 5]) {
        const plan = pipeline.sample(new Random(seed), 4, size, size);
        const fused = await pipeline.apply(images, masks, plan, { channels: 3 });
        const aten = await pipeline.apply(images, masks, plan, { channels: 3, resample: 'aten' });
        expect(fused.images.shape).toEqual([4, 3, size, size]);
        const r = stats(fused.images.takeData('float32'), aten.images.takeData('float32'));
        // Normalised units (std 0.224 at most): 1 level = 1 / (255 * 0.225) or more.
        expect(r.mean * 255 * 0.225, `seed ${seed} mean`).toBeLessThan(0.05);
        expect(r.p999 * 255 * 0.225, `seed ${seed} p99.9`).toBeLessThan(1);
        expect(stats(fused.masks!.takeData('float32'), aten.masks!.takeData('float32')).differ).toBeLessThanOrEqual(5e-4);
      }
    });
  }

  it('the first-place preset at 512 px with normalisation (a float32 input too)', async () => {
    const big = 512;
    const img = Tensor.from(pattern(2, big, 5), [2, 1, big, big]);
    const msk = Tensor.from(Uint8Array.from(pattern(2, big, 6), (v) => (v > 110 ? 255 : 0)), [2, 1, big, big]);
    const pipeline = AugmentPipeline.preset('first-place');
    for (const seed of [11, 12, 13, 14]) {
      const r = await both(pipeline, img, msk, seed);
      // Normalised units: 1 level = 1 / (255 * 0.229).
      expect(r.image.mean * 255 * 0.229, `seed ${seed}`).toBeLessThan(0.05);
      expect(r.image.p999 * 255 * 0.229, `seed ${seed}`).toBeLessThan(1);
      expect(r.mask.differ).toBeLessThanOrEqual(5e-4);
    }
    const asFloat = Tensor.from(Float32Array.from(pattern(2, big, 5)), [2, 1, big, big]);
    const plan = pipeline.sample(new Random(12), 2, big, big);
    const fromU8 = await pipeline.apply(img, msk, plan);
    const fromF32 = await pipeline.apply(asFloat, msk, plan);
    expect(stats(fromU8.images.takeData('float32'), fromF32.images.takeData('float32')).p999).toBe(0);
    for (const t of [img, msk, asFloat, fromU8.masks!, fromF32.masks!]) t.dispose();
  });

  it('refuses an unknown resample path', async () => {
    const pipeline = AugmentPipeline.preset('none');
    await expect(pipeline.apply(images, masks, pipeline.sample(1, 4, size, size), { resample: 'gpu' as 'aten' })).rejects.toThrow(/resample/);
  });
});
