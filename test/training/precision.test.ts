/**
 * Precision and the gradient scaler, on the CPU: the `auto` rule from hardware facts, precision
 * checks (fp16 needs CUDA), bf16 autocast on the CPU, the precision kept in checkpoints (and the
 * legacy `autocast` spec), and the scaler's logic with injected overflows: skipped steps leave the
 * weights alone and halve the scale, finite steps grow it every growthInterval steps, a power-of-two
 * scale changes nothing else, and its state round-trips through the optimizer state.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { Random, normal } from '../../src/core/random.js';
import { Model } from '../../src/models/model.js';
import { resolvePrecision } from '../../src/models/precision.js';
import { TrainEngine } from '../../src/training/engine.js';
import type { TrainEngineOptions } from '../../src/training/engine.js';
import { validateConfig } from '../../src/training/config.js';

const dir = mkdtempSync(join(tmpdir(), 'pn-precision-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NO_CPU = { amx: false, avx512bf16: false };

describe('resolvePrecision', () => {
  it('auto: bf16 on sm_80+, fp16 on older GPUs, bf16 only on AMX CPUs', () => {
    const hw = { cudaCapabilities: ['9.0', '7.5'], cpu: NO_CPU };
    expect(resolvePrecision('auto', 'cuda', hw)).toBe('bf16');
    expect(resolvePrecision('auto', 'cuda:0', hw)).toBe('bf16');
    expect(resolvePrecision('auto', 'cuda:1', hw)).toBe('fp16');
    expect(resolvePrecision('auto', 'cpu', hw)).toBe('fp32');
    expect(resolvePrecision('auto', 'cpu', { ...hw, cpu: { amx: false, avx512bf16: true } })).toBe('fp32');
    expect(resolvePrecision('auto', 'cpu', { ...hw, cpu: { amx: true, avx512bf16: true } })).toBe('bf16');
  });

  it('explicit settings are checked against the device', () => {
    const hw = { cudaCapabilities: ['7.0'], cpu: NO_CPU };
    expect(resolvePrecision('fp32', 'cpu', hw)).toBe('fp32');
    expect(resolvePrecision('bf16', 'cpu', hw)).toBe('bf16');
    expect(() => resolvePrecision('fp16', 'cpu', hw)).toThrow(/fp16 needs a CUDA device, but the device is cpu/);
    expect(() => resolvePrecision('bf16', 'cuda:0', hw)).toThrow(/bf16 needs CUDA compute capability 8.0 or newer, but cuda:0 has 7.0/);
    expect(resolvePrecision('fp16', 'cuda:0', hw)).toBe('fp16');
  });
});

function toy(seed: number, batch: number, size: number): { images: Tensor; masks: Tensor } {
  const rng = new Random(seed);
  const images = new Float32Array(batch * 3 * size * size);
  const masks = new Float32Array(batch * size * size);
  for (let b = 0; b < batch; b++) {
    const cy = size * (0.3 + 0.4 * rng.next());
    const cx = size * (0.3 + 0.4 * rng.next());
    const r = size * 0.2;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const inside = (y - cy) ** 2 + (x - cx) ** 2 < r * r ? 1 : 0;
        masks[(b * size + y) * size + x] = inside;
        for (let c = 0; c < 3; c++) images[((b * 3 + c) * size + y) * size + x] = inside + normal(rng, 0, 0.5);
      }
    }
  }
  return { images: Tensor.from(images, [batch, 3, size, size]), masks: Tensor.from(masks, [batch, 1, size, size]) };
}

/** The trainable parameters (BatchNorm statistics move with every forward, as in PyTorch). */
async function weights(model: Model): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const [name, t] of await model.stateDict()) {
    if (!/running_(mean|var)|num_batches_tracked/.test(name)) out.push(Float32Array.from(await t.data('float32')));
  }
  return out;
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let worst = 0;
  a.forEach((x, k) => {
    const y = b[k]!;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  });
  return worst;
}

const OPTIONS: TrainEngineOptions = {
  optimizer: { algorithm: 'adam', lr: 1e-3 },
  loss: [{ kind: 'combo', options: { bceWeight: 3, diceWeight: 1, focalWeight: 4 } }],
  gradClip: 1,
};

describe('model precision on the CPU', () => {
  it('rejects fp16 on the CPU and unknown precisions, naming them', async () => {
    await expect(Model.create({ backbone: 'tiny_unet_r18', precision: 'fp16' })).rejects.toThrow(/fp16 needs a CUDA device, but the device is cpu/);
    await expect(Model.create({ backbone: 'tiny_unet_r18', precision: 'fp8' as never })).rejects.toThrow(/options.precision.*fp8/);
  });

  it('bf16 autocast runs the forward in bfloat16 (close to fp32, not equal) and is kept in checkpoints', async () => {
    const fp32 = await Model.create({ backbone: 'tiny_unet_r18', seed: 11 });
    const bf16 = await Model.create({ backbone: 'tiny_unet_r18', seed: 11, precision: 'bf16' });
    expect(bf16.spec.precision).toBe('bf16');
    const { images, masks } = toy(1, 2, 64);
    fp32.train(false);
    bf16.train(false);
    const a = await (await fp32.predict(images)).mask.data('float32');
    const b = await (await bf16.predict(images)).mask.data('float32');
    let worst = 0;
    let sum = 0;
    for (let i = 0; i < a.length; i++) {
      worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
      sum += Math.abs(a[i]! - b[i]!);
    }
    expect(worst).toBeGreaterThan(0); // really ran in bf16
    // bf16 keeps ~3 significant digits; through a random-init network the probabilities drift a little.
    expect(sum / a.length).toBeLessThan(0.02);
    expect(worst).toBeLessThan(0.25);
    const path = join(dir, 'bf16.ckpt');
    await bf16.save(path);
    const loaded = await Model.load(path);
    expect(loaded.spec.precision).toBe('bf16');
    const c = await (await loaded.predict(images)).mask.data('float32');
    expect(Array.from(c)).toEqual(Array.from(b));
    // Loading with another precision overrides the stored one.
    const asFp32 = await Model.load(path, { precision: 'fp32' });
    expect(asFp32.spec.precision).toBe('fp32');
    const d = await (await asFp32.predict(images)).mask.data('float32');
    let vsFp32 = 0;
    for (let i = 0; i < d.length; i++) vsFp32 = Math.max(vsFp32, Math.abs(d[i]! - a[i]!));
    expect(vsFp32).toBeLessThan(1e-5);
    for (const m of [fp32, bf16, loaded, asFp32]) m.dispose();
    images.dispose();
    masks.dispose();
  });

  it('a bf16 training step trains (finite loss, weights move) without a scaler', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 12, precision: 'bf16' });
    const engine = TrainEngine.create(model, OPTIONS);
    const before = await weights(model);
    const { images, masks } = toy(2, 2, 32);
    const r = await engine.step(images, masks);
    expect(r).toMatchObject({ finite: true, stepped: true, lossScale: 0, overflow: false });
    expect(maxDiff(before, await weights(model))).toBeGreaterThan(0);
    engine.dispose();
    model.dispose();
  });
});

