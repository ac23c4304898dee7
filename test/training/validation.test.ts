/**
 * Segmentation validation crosses the native boundary once per batch (`predictBatchSummaries`,
 * the native predictSummaries): its summaries equal those of the JS path it replaced (predict, the
 * maps and masks copied to JS, masks thresholded with Uint8Array.from, summariseMaps): counted,
 * 6 calls into the addon per batch before (the input's shape, modelPredict, the mask's shape,
 * takeData, the masks' data, summariseMaps), 1 after.
 */
import { describe, expect, it } from 'vitest';
import { ensureRuntime } from '../../src/core/runtime.js';
import { Tensor } from '../../src/core/tensor.js';
import { summariseMaps } from '../../src/scoring/thresholds.js';
import type { MapSummaries } from '../../src/scoring/thresholds.js';
import { Model } from '../../src/models/model.js';
import { predictBatchSummaries } from '../../src/training/validation.js';

/** The path validation took before predictSummaries. */
async function jsPath(model: Model, images: Tensor, masks: Tensor, tta: boolean, thresholds: number[]): Promise<MapSummaries> {
  const out = await model.predict(images, { tta });
  out.label?.dispose();
  const [height, width] = out.mask.shape.slice(2) as [number, number];
  const maps = out.mask.takeData('float32');
  const truth = Uint8Array.from(await masks.data('float32'), (v) => (v > 0.5 ? 1 : 0));
  return summariseMaps(maps, height, width, { truth, thresholds });
}

/**
 * Counts calls into the addon while `fn` runs: every function the binding exports and the Tensor
 * members that reach the native tensor (shape, data, takeData, dispose).
 */
async function crossings(fn: () => Promise<unknown>): Promise<number> {
  const binding = ensureRuntime() as unknown as Record<string, unknown>;
  const restore: (() => void)[] = [];
  let calls = 0;
  for (const [key, value] of Object.entries(binding)) {
    if (typeof value !== 'function' || /^Native[A-Z]/.test(key)) continue;
    binding[key] = (...args: unknown[]) => {
      calls++;
      return (value as (...a: unknown[]) => unknown)(...args);
    };
    restore.push(() => (binding[key] = value));
  }
  const proto = Tensor.prototype as unknown as Record<string, unknown>;
  for (const key of ['data', 'takeData', 'dispose', 'shape']) {
    const descriptor = Object.getOwnPropertyDescriptor(proto, key)!;
    const wrapped = { ...descriptor };
    if (descriptor.get) {
      const get = descriptor.get;
      wrapped.get = function (this: unknown) {
        calls++;
        return get.call(this);
      };
    } else {
      const f = descriptor.value as (...a: unknown[]) => unknown;
      wrapped.value = function (this: unknown, ...args: unknown[]) {
        calls++;
        return f.apply(this, args);
      };
    }
    Object.defineProperty(proto, key, wrapped);
    restore.push(() => Object.defineProperty(proto, key, descriptor));
  }
  try {
    await fn();
  } finally {
    for (const r of restore) r();
  }
  return calls;
}

describe('predictBatchSummaries (validation, one crossing per batch)', () => {
  it('equals predict + copies + threshold + summariseMaps, with and without TTA; 1 crossing instead of 6', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 41 });
    const images = await Tensor.randn([3, 3, 64, 64]);
    await model.gradientStep(images, { lr: 0.05 }); // weights and BatchNorm statistics off their init
    // Masks with values on both sides of 0.5 (and exactly 0.5, which is outside).
    const maskValues = Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => [0, 1, 0.5, 0.7, 0.2][(i * 7919) % 5]!);
    const masks = Tensor.from(maskValues, [3, 1, 64, 64]);
    // Thresholds at the predictions' own quantiles, so that every level splits the pixels.
    const probe = await model.predict(images);
    const sorted = Float32Array.from(probe.mask.takeData('float32')).sort();
    const thresholds = [...new Set([0.1, 0.5, 0.9].map((q) => Math.fround(sorted[Math.floor(q * sorted.length)]!)))].sort((a, b) => a - b);
    expect(thresholds.length).toBe(3);
    for (const tta of [false, true]) {
      const old = await jsPath(model, images, masks, tta, thresholds);
      const now = await predictBatchSummaries(model, images, masks, tta, thresholds);
      expect([now.height, now.width, now.count, now.dtype, now.levels]).toEqual([old.height, old.width, old.count, old.dtype, old.levels]);
      expect(now.thresholds).toEqual(old.thresholds);
      expect(Array.from(now.above)).toEqual(Array.from(old.above));
      expect(Array.from(now.truthAbove!)).toEqual(Array.from(old.truthAbove!));
      expect(Array.from(now.truthArea!)).toEqual(Array.from(old.truthArea!));
      // Not a trivial summary: some pixels above and some below each level, some truth.
      expect(now.above.some((v) => v > 0 && v < 64 * 64)).toBe(true);
      expect(now.truthArea!.every((v) => v > 0 && v < 64 * 64)).toBe(true);
    }
    const before = await crossings(() => jsPath(model, images, masks, false, thresholds));
    const after = await crossings(() => predictBatchSummaries(model, images, masks, false, thresholds));
    console.log(`native crossings per validation batch: ${before} before, ${after} after`);
    expect(after).toBe(1);
    expect(before).toBeGreaterThanOrEqual(6);
  });

  it('rejects masks that do not match the predictions, naming both shapes', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 42 });
    const images = await Tensor.randn([2, 3, 64, 64]);
    const masks = await Tensor.zeros([2, 1, 32, 32]);
    await expect(predictBatchSummaries(model, images, masks, false, [0.5])).rejects.toThrow(/expected masks of 2 x 64 x 64 values .* got 2048/);
  });
});
