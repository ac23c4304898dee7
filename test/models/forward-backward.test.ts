/**
 * Every encoder and every architecture runs forward and backward on a small input, with finite
 * gradients that reach every trainable tensor; outputs have the input's size.
 */
import { describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { manualSeed } from '../../src/core/runtime.js';
import { Model } from '../../src/models/model.js';
import type { ModelOptions } from '../../src/models/model.js';

interface Case {
  name: string;
  options: ModelOptions;
  batch: number;
  size: number;
}

const cases: Case[] = [
  // every native encoder under the plain UNet
  ...['resnet18', 'resnet34', 'resnet50', 'se_resnext50_32x4d', 'se_resnext101_32x4d', 'efficientnet-b3', 'efficientnet-b4', 'efficientnet-b5'].map(
    // EfficientNet's drop-connect zeroes a block's residual branch per sample in training: a batch
    // of 4 keeps every block alive (the draw is seeded, so this is deterministic).
    (encoder) => ({ name: `unet on ${encoder}`, options: { architecture: 'unet' as const, encoder }, ...(encoder.startsWith('efficientnet') ? { batch: 4, size: 32 } : { batch: 2, size: 64 }) }),
  ),
  // every architecture, with the seeds' backbone names
  { name: 'scseunet_se50', options: { backbone: 'scseunet_se50' }, batch: 2, size: 64 },
  { name: 'albunet34', options: { backbone: 'albunet34' }, batch: 1, size: 64 },
  { name: 'unetpp_r18', options: { backbone: 'unetpp_r18' }, batch: 1, size: 64 },
  { name: 'unetpp_ef4', options: { backbone: 'unetpp_ef4' }, batch: 4, size: 32 },
  { name: 'deeplab_r34', options: { backbone: 'deeplab_r34' }, batch: 2, size: 64 },
  { name: 'deeplab_se50', options: { backbone: 'deeplab_se50' }, batch: 2, size: 64 },
  { name: 'unet_r18 with a classification head', options: { backbone: 'unet_r18', classificationHead: true }, batch: 2, size: 64 },
  { name: 'tiny_unet_r18, 2 classes, 1 input channel', options: { backbone: 'tiny_unet_r18', classes: 2, inChannels: 1 }, batch: 1, size: 96 },
];

describe('forward and backward', () => {
  it.each(cases)('$name', async ({ options, batch, size }) => {
    manualSeed(7);
    const model = await Model.create({ ...options, seed: 7 });
    const channels = options.inChannels ?? 3;
    const x = await Tensor.randn([batch, channels, size, size]);
    const step = await model.gradientStep(x);
    expect(step.finite).toBe(true);
    expect(step.loss).toBeGreaterThan(0);
    expect(step.gradientNorm).toBeGreaterThan(0);
    expect(step.trainableTensors).toBeGreaterThan(10);
    expect(step.tensorsWithGradient).toBe(step.trainableTensors);
    expect(step.tensorsWithNonzeroGradient).toBe(step.trainableTensors);
    model.eval();
    const out = await model.forward(x);
    expect(out.mask.shape).toEqual([batch, options.classes ?? 1, size, size]);
    const values = await out.mask.data('float32');
    expect(values.every(Number.isFinite)).toBe(true);
    if (options.classificationHead) expect(out.label!.shape).toEqual([batch, 1]);
    else expect(out.label).toBeUndefined();
    out.mask.dispose();
    out.label?.dispose();
    x.dispose();
    model.dispose();
    expect(model.disposed).toBe(true);
    expect(() => model.parameterCount()).toThrow(/disposed/);
  });

  it('rejects input sizes the architecture cannot take, naming the size', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 1 });
    const odd = await Tensor.zeros([1, 3, 100, 96]);
    await expect(model.forward(odd)).rejects.toThrow(/multiples of 32 .* but received 100x96/);
    // the native side checks too (for callers below the TypeScript API)
    await expect(model.native.forward(odd.native)).rejects.toThrow(/multiples of 32 .* but received 100x96/);
    await expect(model.native.forward((await Tensor.zeros([1, 1, 64, 64])).native)).rejects.toThrow(/Expected 3 input channels .* received 1/);
    const albunet = await Model.create({ backbone: 'albunet18', seed: 1 });
    const x96 = await Tensor.zeros([1, 3, 96, 96]);
    await expect(albunet.forward(x96)).rejects.toThrow(/multiples of 64 .* but received 96x96/);
    model.dispose();
    albunet.dispose();
  });

  it('rejects bad options with the field named', async () => {
    await expect(Model.create({ backbone: 'unet_r1000' })).rejects.toThrow(/for backbone but received "unet_r1000"/);
    await expect(Model.create({ architecture: 'unet', encoder: 'resnet1000' })).rejects.toThrow(/for options.encoder but received "resnet1000"/);
    await expect(Model.create({ backbone: 'unet_r18', decoderChannels: [1, 2] })).rejects.toThrow(/array of 5 positive integers for options.decoderChannels/);
    await expect(Model.create({ backbone: 'unet_r18', classes: 0 })).rejects.toThrow(/options.classes/);
    await expect(Model.create({ architecture: 'deeplabv3', encoder: 'efficientnet-b3' })).rejects.toThrow(/ResNet-family encoder/);
  });

  it('channels-last weights and inputs give the same outputs and gradients flow', async () => {
    const plain = await Model.create({ backbone: 'tiny_unet_r18', seed: 13, channelsLast: false });
    const last = await Model.create({ backbone: 'tiny_unet_r18', seed: 13, autocast: true }); // autocast: CUDA only, a no-op here
    expect(plain.spec.channelsLast).toBe(false);
    expect(last.spec.channelsLast).toBe(true); // the default
    const x = await Tensor.randn([2, 3, 64, 64]);
    const step = await last.gradientStep(x);
    expect(step.finite).toBe(true);
    expect(step.tensorsWithNonzeroGradient).toBe(step.trainableTensors);
    await plain.gradientStep(x);
    plain.eval();
    last.eval();
    const a = await (await plain.forward(x)).mask.data('float32');
    const b = await (await last.forward(x)).mask.data('float32');
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    expect(worst).toBeLessThan(1e-3);
    plain.dispose();
    last.dispose();
  });

  it('initialises deterministically from a seed', async () => {
    const a = await Model.create({ backbone: 'tiny_unet_r18', seed: 11 });
    const b = await Model.create({ backbone: 'tiny_unet_r18', seed: 11 });
    const c = await Model.create({ backbone: 'tiny_unet_r18', seed: 12 });
    const w = async (m: Model) => (await m.stateDict()).get('decoder.blocks.0.conv1.0.weight')!.data('float32');
    expect(await w(a)).toEqual(await w(b));
    expect(await w(a)).not.toEqual(await w(c));
    a.dispose();
    b.dispose();
    c.dispose();
  });
});
