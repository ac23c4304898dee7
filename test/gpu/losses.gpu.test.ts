/**
 * CUDA: every loss (the fused combo kernel, its ATen reference, soft Dice, class-balanced BCE,
 * Lovasz) gives the CPU's value and gradient on the same logits and targets, and normalizeU8's
 * CUDA kernel equals the CPU path. Skips with one line without a CUDA device.
 */
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { manualSeed } from '../../src/core/runtime.js';
import { lossForwardBackward, LOSS_KINDS } from '../../src/training/losses.js';
import { announce, relDiff, values } from './cuda.js';

const run = await announce('losses.gpu');

describe.skipIf(!run)('losses on CUDA equal the CPU', () => {
  for (const kind of LOSS_KINDS) {
    it(`${kind}: value and gradient (float32 and float64)`, async () => {
      manualSeed(5);
      for (const dtype of ['float32', 'float64'] as const) {
        const logits = await Tensor.randn([4, 1, 96, 96], { dtype });
        const raw = await (await Tensor.rand([4, 1, 96, 96])).data('float32');
        const target = Tensor.from(Float32Array.from(raw, (v) => (v > 0.7 ? 1 : 0)), [4, 1, 96, 96], { dtype });
        const cpu = await lossForwardBackward(kind, logits, target);
        const gl = await logits.to('cuda');
        const gt = await target.to('cuda');
        const gpu = await lossForwardBackward(kind, gl, gt);
        const tol = dtype === 'float64' ? 1e-10 : 1e-5;
        expect(Math.abs(gpu.loss - cpu.loss) / (1 + Math.abs(cpu.loss)), `${kind} ${dtype} loss`).toBeLessThan(tol);
        expect(relDiff(await values(gpu.grad), await values(cpu.grad)), `${kind} ${dtype} gradient`).toBeLessThan(tol * 10);
        for (const t of [logits, target, gl, gt, cpu.grad, gpu.grad]) t.dispose();
      }
    });
  }

  it('normalizeU8: the CUDA kernel equals the CPU', async () => {
    const bytes = Uint8Array.from({ length: 2 * 64 * 64 }, (_, i) => (i * 37) % 256);
    const cpu = Tensor.from(bytes, [2, 1, 64, 64]);
    const gpu = await cpu.to('cuda');
    const a = await values(await cpu.normalizeImages(0.485, 0.229));
    const b = await values(await gpu.normalizeImages(0.485, 0.229));
    expect(relDiff(b, a)).toBeLessThan(1e-6);
  });
});
