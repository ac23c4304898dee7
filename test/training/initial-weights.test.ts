/**
 * Where a fold's model starts: `model.encoderWeights` (a state dict in upstream naming, loaded
 * strictly into the encoder) and `model.weights` with a bare encoder state dict, which used to
 * load nothing (no `encoder.` prefix, non-strict) and now loads into the encoder or fails.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { Model } from '../../src/models/model.js';
import { loadBinding } from '../../src/native/binding.js';
import type { NativeNamedTensors } from '../../src/native/binding.js';
import { validateConfig } from '../../src/training/config.js';
import { initialModel } from '../../src/training/trainer.js';

const dir = mkdtempSync(join(tmpdir(), 'pn-initial-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function config(model: Record<string, unknown>) {
  return validateConfig({ name: 'w', device: 'cpu', data: { dir, imgSize: 64 }, model: { backbone: 'tiny_unet_r18', ...model }, output: { dir } });
}

/** A resnet18 state dict in torchvision's naming (classifier included), from a seeded model. */
async function torchvisionStyleFile(path: string): Promise<Map<string, Float32Array>> {
  const source = await Model.create({ backbone: 'unet_r18', seed: 99, channelsLast: false });
  const named: NativeNamedTensors = [];
  const values = new Map<string, Float32Array>();
  for (const [name, t] of await source.stateDict()) {
    if (!name.startsWith('encoder.')) continue;
    named.push([name.slice('encoder.'.length), t.native]);
    if (t.dtype === 'float32') values.set(name, await t.data('float32'));
  }
  named.push(['fc.weight', (await Tensor.randn([1000, 512])).native], ['fc.bias', (await Tensor.zeros([1000])).native]);
  await loadBinding().writeStateDict(path, named);
  source.dispose();
  return values;
}

async function expectEncoder(model: Model, values: Map<string, Float32Array>): Promise<void> {
  const sd = await model.stateDict();
  let compared = 0;
  for (const [name, expected] of values) {
    const got = await sd.get(name)!.data('float32');
    expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)), name).toBe(true);
    compared++;
  }
  expect(compared).toBeGreaterThan(60);
}

describe('the model a fold starts from', () => {
  it('model.weights with a bare encoder state dict loads it into the encoder (it used to load nothing)', async () => {
    const file = join(dir, 'resnet18-like.pth');
    const values = await torchvisionStyleFile(file);
    const logs: string[] = [];
    const model = await initialModel(config({ weights: file }), 0, 'cpu', (m) => logs.push(m));
    await expectEncoder(model, values);
    expect(logs.join('\n')).toMatch(/is an encoder state dict: .*loaded strictly into the encoder; ignored \(the upstream classifier\): fc\.weight, fc\.bias/);
    model.dispose();
  });

  it('model.encoderWeights loads a file strictly and says what it ignored', async () => {
    const file = join(dir, 'resnet18-like.pth');
    const values = await torchvisionStyleFile(file);
    const logs: string[] = [];
    const model = await initialModel(config({ encoderWeights: file }), 0, 'cpu', (m) => logs.push(m));
    await expectEncoder(model, values);
    expect(model.spec.encoderWeights).toBe(file);
    expect(logs.join('\n')).toMatch(/encoder weights .*resnet18-like\.pth: .* tensors loaded strictly into the encoder; ignored \(the upstream classifier\): fc\.weight, fc\.bias/);
    model.dispose();
  });

  it('model.weights that fits neither the model nor its encoder is an error naming the file', async () => {
    const file = join(dir, 'other.pt');
    await loadBinding().writeStateDict(file, [['backbone.stem.weight', (await Tensor.zeros([4])).native]]);
    await expect(initialModel(config({ weights: file }), 0, 'cpu', () => undefined)).rejects.toThrow(
      /model\.weights: .*other\.pt holds no decoder, so it was read as an encoder state dict, which failed: .*missing: conv1\.weight.*unexpected: backbone\.stem\.weight/s,
    );
  });

  it('a TorchScript encoder and encoderWeights together are a config error', () => {
    expect(() => config({ encoderWeights: 'imagenet', encoderPath: 'enc.pt' })).toThrow(/model\.encoderWeights: a TorchScript encoder/);
  });
});
