/**
 * SWA helpers: averageStateDicts against hand-computed averages; Model.recomputeBatchNorm against
 * Python's torch.optim.swa_utils.update_bn on the eager twin of the model, and against per-channel
 * statistics computed by hand for the first BatchNorm.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { manualSeed } from '../../src/core/runtime.js';
import { Tensor } from '../../src/core/tensor.js';
import { loadBinding } from '../../src/native/binding.js';
import { Model } from '../../src/models/model.js';
import { averageStateDicts } from '../../src/training/swa.js';
import { hasPythonTorch, python } from '../models/python.js';

const REFERENCE = fileURLToPath(new URL('./engine_reference.py', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'pn-swa-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function dict(entries: [string, Tensor][]): Map<string, Tensor> {
  return new Map(entries);
}

describe('averageStateDicts', () => {
  it('weighted and equal averages of float tensors; integer buffers from the first', async () => {
    const a = dict([
      ['w', Tensor.from(new Float32Array([1, 2, 3, 4]), [2, 2])],
      ['n', Tensor.from(new BigInt64Array([5n]), [])],
      ['d', Tensor.from(new Float64Array([0.1, 0.2]), [2])],
    ]);
    const b = dict([
      ['w', Tensor.from(new Float32Array([5, 6, 7, 8]), [2, 2])],
      ['n', Tensor.from(new BigInt64Array([9n]), [])],
      ['d', Tensor.from(new Float64Array([0.3, 0.6]), [2])],
    ]);
    const equal = await averageStateDicts([a, b]);
    expect([...equal.keys()]).toEqual(['w', 'n', 'd']);
    expect(Array.from(await equal.get('w')!.data('float32'))).toEqual([3, 4, 5, 6]);
    expect(equal.get('w')!.shape).toEqual([2, 2]);
    expect(equal.get('n')!.dtype).toBe('int64');
    expect(await equal.get('n')!.item()).toBe(5);
    expect(equal.get('d')!.dtype).toBe('float64');
    const d = await equal.get('d')!.data('float64');
    expect(d[0]).toBeCloseTo(0.2, 15);
    expect(d[1]).toBeCloseTo(0.4, 15);

    const weighted = await averageStateDicts([a, b], [1, 3]); // normalised to 0.25 / 0.75
    expect(Array.from(await weighted.get('w')!.data('float32'))).toEqual([4, 5, 6, 7]);
    const three = await averageStateDicts([a, b, a], [2, 1, 1]);
    const w3 = await three.get('w')!.data('float32');
    for (const [i, v] of [1, 2, 3, 4].entries()) expect(w3[i]).toBeCloseTo((3 * v + (v + 4)) / 4, 6);
    // Inputs untouched.
    expect(Array.from(await a.get('w')!.data('float32'))).toEqual([1, 2, 3, 4]);
  });

  it('rejects mismatched dicts and bad weights, naming them', async () => {
    const a = dict([['w', Tensor.from(new Float32Array([1, 2]), [2])]]);
    const b = dict([['v', Tensor.from(new Float32Array([1, 2]), [2])]]);
    const c = dict([['w', Tensor.from(new Float32Array([1, 2, 3]), [3])]]);
    await expect(averageStateDicts([a, b])).rejects.toThrow(/state dict 1 has no 'w'/);
    await expect(averageStateDicts([a, c])).rejects.toThrow(/Expected 'w' of shape \[2\] in state dict 1 .* but received \[3\]/);
    await expect(averageStateDicts([])).rejects.toThrow(/non-empty array/);
    await expect(averageStateDicts([a, a], [1])).rejects.toThrow(/Expected an array of 2 numbers/);
    await expect(averageStateDicts([a, a], [1, -1])).rejects.toThrow(/weights\[1\]/);
    await expect(averageStateDicts([a, a], [0, 0])).rejects.toThrow(/positive sum/);
  });

  it('averaging two models equals the mean of their weights and loads back', async () => {
    const m1 = await Model.create({ backbone: 'tiny_unet_r18', seed: 41 });
    const m2 = await Model.create({ backbone: 'tiny_unet_r18', seed: 42 });
    const s1 = await m1.stateDict();
    const s2 = await m2.stateDict();
    const avg = await averageStateDicts([s1, s2]);
    const name = 'encoder.layer1.0.conv1.weight';
    const x = await s1.get(name)!.data('float32');
    const y = await s2.get(name)!.data('float32');
    const z = await avg.get(name)!.data('float32');
    for (let i = 0; i < z.length; i++) expect(Math.abs(z[i]! - (x[i]! + y[i]!) / 2)).toBeLessThan(1e-7);
    const report = await m1.loadStateDict(avg, { strict: true });
    expect(report.loaded).toBe(avg.size);
    m1.dispose();
    m2.dispose();
  });
});

describe('Model.recomputeBatchNorm', () => {
  it('equals the per-channel statistics of the first BatchNorm, averaged over batches; eval mode after', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 43 });
    const batches = [await Tensor.randn([2, 3, 64, 64]), await Tensor.randn([3, 3, 64, 64])];
    async function* feed() {
      for (const b of batches) yield b;
    }
    expect(await model.recomputeBatchNorm(feed())).toBe(2);
    expect(model.training).toBe(false);
    const state = await model.stateDict();
    // bn1's input is conv1(x) (7x7, stride 2, padding 3, no bias), computed here by a direct loop.
    const weight = await state.get('encoder.conv1.weight')!.data('float32');
    const [oc] = state.get('encoder.conv1.weight')!.shape as [number];
    const sumMean = new Float64Array(oc);
    const sumVar = new Float64Array(oc);
    for (const batch of batches) {
      const [n, c, h, w] = batch.shape as [number, number, number, number];
      const xd = await batch.data('float32');
      const oh = h / 2;
      const ow = w / 2;
      for (let o = 0; o < oc; o++) {
        let s = 0;
        let s2 = 0;
        for (let b = 0; b < n; b++) {
          for (let y = 0; y < oh; y++) {
            for (let x = 0; x < ow; x++) {
              let v = 0;
              for (let ci = 0; ci < c; ci++) {
                for (let ky = 0; ky < 7; ky++) {
                  const iy = y * 2 - 3 + ky;
                  if (iy < 0 || iy >= h) continue;
                  for (let kx = 0; kx < 7; kx++) {
                    const ix = x * 2 - 3 + kx;
                    if (ix < 0 || ix >= w) continue;
                    v += xd[((b * c + ci) * h + iy) * w + ix]! * weight[((o * c + ci) * 7 + ky) * 7 + kx]!;
                  }
                }
              }
              s += v;
              s2 += v * v;
            }
          }
        }
        const count = n * oh * ow;
        const mean = s / count;
        sumMean[o]! += mean;
        sumVar[o]! += (s2 - count * mean * mean) / (count - 1);
      }
    }
    const rm = await state.get('encoder.bn1.running_mean')!.data('float32');
    const rv = await state.get('encoder.bn1.running_var')!.data('float32');
    for (let o = 0; o < oc; o++) {
      expect(Math.abs(rm[o]! - sumMean[o]! / 2)).toBeLessThan(1e-4 * (1 + Math.abs(sumMean[o]! / 2)));
      expect(Math.abs(rv[o]! - sumVar[o]! / 2) / (sumVar[o]! / 2)).toBeLessThan(1e-4);
    }
    expect(await state.get('encoder.bn1.num_batches_tracked')!.item()).toBe(2);
    model.dispose();
  });

  it.skipIf(!hasPythonTorch)('equals torch.optim.swa_utils.update_bn on the eager twin (every BatchNorm)', async () => {
    const model = await Model.create({ backbone: 'unet_r18', seed: 44 });
    const x0 = await Tensor.randn([2, 3, 64, 64]);
    await model.gradientStep(x0, { lr: 0.01 }); // non-trivial statistics to reset
    const weights = join(dir, 'start.pt');
    await model.saveStateDict(weights);
    const batches: Tensor[] = [];
    const specs = [];
    for (let k = 0; k < 3; k++) {
      const b = await Tensor.randn([2 + k, 3, 64, 64]);
      batches.push(b);
      const data = await b.data('float32');
      const file = join(dir, `batch${k}.bin`);
      writeFileSync(file, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      specs.push({ file, shape: b.shape });
    }
    const out = join(dir, 'update_bn.pt');
    const config = join(dir, 'update_bn.json');
    writeFileSync(config, JSON.stringify({ arch: 'unet', encoder: 'resnet18', weights, batches: specs, out }));
    python([REFERENCE, 'update_bn', config]);
    const reference = new Map((await loadBinding().readStateDict(out)).map(([k, t]) => [k, new Tensor(t)]));

    expect(await model.recomputeBatchNorm(batches)).toBe(3);
    let checked = 0;
    let worst = 0;
    let worstName = '';
    for (const [name, t] of await model.stateDict()) {
      const ref = reference.get(name);
      expect(ref, name).toBeDefined();
      const a = await t.data('float64');
      const b = await ref!.data('float64');
      for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i]! - b[i]!) / (1 + Math.abs(b[i]!));
        if (d > worst) [worst, worstName] = [d, name];
      }
      if (name.endsWith('running_var')) checked++;
    }
    expect(checked).toBeGreaterThan(20);
    expect(worst, `worst at ${worstName}`).toBeLessThan(1e-4);
    model.dispose();
  });

  it('recomputes the auxiliary heads of BiSeNet too (the training forward runs them), leaving no variance at zero', async () => {
    const model = await Model.create({ backbone: 'tiny_bisenet_r18', seed: 46 });
    const before = await model.stateDict();
    const auxVars = [...before.keys()].filter((k) => /aux/.test(k) && k.endsWith('running_var'));
    expect(auxVars.length).toBeGreaterThan(0);
    manualSeed(47);
    const batches = [await Tensor.randn([2, 3, 64, 64]), await Tensor.randn([3, 3, 64, 64])];
    expect(await model.recomputeBatchNorm(batches)).toBe(2);
    const after = await model.stateDict();
    for (const [name, t] of after) {
      if (!name.endsWith('running_var')) continue;
      const v = await t.data('float32');
      expect(Math.min(...v), name).toBeGreaterThan(0);
    }
    // Recomputed from the data, not left at their initial ones.
    for (const name of auxVars) {
      const v = Array.from(await after.get(name)!.data('float32'));
      expect(v.some((x) => Math.abs(x - 1) > 1e-3), name).toBe(true);
    }
    model.dispose();
  });

  it('restores the statistics and the mode when there is no batch or a bad one', async () => {
    const model = await Model.create({ backbone: 'tiny_unet_r18', seed: 45 });
    model.train();
    const before = Array.from(await (await model.stateDict()).get('encoder.bn1.running_var')!.data('float32'));
    await expect(model.recomputeBatchNorm([])).rejects.toThrow(/at least one batch/);
    await expect(model.recomputeBatchNorm([await Tensor.randn([2, 3, 64, 64]), await Tensor.randn([2, 3, 40, 40])])).rejects.toThrow(
      /batches\[1\] height and width/,
    );
    await expect(model.recomputeBatchNorm([await Tensor.randn([1, 3, 64, 64])])).rejects.toThrow(/at least 2 images/);
    await expect(model.recomputeBatchNorm(5 as never)).rejects.toThrow(/iterable/);
    expect(model.training).toBe(true);
    expect(Array.from(await (await model.stateDict()).get('encoder.bn1.running_var')!.data('float32'))).toEqual(before);
    model.dispose();
  });
});
