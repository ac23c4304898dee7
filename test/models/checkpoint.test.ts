/**
 * Checkpoints (weights + spec + metadata + optimizer state, written atomically, loadable on a
 * device), state dicts in both file formats, and TorchScript export: outputs survive every
 * round trip exactly, and Python's torch.jit.load runs the export to the same output.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { loadBinding } from '../../src/native/binding.js';
import { Model } from '../../src/models/model.js';
import { readSafetensorsHeader } from '../../src/models/safetensors.js';
import { hasPythonTorch, python } from './python.js';

const dir = mkdtempSync(join(tmpdir(), 'pn-models-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function output(model: Model, x: Tensor): Promise<Float32Array> {
  const { mask } = await model.forward(x);
  const data = await mask.data('float32');
  mask.dispose();
  return data;
}

describe('checkpoints', () => {
  it('save -> load gives identical outputs, metadata and optimizer state; writes atomically', async () => {
    const model = await Model.create({ backbone: 'unet_r18', classificationHead: true, seed: 3 });
    const x = await Tensor.randn([2, 3, 64, 64]);
    await model.gradientStep(x, { lr: 0.01 }); // BatchNorm statistics and weights move away from init
    model.freezeEncoder(true);
    model.eval();
    const before = await model.forward(x);
    const path = join(dir, 'ckpt.pt');
    const moment = Tensor.from(new Float32Array([1, 2, 3]));
    await model.save(path, { metadata: { epoch: 4, score: 0.84 }, optimizer: new Map([['optimizer/encoder.conv1.weight/exp_avg', moment]]) });
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-') || f.startsWith('.pneumo-tmp-'))).toEqual([]);
    const loaded = await Model.loadCheckpoint(path, { device: 'cpu' });
    expect(loaded.kind).toBe('checkpoint');
    expect(loaded.metadata).toEqual({ epoch: 4, score: 0.84 });
    expect(await loaded.optimizer.get('optimizer/encoder.conv1.weight/exp_avg')!.data('float32')).toEqual(new Float32Array([1, 2, 3]));
    expect(loaded.model.spec).toEqual(model.spec);
    expect(loaded.model.training).toBe(false);
    expect(loaded.model.encoderFrozen).toBe(true);
    expect(loaded.model.parameterCount()).toEqual(model.parameterCount());
    const after = await loaded.model.forward(x);
    expect(await after.mask.data('float32')).toEqual(await before.mask.data('float32'));
    expect(await after.label!.data('float32')).toEqual(await before.label!.data('float32'));
    // a reloaded model trains on: the frozen encoder stays frozen
    loaded.model.train();
    const step = await loaded.model.gradientStep(x);
    expect(step.trainableTensors).toBeLessThan((await loaded.model.stateDict()).size);
    model.dispose();
    loaded.model.dispose();
  });

  it('rejects files that are not pneumo-native models', async () => {
    const junk = join(dir, 'junk.pt');
    writeFileSync(junk, 'not a zip');
    await expect(Model.load(junk)).rejects.toThrow(/cannot load the model file .*junk\.pt/);
    await expect(Model.load(join(dir, 'missing.pt'))).rejects.toThrow(/does not exist/);
  });

  it('state dicts round-trip through .pt and .safetensors', async () => {
    const a = await Model.create({ backbone: 'tiny_unet_r18', seed: 5 });
    const b = await Model.create({ backbone: 'tiny_unet_r18', seed: 6 });
    const x = await Tensor.randn([1, 3, 64, 64]);
    a.eval();
    b.eval();
    expect(await output(a, x)).not.toEqual(await output(b, x));
    for (const file of ['w.pt', 'w.safetensors']) {
      const path = join(dir, file);
      await a.saveStateDict(path);
      const fresh = await Model.create({ backbone: 'tiny_unet_r18', seed: 9 });
      fresh.eval();
      const report = await fresh.loadStateDict(path, { strict: true });
      expect(report.missing).toEqual([]);
      expect(report.unexpected).toEqual([]);
      expect(report.loaded).toBe((await a.stateDict()).size);
      expect(await output(fresh, x)).toEqual(await output(a, x));
      fresh.dispose();
    }
    const header = readSafetensorsHeader(join(dir, 'w.safetensors'));
    expect(header.entries.find((e) => e.name === 'encoder.bn1.num_batches_tracked')).toMatchObject({ dtype: 'I64', shape: [] });
    // a mismatch is an error naming the tensor, and leaves the model untouched
    const wide = await Model.create({ backbone: 'unet_r18', seed: 1 });
    await expect(wide.loadStateDict(join(dir, 'w.pt'))).rejects.toThrow(/Expected shape \[.*\] for decoder\.blocks\.0\.conv1\.0\.weight/);
    await expect(b.loadStateDict(join(dir, 'w.pt'), { prefix: 'x.', strict: true })).rejects.toThrow(/state dict does not match the model: missing/);
    a.dispose();
    b.dispose();
    wide.dispose();
  });

  it('exports TorchScript that the project reloads to the same output', async () => {
    const model = await Model.create({ backbone: 'albunet18', seed: 8 });
    const x = await Tensor.randn([1, 3, 64, 64]);
    await model.gradientStep(x); // a training-mode pass moves the BatchNorm statistics
    model.eval();
    const expected = await output(model, x);
    const path = join(dir, 'albunet18.ts.pt');
    await model.exportTorchScript(path);
    const loaded = await Model.loadCheckpoint(path);
    expect(loaded.kind).toBe('export');
    expect(loaded.model.training).toBe(false);
    const actual = await output(loaded.model, x);
    expect(actual).toEqual(expected);
    // the un-frozen TorchScript path agrees with the frozen, conv-BN-folded one to float precision
    loaded.model.setInferenceOptimization(false);
    const plain = await output(loaded.model, x);
    for (let i = 0; i < plain.length; i += 97) expect(Math.abs(plain[i]! - expected[i]!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(expected[i]!)));
    model.dispose();
    loaded.model.dispose();
  });

  it.skipIf(!hasPythonTorch)('Python torch.jit.load runs the export to the same output', async () => {
    const model = await Model.create({ backbone: 'unet_r18', classificationHead: true, seed: 4 });
    const x = await Tensor.randn([2, 3, 64, 64]);
    await model.gradientStep(x, { lr: 0.01 });
    model.eval();
    model.setInferenceOptimization(false);
    const { mask, label } = await model.forward(x);
    const exported = join(dir, 'unet_r18.ts.pt');
    await model.exportTorchScript(exported);
    const io = join(dir, 'io.pt');
    await loadBinding().writeStateDict(io, [['input', x.native]]);
    const out = python(['-c', `
import json, sys, torch
m = torch.jit.load(sys.argv[1])
x = torch.load(sys.argv[2])['input']
mask, label = m(x)
print(json.dumps({'training': m.training, 'mask': mask.flatten().tolist(), 'label': label.flatten().tolist()}))
`, exported, io]);
    const py = JSON.parse(out) as { training: boolean; mask: number[]; label: number[] };
    expect(py.training).toBe(false);
    const ours = await mask.data('float32');
    expect(py.mask.length).toBe(ours.length);
    let worst = 0;
    for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(py.mask[i]! - ours[i]!));
    expect(worst).toBeLessThan(1e-4);
    const oursLabel = await label!.data('float32');
    py.label.forEach((v, i) => expect(v).toBeCloseTo(oursLabel[i]!, 4));
    model.dispose();
  });

  it('files are written through a temporary name', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 2 });
    const path = join(dir, 'sub-missing', 'x.pt');
    await expect(model.save(path)).rejects.toThrow();
    expect(existsSync(path)).toBe(false);
    model.dispose();
  });
});
