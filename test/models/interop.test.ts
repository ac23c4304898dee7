/**
 * Python interop: torchvision weights load into the native encoder under their own names and give
 * the same features; native weights load strictly into the eager-PyTorch reimplementation
 * (bench/python/models_baseline.py) and give the same outputs; a TorchScript encoder made by
 * Python trains jointly with a native decoder, frozen or not.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { loadBinding } from '../../src/native/binding.js';
import { Model } from '../../src/models/model.js';
import type { ModelOptions } from '../../src/models/model.js';
import { BASELINE, hasPythonTorch, python } from './python.js';

const dir = mkdtempSync(join(tmpdir(), 'pn-interop-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** torch.jit.script reads the class source, so scripts go through a file rather than -c. */
function pythonFile(name: string, source: string, args: string[]): string {
  const file = join(dir, name);
  writeFileSync(file, source);
  return python([file, ...args]);
}

async function readPt(path: string): Promise<Map<string, Tensor>> {
  return new Map((await loadBinding().readStateDict(path)).map(([k, t]) => [k, new Tensor(t)]));
}

async function maxDiff(a: Tensor, b: Tensor): Promise<number> {
  expect(a.shape).toEqual(b.shape);
  const x = await a.data('float32');
  const y = await b.data('float32');
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  return worst;
}

