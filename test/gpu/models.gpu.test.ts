/**
 * CUDA: every architecture's forward equals the CPU's with the same weights (fp32, TF32 off), bf16
 * stays close, a checkpoint saved on CUDA loads on the CPU and back, TorchScript export runs on
 * CUDA, and the Segmenter serves from a GPU. Skips with one line without a CUDA device.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { manualSeed, setCudnnOptions } from '../../src/core/runtime.js';
import { Model } from '../../src/models/model.js';
import { Segmenter } from '../../src/serve/segmenter.js';
import { chestFiles } from '../serve/fixtures.js';
import { announce, relL1, values } from './cuda.js';

const run = await announce('models.gpu');
const dir = mkdtempSync(join(tmpdir(), 'pn-gpu-models-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BACKBONES = ['unet_r18', 'scseunet_r34', 'albunet34', 'unetpp_r18', 'deeplab_r34', 'unet_se50', 'unet_ef3'];
const ILL_CONDITIONED_IN_TRAIN_MODE = ['deeplab_r34', 'unet_ef3'];

describe.skipIf(!run)('models on CUDA', () => {
  it('every architecture: CUDA forward (eval and train mode) equals the CPU with the same weights', async () => {
    setCudnnOptions({ allowTf32: false, benchmark: false });
    manualSeed(3);
    const x = await Tensor.randn([2, 3, 128, 128]);
    const gx = await x.to('cuda');
    const diffs: Record<string, number> = {};
    for (const backbone of BACKBONES) {
      const cpu = await Model.create({ backbone, seed: 9, classificationHead: backbone === 'unet_r18' });
      const gpu = await Model.create({ backbone, seed: 9, classificationHead: backbone === 'unet_r18', device: 'cuda' });
      await gpu.loadStateDict(await cpu.stateDict());
      for (const training of [false, true]) {
        cpu.train(training);
        gpu.train(training);
        const a = await cpu.forward(x);
        const b = await gpu.forward(gx);
        // Train mode is compared only where the untrained network's train-mode forward is well
        // conditioned: for unet_ef3 and deeplab_r34 it is not even on one CPU (bench/python's
        // twins, batch 2: float32 vs float64 differ by 98% and 111% relative L1; unet_r18: 6e-6),
        // because BatchNorm normalises batch statistics that are nearly equal across the batch
        // (DeepLabV3's pooled ASPP branch, EfficientNet's deep 4x4 stages). Eval mode is compared
        // for every architecture.
        if (training && ILL_CONDITIONED_IN_TRAIN_MODE.includes(backbone)) continue;
        diffs[`${backbone} ${training ? 'train' : 'eval'}`] = relL1(await values(b.mask), await values(a.mask));
        if (a.label) diffs[`${backbone} label`] = relL1(await values(b.label!), await values(a.label));
        if (!training) {
          const p = await gpu.predict(gx);
          const q = await cpu.predict(x);
          diffs[`${backbone} predict`] = relL1(await values(p.mask), await values(q.mask));
        }
      }
      cpu.dispose();
      gpu.dispose();
    }
    // Relative L1 (sum |gpu - cpu| / sum |cpu|), not the largest element: untrained networks are
    // numerically chaotic at single pixels (scseunet_r34: 1e-6 relative weight noise moves a pixel
    // by 97% but the mean by 0.05%; its fp32 and fp64 forwards differ by 15% at the worst pixel),
    // and BatchNorm over a batch of 2 in train mode (DeepLabV3's pooled ASPP branch) amplifies
    // rounding. A wrong kernel moves the whole map, which this catches.
    console.log(`CUDA vs CPU forward, relative L1 difference: ${JSON.stringify(diffs)}`);
    for (const [name, d] of Object.entries(diffs)) expect(d, name).toBeLessThan(5e-3);
    setCudnnOptions({ allowTf32: true });
  });

  it('bf16 and fp16 forwards stay close to fp32', async () => {
    manualSeed(4);
    const x = await Tensor.randn([2, 3, 128, 128], { device: 'cuda' });
    const ref = await Model.create({ backbone: 'unet_se50', seed: 2, device: 'cuda' });
    const p32 = await values((await ref.predict(x)).mask);
    for (const precision of ['bf16', 'fp16'] as const) {
      const m = await Model.create({ backbone: 'unet_se50', seed: 2, device: 'cuda', precision });
      const p = await values((await m.predict(x)).mask);
      let sum = 0;
      for (let i = 0; i < p.length; i++) sum += Math.abs(p[i]! - p32[i]!);
      expect(sum / p.length, precision).toBeLessThan(0.02);
      m.dispose();
    }
    ref.dispose();
  });

  it('fp16: the channel attention of BiSeNet and the dual-attention UNet stays finite at 768 px with large inputs', async () => {
    // E = X X^T over 96 x 96 positions exceeds float16's range unless it is scaled (bisenet.cpp cam()).
    manualSeed(9);
    const x = await (await Tensor.randn([1, 3, 768, 768], { device: 'cuda' })).mul(Tensor.from([40], [1], { device: 'cuda' }));
    for (const backbone of ['bisenet_r18', 'daunet_r18']) {
      const m = await Model.create({ backbone, seed: 3, device: 'cuda', precision: 'fp16' });
      const p = await values((await m.predict(x)).mask);
      let finite = 0;
      for (let i = 0; i < p.length; i++) if (Number.isFinite(p[i]!)) finite++;
      expect(finite, backbone).toBe(p.length);
      m.dispose();
    }
  });

  it('a checkpoint saved on CUDA loads on the CPU and back; TorchScript export runs on CUDA', async () => {
    const m = await Model.create({ backbone: 'albunet34', seed: 5, device: 'cuda', precision: 'bf16' });
    const path = join(dir, 'cuda.ckpt');
    await m.save(path);
    const onCpu = await Model.load(path, { device: 'cpu', precision: 'fp32' });
    expect(onCpu.device).toBe('cpu');
    const back = await Model.load(path, { device: 'cuda' });
    expect(back.spec.precision).toBe('bf16');
    manualSeed(6);
    const x = await Tensor.randn([1, 3, 128, 128]);
    const a = await values((await onCpu.predict(x)).mask);
    const b = await values((await back.predict(await x.to('cuda'))).mask);
    let sum = 0;
    for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
    expect(sum / a.length).toBeLessThan(0.02);
    const exported = join(dir, 'cuda.pt');
    await back.exportTorchScript(exported);
    const reloaded = await Model.load(exported, { device: 'cuda' });
    expect(reloaded.device).toMatch(/^cuda/);
    for (const model of [m, onCpu, back, reloaded]) model.dispose();
  });

  it('the Segmenter serves from a GPU', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 7, device: 'cuda' });
    const segmenter = Segmenter.fromModel(model, { size: 64 });
    const files = await chestFiles(0);
    const results = await Promise.all([segmenter.predict(files.dicomJpeg), segmenter.predict(files.png), segmenter.predict(files.dicomRaw)]);
    for (const r of results) {
      expect(r.mask.length).toBe(r.width * r.height);
      expect(Number.isFinite(r.maxProbability)).toBe(true);
    }
    const cpuModel = await Model.create({ backbone: 'tiny_unet_r18', seed: 7 });
    const cpuSeg = Segmenter.fromModel(cpuModel, { size: 64 });
    const cpuResult = await cpuSeg.predict(files.png);
    expect(Math.abs(cpuResult.maxProbability - results[1]!.maxProbability)).toBeLessThan(1e-3);
    await segmenter.close();
    await cpuSeg.close();
    model.dispose();
    cpuModel.dispose();
  });
});
