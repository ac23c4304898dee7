/**
 * Model.predict: eval-mode sigmoid probabilities; flip TTA in one batched forward equals the mean
 * of the two separate passes; the model's mode is left as it was.
 */
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { Model } from '../../src/models/model.js';

/** Horizontal flip of an N x C x H x W float32 array. */
function flipW(data: Float32Array, shape: number[]): Float32Array {
  const [n, c, h, w] = shape as [number, number, number, number];
  const out = new Float32Array(data.length);
  for (let i = 0; i < n * c * h; i++) {
    for (let x = 0; x < w; x++) out[i * w + x] = data[i * w + (w - 1 - x)]!;
  }
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

describe('Model.predict', () => {
  it('equals sigmoid(forward) in eval mode; TTA equals the mean of the two passes (mask and label)', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', classificationHead: true, seed: 31 });
    const x = await Tensor.randn([2, 3, 64, 64]);
    await model.gradientStep(x, { lr: 0.01 }); // BatchNorm statistics and weights off their init
    model.eval();
    const forward = await model.forward(x);
    const plain = await model.predict(x);
    expect(plain.mask.shape).toEqual([2, 1, 64, 64]);
    expect(plain.label!.shape).toEqual([2, 1]);
    expect(plain.mask.dtype).toBe('float32');
    const logits = await forward.mask.data('float32');
    expect(maxDiff(await plain.mask.data('float32'), Array.from(logits, sigmoid))).toBeLessThan(1e-6);
    expect(maxDiff(await plain.label!.data('float32'), Array.from(await forward.label!.data('float32'), sigmoid))).toBeLessThan(1e-6);

    const xData = await x.data('float32');
    const flipped = Tensor.from(flipW(xData, x.shape), x.shape);
    const mirror = await model.predict(flipped);
    const tta = await model.predict(x, { tta: true });
    const a = await plain.mask.data('float32');
    const b = flipW(await mirror.mask.data('float32'), plain.mask.shape);
    expect(maxDiff(await tta.mask.data('float32'), Array.from(a, (v, i) => (v + b[i]!) / 2))).toBeLessThan(1e-5);
    const la = await plain.label!.data('float32');
    const lb = await mirror.label!.data('float32');
    expect(maxDiff(await tta.label!.data('float32'), Array.from(la, (v, i) => (v + lb[i]!) / 2))).toBeLessThan(1e-5);
    // TTA is not a no-op on this input.
    expect(maxDiff(await tta.mask.data('float32'), a)).toBeGreaterThan(1e-4);
    model.dispose();
  });

  it('has eval semantics in training mode and leaves the model in training mode', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 32 });
    const x = await Tensor.randn([2, 3, 64, 64]);
    model.train();
    const during = await model.predict(x, { tta: true });
    expect(model.training).toBe(true);
    model.eval();
    const evalMode = await model.predict(x, { tta: true });
    expect(maxDiff(await during.mask.data('float32'), await evalMode.mask.data('float32'))).toBeLessThan(1e-6);
    // Without the folded inference copy, the same numbers through the module itself (up to the
    // rounding that conv-BN folding brings).
    model.train();
    model.setInferenceOptimization(false);
    const unfolded = await model.predict(x);
    expect(model.training).toBe(true);
    const folded = await (async () => {
      model.setInferenceOptimization(true);
      return model.predict(x);
    })();
    expect(maxDiff(await unfolded.mask.data('float32'), await folded.mask.data('float32'))).toBeLessThan(2e-4);
    model.dispose();
  });

  it('rejects bad input with a clear error', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 33 });
    await expect(model.predict(Tensor.from(new Float32Array(3 * 40 * 40), [1, 3, 40, 40]))).rejects.toThrow(/multiples of 32/);
    await expect(model.predict('x' as never)).rejects.toThrow(/Expected a Tensor for input/);
    await expect(model.predict(await Tensor.randn([1, 3, 64, 64]), { tta: 1 as never })).rejects.toThrow(/Expected a boolean for options.tta/);
    model.dispose();
  });
});