describe.skipIf(!hasPythonTorch)('Python interop', () => {
  it('loads a torchvision resnet34 state dict (.pt and .safetensors) and gives the same features', async () => {
    python(['-c', `
import json, struct, sys, torch, torchvision
torch.manual_seed(0)
m = torchvision.models.resnet34()
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):  # non-trivial statistics
        mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 1.5)
m.eval()
sd = {k: v.contiguous() for k, v in m.state_dict().items()}
torch.save(sd, sys.argv[1] + '/tv.pt')
# safetensors by hand: 8-byte LE header length, JSON header, raw bytes
codes = {torch.float32: 'F32', torch.int64: 'I64'}
header, blobs, off = {}, [], 0
for k, v in sd.items():
    b = v.numpy().tobytes(); header[k] = {'dtype': codes[v.dtype], 'shape': list(v.shape), 'data_offsets': [off, off + len(b)]}
    blobs.append(b); off += len(b)
h = json.dumps(header).encode()
open(sys.argv[1] + '/tv.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
x = torch.randn(2, 3, 64, 64)
with torch.no_grad():
    f = torch.relu(m.bn1(m.conv1(x))); f2 = f
    f = m.maxpool(f); f4 = m.layer1(f); f8 = m.layer2(f4); f16 = m.layer3(f8); f32 = m.layer4(f16)
torch.save({'input': x, 'f0': f2, 'f1': f4, 'f2': f8, 'f3': f16, 'f4': f32}, sys.argv[1] + '/features.pt')
`, dir]);
    const ref = await readPt(join(dir, 'features.pt'));
    for (const file of ['tv.pt', 'tv.safetensors']) {
      const model = await Model.create({ backbone: 'unet_r34', seed: 1, channelsLast: false }); // the reference's layout
      const report = await model.loadStateDict(join(dir, file), { prefix: 'encoder.' });
      expect(report.unexpected.sort()).toEqual(['encoder.fc.bias', 'encoder.fc.weight']);
      expect(report.missing).toEqual([]);
      model.eval();
      const features = await model.encode(ref.get('input')!);
      expect(features.length).toBe(5);
      for (let k = 0; k < 5; k++) expect(await maxDiff(features[k]!, ref.get(`f${k}`)!)).toBeLessThan(1e-4);
      model.dispose();
    }
  });

  const architectures: [string, ModelOptions][] = [
    ['unet_r18', { backbone: 'unet_r18' }],
    ['scseunet_se50', { backbone: 'scseunet_se50' }],
    ['albunet34', { backbone: 'albunet34' }],
    ['unetpp_ef3 (efficientnet same padding)', { backbone: 'unetpp_ef3' }],
    ['deeplab_r34 (dilated, ASPP)', { backbone: 'deeplab_r34', classificationHead: true }],
  ];
  it.each(architectures)('%s: native weights load strictly into the Python reimplementation, same outputs', async (_name, options) => {
    // Contiguous like the Python reimplementation: after the step some outputs reach 1e15, where
    // only the same kernels agree to 1e-3 (channels-last vs contiguous is tested on its own).
    const model = await Model.create({ ...options, seed: 21, channelsLast: false });
    const x = await Tensor.randn([2, 3, 64, 64]);
    await model.gradientStep(x, { lr: 0.001 }); // move BatchNorm statistics off their init
    model.eval();
    model.setInferenceOptimization(false);
    const ours = await model.forward(x);
    const weights = join(dir, 'native.pt');
    await model.saveStateDict(weights);
    const io = join(dir, 'in.pt');
    await loadBinding().writeStateDict(io, [['input', x.native]]);
    const args = ['check', model.spec.architecture, model.spec.encoder, weights, io, join(dir, 'out.pt')];
    if (options.classificationHead) args.push('--head');
    python([BASELINE, ...args]);
    const py = await readPt(join(dir, 'out.pt'));
    expect(await maxDiff(ours.mask, py.get('mask')!)).toBeLessThan(1e-3);
    if (options.classificationHead) expect(await maxDiff(ours.label!, py.get('label')!)).toBeLessThan(1e-3);
    model.dispose();
  });

  it('imports a TorchScript encoder, trains it jointly, freezes and unfreezes it', async () => {
    const path = join(dir, 'resnet18-encoder.pt');
    pythonFile('make_encoder.py', `
import sys, torch, torchvision
from typing import List
class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torchvision.models.resnet18()
    def forward(self, x) -> List[torch.Tensor]:
        n = self.net
        f2 = n.relu(n.bn1(n.conv1(x)))
        f4 = n.layer1(n.maxpool(f2))
        f8 = n.layer2(f4)
        f16 = n.layer3(f8)
        return [f2, f4, f8, f16, n.layer4(f16)]
torch.manual_seed(0)
torch.jit.script(Encoder()).save(sys.argv[1])
`, [path]);
    const model = await Model.create({ architecture: 'unet', encoder: path, seed: 2 });
    expect(model.spec.encoder).toBe('torchscript');
    expect(model.encoderInfo.channels).toEqual([64, 64, 128, 256, 512]);
    expect(model.parameterCount().encoder).toBe(11_689_512); // torchvision resnet18 with its unused fc
    const snapshot = async () => {
      const sd = await model.stateDict();
      return {
        encoder: await sd.get('encoder.net.layer1.0.conv1.weight')!.clone(),
        decoder: await sd.get('decoder.blocks.0.conv1.0.weight')!.clone(),
      };
    };
    const x = await Tensor.randn([2, 3, 64, 64]);
    const s0 = await snapshot();
    const step = await model.gradientStep(x, { lr: 0.05 });
    expect(step.finite).toBe(true);
    const s1 = await snapshot();
    expect(await maxDiff(s0.encoder, s1.encoder)).toBeGreaterThan(0);
    expect(await maxDiff(s0.decoder, s1.decoder)).toBeGreaterThan(0);
    model.freezeEncoder(true);
    expect(model.parameterCount().trainable).toBe(model.parameterCount().decoder);
    await model.gradientStep(x, { lr: 0.05 });
    const s2 = await snapshot();
    expect(await maxDiff(s1.encoder, s2.encoder)).toBe(0);
    expect(await maxDiff(s1.decoder, s2.decoder)).toBeGreaterThan(0);
    model.freezeEncoder(false);
    await model.gradientStep(x, { lr: 0.05 });
    expect(await maxDiff(s2.encoder, (await snapshot()).encoder)).toBeGreaterThan(0);
    // a checkpoint carries the imported encoder inside it
    const ckpt = join(dir, 'ts-ckpt.pt');
    model.eval();
    await model.save(ckpt);
    const again = await Model.load(ckpt);
    const a = await model.forward(x);
    const b = await again.forward(x);
    expect(await maxDiff(a.mask, b.mask)).toBe(0);
    model.dispose();
    again.dispose();
  });

  it('DeepLabV3 takes a TorchScript encoder: ASPP at stride 32, or at 16 for one exported dilated', async () => {
    const plain = join(dir, 'resnet18-plain.pt');
    const dilated = join(dir, 'resnet50-os16.pt');
    pythonFile('make_deeplab_encoders.py', `
import sys, torch, torchvision
from typing import List
class Encoder(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
    def forward(self, x) -> List[torch.Tensor]:
        n = self.net
        f2 = n.relu(n.bn1(n.conv1(x)))
        f4 = n.layer1(n.maxpool(f2))
        f8 = n.layer2(f4)
        f16 = n.layer3(f8)
        return [f2, f4, f8, f16, n.layer4(f16)]
torch.manual_seed(0)
torch.jit.script(Encoder(torchvision.models.resnet18())).save(sys.argv[1])
torch.jit.script(Encoder(torchvision.models.resnet50(replace_stride_with_dilation=[False, False, True]))).save(sys.argv[2])
`, [plain, dilated]);
    const x = await Tensor.randn([2, 3, 64, 64]);
    for (const [path, strides, channels] of [[plain, [2, 4, 8, 16, 32], 512], [dilated, [2, 4, 8, 16, 16], 2048]] as const) {
      const model = await Model.create({ architecture: 'deeplabv3', encoder: path, seed: 4 });
      expect(model.encoderInfo.strides).toEqual(strides);
      expect(model.encoderInfo.channels[4]).toBe(channels);
      const step = await model.gradientStep(x, { lr: 0.01 });
      expect(step.finite).toBe(true);
      expect(step.tensorsWithNonzeroGradient).toBe(step.trainableTensors - 2); // all but the scripted net's unused fc
      model.eval();
      const { mask } = await model.forward(x);
      expect(mask.shape).toEqual([2, 1, 64, 64]);
      model.dispose();
    }
    await expect(Model.create({ architecture: 'deeplabv3', encoder: plain, encoderWeights: 'imagenet' })).rejects.toThrow(/TorchScript encoder \(the file carries its own weights\)/);
  });

  it('rejects a TorchScript encoder that breaks the contract', async () => {
    const path = join(dir, 'bad-encoder.pt');
    pythonFile('make_bad_encoder.py', `
import sys, torch
from typing import List
class Bad(torch.nn.Module):
    def forward(self, x) -> List[torch.Tensor]:
        return [x, x]
torch.jit.script(Bad()).save(sys.argv[1])
`, [path]);
    await expect(Model.create({ architecture: 'unet', encoder: path })).rejects.toThrow(/must return a list of 5 feature maps .* returned 2 tensors/);
  });
});
