/**
 * The 42nd place's BiSeNet and dual-attention UNet (issue 20): parameters (names, shapes, count)
 * and outputs against an eager-PyTorch reference (seed42_reference.py) with the same weights;
 * forward and backward on CPU; the auxiliary heads' loss in training (loss.auxWeight) changes the
 * loss and the gradients linearly and reaches only training, never inference.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { manualSeed } from '../../src/core/runtime.js';
import { loadBinding } from '../../src/native/binding.js';
import { Model } from '../../src/models/model.js';
import { TrainEngine } from '../../src/training/engine.js';
import { validateConfig } from '../../src/training/config.js';
import { hasPythonTorch, python } from './python.js';

const REFERENCE = fileURLToPath(new URL('./seed42_reference.py', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pn-bisenet-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function readPt(path: string): Promise<Map<string, Tensor>> {
  return new Map((await loadBinding().readStateDict(path)).map(([k, t]) => [k, new Tensor(t)]));
}

async function values(t: Tensor): Promise<Float32Array> {
  return Float32Array.from(await t.data('float32'));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

function maxAbs(a: Float32Array): number {
  return a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

/** Deterministic images and masks (a bright disc per image) for the engine. */
function toyBatch(batch: number, size: number): { images: Tensor; masks: Tensor } {
  const images = new Float32Array(batch * 3 * size * size);
  const masks = new Float32Array(batch * size * size);
  for (let b = 0; b < batch; b++) {
    const cx = size * (0.3 + 0.2 * b);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const inside = (x - cx) ** 2 + (y - size / 2) ** 2 < (size / 5) ** 2;
        masks[b * size * size + y * size + x] = inside ? 1 : 0;
        for (let c = 0; c < 3; c++) images[((b * 3 + c) * size + y) * size + x] = (inside ? 0.8 : -0.3) + 0.1 * Math.sin(x * 0.7 + y * 1.3 + c + b);
      }
    }
  }
  return { images: Tensor.from(images, [batch, 3, size, size]), masks: Tensor.from(masks, [batch, 1, size, size]) };
}

/** Nonzero attention and gap gammas (they start at 0, which hides the attention paths). */
async function wakeGammas(model: Model): Promise<void> {
  const names = ['pam.gamma', 'cam.gamma', 'gamma_gap'];
  const report = await model.loadStateDict(new Map(names.map((n, i) => [n, Tensor.from(new Float32Array([0.5 + 0.25 * i]), [1])])), { strict: false });
  expect(report.loaded).toBe(3);
}

const cases = [
  { arch: 'bisenet' as const, widths: [128], aux: 3, megabytes: 53 },
  { arch: 'daunet' as const, widths: [128, 64, 32, 16, 8], aux: 2, megabytes: 48 },
];