describe('gradient scaler (CPU, injected overflows)', () => {
  it('a power-of-two scale gives the same weights as no scaler', async () => {
    const runs: Float32Array[][] = [];
    for (const scaler of [undefined, { mode: 'on' as const, initScale: 2 ** 20 }]) {
      const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 13 });
      const engine = TrainEngine.create(model, { ...OPTIONS, ...(scaler ? { scaler } : {}) });
      for (let s = 0; s < 2; s++) {
        const { images, masks } = toy(20 + s, 2, 32);
        const r = await engine.step(images, masks);
        expect(r.stepped).toBe(true);
        expect(r.lossScale).toBe(scaler ? 2 ** 20 : 0);
      }
      runs.push(await weights(model));
      engine.dispose();
      model.dispose();
    }
    expect(maxDiff(runs[0]!, runs[1]!)).toBeLessThan(1e-6);
  });

  it('overflowing gradients skip the step, leave weights alone and halve the scale until steps succeed; growth after growthInterval', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 14 });
    // 2^126 times the loss overflows float32 gradients (max ~3.4e38) in backward.
    const engine = TrainEngine.create(model, { ...OPTIONS, scaler: { mode: 'on', initScale: 2 ** 126, backoffFactor: 2 ** -40, growthInterval: 2 } });
    const start = await weights(model);
    const { images, masks } = toy(30, 2, 32);
    const first = await engine.step(images, masks);
    expect(first).toMatchObject({ finite: true, stepped: false, overflow: true, lossScale: 2 ** 86 });
    expect(Number.isFinite(first.loss)).toBe(true);
    expect(maxDiff(start, await weights(model))).toBe(0);
    // Back off until the scaled gradients fit, then step.
    let r = first;
    let skipped = 1;
    while (r.overflow) {
      r = await engine.step(images, masks);
      if (r.overflow) skipped += 1;
      expect(skipped).toBeLessThan(5);
    }
    expect(r.stepped).toBe(true);
    const scale = r.lossScale;
    expect(scale).toBeLessThanOrEqual(2 ** 86);
    expect(maxDiff(start, await weights(model))).toBeGreaterThan(0);
    // growthInterval 2: the second finite step in a row doubles the scale.
    const again = await engine.step(images, masks);
    expect(again).toMatchObject({ stepped: true, overflow: false, lossScale: scale * 2 });
    // The scaler's state travels with the optimizer state.
    const state = await engine.optimizerState();
    expect(await state.get('scaler/scale')!.item()).toBe(scale * 2);
    expect(await state.get('scaler/growth_tracker')!.item()).toBe(0);
    const other = await Model.create({ backbone: 'tiny_unet_r18', seed: 14 });
    const restored = TrainEngine.create(other, { ...OPTIONS, scaler: { mode: 'on' } });
    await restored.loadOptimizerState(state);
    const next = await restored.step(images, masks);
    expect(next.lossScale).toBe(scale * 2);
    for (const t of state.values()) t.dispose();
    for (const e of [engine, restored]) e.dispose();
    for (const m of [model, other]) m.dispose();
  });

  it('rejects bad scaler options by name', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 15 });
    expect(() => TrainEngine.create(model, { ...OPTIONS, scaler: { mode: 'sometimes' as never } })).toThrow(/options.scaler.mode/);
    expect(() => TrainEngine.create(model, { ...OPTIONS, scaler: { backoffFactor: 2 } })).toThrow(/options.scaler.backoffFactor/);
    expect(() => TrainEngine.create(model, { ...OPTIONS, scaler: { growthInterval: 0 } })).toThrow(/options.scaler.growthInterval/);
    expect(() => TrainEngine.create(model, { ...OPTIONS, scaler: { wat: 1 } as never })).toThrow(/Unknown gradient scaler option 'wat'/);
    model.dispose();
  });
});

describe('training config', () => {
  it('training.precision takes auto|fp32|bf16|fp16 (default auto) and deterministic a boolean', () => {
    expect(validateConfig({ data: { dir: '/tmp' } }).training.precision).toBe('auto');
    expect(validateConfig({ data: { dir: '/tmp' }, training: { precision: 'bf16', deterministic: true } }).training).toMatchObject({ precision: 'bf16', deterministic: true });
    expect(() => validateConfig({ data: { dir: '/tmp' }, training: { precision: 'fp8' } })).toThrow(/precision/);
  });
});