describe.skipIf(!hasPythonTorch)('42nd-place architectures against the Python reference', () => {
  it.each(cases)('$arch: parameter names, shapes and count; eval outputs with the same weights', async ({ arch, widths, aux, megabytes }) => {
    const model = await Model.create({ architecture: arch, encoder: 'resnet18', classificationHead: true, seed: 11 });
    await wakeGammas(model);
    // Non-trivial BatchNorm statistics, so that eval mode exercises them.
    const stats = new Map<string, Tensor>();
    for (const [name, t] of await model.stateDict()) {
      if (name.endsWith('running_var')) stats.set(name, Tensor.from((await values(t)).map((_, i) => 0.5 + ((i * 7919) % 100) / 100), t.shape));
      if (name.endsWith('running_mean')) stats.set(name, Tensor.from((await values(t)).map((_, i) => ((i * 104729) % 21) / 100 - 0.1), t.shape));
    }
    expect((await model.loadStateDict(stats)).loaded).toBe(stats.size);
    const state = await model.stateDict();
    const weights = join(dir, `${arch}.pt`);
    await model.saveStateDict(weights);
    const x = await Tensor.randn([2, 3, 64, 96]);
    const inputFile = join(dir, `${arch}-x.pt`);
    await loadBinding().writeStateDict(inputFile, [['x', x.native]]);
    const report = JSON.parse(python([REFERENCE, arch, JSON.stringify(widths), '1', '1', weights, inputFile, dir])) as {
      parameters: number;
      encoder: number;
      tensors: Record<string, number[]>;
      train: { mask: number[]; label: number[]; aux: number[][] };
      eval: { mask: number[]; label: number[] };
    };
    // Parameters: the same names and shapes (the seed's, with `encoder` for its backbone) and count.
    const native = Object.fromEntries([...state].map(([k, t]) => [k, t.shape]));
    expect(native).toEqual(report.tensors);
    const counts = model.parameterCount();
    expect(counts.total).toBe(report.parameters);
    expect(counts.encoder).toBe(report.encoder);
    // The seed's README: BiSeNet (ResNet18) 53 MB, UNet (ResNet18) 48 MB of float32 weights.
    expect(Math.floor((counts.total * 4) / 1e6)).toBe(megabytes);
    expect(report.train.aux).toHaveLength(aux);
    for (const shape of report.train.aux) expect(shape).toEqual([2, 1, 64, 96]);
    // Outputs: eval mode, same weights, same input.
    model.eval();
    const out = await model.forward(x);
    expect(out.mask.shape).toEqual(report.eval.mask);
    expect(out.label!.shape).toEqual(report.eval.label);
    const ref = await readPt(join(dir, 'out.pt'));
    const mask = await values(out.mask);
    const scale = maxAbs(mask);
    expect(scale).toBeGreaterThan(0);
    expect(maxAbsDiff(mask, await values(ref.get('mask')!))).toBeLessThan(1e-4 * Math.max(1, scale));
    expect(maxAbsDiff(await values(out.label!), await values(ref.get('label')!))).toBeLessThan(1e-4);
    model.dispose();
  });
});

describe('42nd-place architectures on CPU', () => {
  it.each(cases)('$arch: forward and backward reach every tensor; inference returns the main output only', async ({ arch }) => {
    manualSeed(5);
    const model = await Model.create({ architecture: arch, encoder: 'resnet18', seed: 5 });
    await wakeGammas(model);
    const x = await Tensor.randn([2, 3, 64, 64]);
    const step = await model.gradientStep(x);
    expect(step.finite).toBe(true);
    expect(step.tensorsWithGradient).toBe(step.trainableTensors);
    expect(step.tensorsWithNonzeroGradient).toBe(step.trainableTensors);
    model.eval();
    const out = await model.forward(x);
    expect(out.mask.shape).toEqual([2, 1, 64, 64]);
    expect(out.label).toBeUndefined();
    // The auxiliary heads take no part in inference: changing them changes nothing.
    const before = await values(out.mask);
    const auxName = arch === 'bisenet' ? 'aux_cls_8x.2.weight' : 'aux_cls_4x.2.weight';
    const auxWeight = (await model.stateDict()).get(auxName)!;
    await model.loadStateDict(new Map([[auxName, await Tensor.randn(auxWeight.shape)]]), { strict: false });
    expect(maxAbsDiff(await values((await model.forward(x)).mask), before)).toBe(0);
    await model.loadStateDict(new Map([['cls.2.weight', await Tensor.randn((await model.stateDict()).get('cls.2.weight')!.shape)]]), { strict: false });
    expect(maxAbsDiff(await values((await model.forward(x)).mask), before)).toBeGreaterThan(0);
    model.dispose();
  });

  it('trains on a batch of 1 (pooled BatchNorm on running statistics); rejects a bad width and a classification head with several classes', async () => {
    for (const backbone of ['tiny_bisenet_r18', 'tiny_daunet_r18']) {
      const model = await Model.create({ backbone, seed: 1 });
      const before = await values((await model.stateDict()).get('aux_cls_gap.0.cbr_unit.1.running_mean')!);
      const step = await model.gradientStep(await Tensor.randn([1, 3, 64, 64]));
      expect(step.finite, backbone).toBe(true);
      expect(step.tensorsWithGradient).toBe(step.trainableTensors);
      // the pooled BatchNorm kept its statistics; a full-resolution one updated them
      expect(maxAbsDiff(await values((await model.stateDict()).get('aux_cls_gap.0.cbr_unit.1.running_mean')!), before)).toBe(0);
      expect(maxAbs(await values((await model.stateDict()).get('encoder.bn1.running_mean')!))).toBeGreaterThan(0);
      model.eval();
      expect((await model.forward(await Tensor.randn([1, 3, 64, 64]))).mask.shape).toEqual([1, 1, 64, 64]);
      model.dispose();
    }
    await expect(Model.create({ architecture: 'bisenet', encoder: 'resnet18', decoderChannels: [30] })).rejects.toThrow(/divisible by 4 .* got 30/);
    await expect(Model.create({ architecture: 'bisenet', encoder: 'resnet18', decoderChannels: [32, 32] })).rejects.toThrow(/an array of 1 positive integers/);
    await expect(Model.create({ architecture: 'daunet', encoder: 'resnet18', classes: 2, classificationHead: true })).rejects.toThrow(/classification head needs classes 1, got 2/);
  });

  it('the auxiliary loss: linear in auxWeight, the only gradient of the auxiliary heads, absent at auxWeight 0', async () => {
    const { images, masks } = toyBatch(2, 64);
    const loss = [{ kind: 'balanced-bce' as const, options: { alpha: 0.25 } }, { kind: 'lovasz' as const, weight: 0.1, options: { positiveMargin: 5, negativeMargin: 1, symmetric: true } }];
    const run = async (auxWeight: number): Promise<{ loss: number; changed: (name: string) => boolean }> => {
      const model = await Model.create({ backbone: 'tiny_bisenet_r18', seed: 21 });
      const start = new Map<string, Float32Array>();
      for (const [name, t] of await model.stateDict()) start.set(name, await values(t));
      const engine = TrainEngine.create(model, { optimizer: { algorithm: 'sgd', lr: 0.1 }, loss, auxWeight });
      manualSeed(3); // the same dropout masks in every run
      const r = await engine.step(images, masks);
      expect(r).toMatchObject({ finite: true, stepped: true });
      const end = new Map<string, Float32Array>();
      for (const [name, t] of await model.stateDict()) end.set(name, await values(t));
      engine.dispose();
      model.dispose();
      return { loss: r.loss, changed: (name) => maxAbsDiff(start.get(name)!, end.get(name)!) > 0 };
    };
    const none = await run(0);
    const seed = await run(0.4);
    const twice = await run(0.8);
    expect(seed.loss).toBeGreaterThan(none.loss);
    // total = main + w * sum(aux): doubling w doubles the auxiliary part.
    expect(twice.loss - none.loss).toBeCloseTo(2 * (seed.loss - none.loss), 4);
    for (const head of ['aux_cls_8x', 'aux_cls_16x', 'aux_cls_32x']) {
      expect(none.changed(`${head}.2.weight`), head).toBe(false);
      expect(seed.changed(`${head}.2.weight`), head).toBe(true);
    }
    // the main classifier trains either way
    expect(none.changed('cls.2.weight')).toBe(true);
    images.dispose();
    masks.dispose();
  });

  it('loss.auxWeight: the seed default 0.4, read for bisenet/daunet, an error for architectures without auxiliary heads', async () => {
    const base = { data: { dir: 'x' } };
    expect(validateConfig({ ...base, model: { backbone: 'bisenet_r18' } }).loss.auxWeight).toBe(0.4);
    expect(validateConfig({ ...base, model: { backbone: 'daunet_r18' }, loss: { auxWeight: 0.2 } }).loss.auxWeight).toBe(0.2);
    expect(() => validateConfig({ ...base, model: { backbone: 'unet_r18' }, loss: { auxWeight: 0.2 } }, 'f.yaml')).toThrow(
      /loss\.auxWeight: set but nothing reads it: read only for models with auxiliary heads \(bisenet, daunet\), not backbone unet_r18/,
    );
    const model = await Model.create({ backbone: 'tiny_bisenet_r18', seed: 1 });
    expect(() => TrainEngine.create(model, { optimizer: { algorithm: 'sgd' }, loss: [{ kind: 'lovasz' }], auxWeight: -1 })).toThrow(/options\.auxWeight/);
    model.dispose();
  });
});
