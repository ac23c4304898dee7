/**
 * Pretrained encoder weights in their upstream naming load strictly into the native encoders and
 * give the same feature maps as the Python models on the same input: torchvision resnet34 into
 * albunet34, Cadene-named SE-ResNeXt50 (legacy torch.save format, no num_batches_tracked, as the
 * 2017 file) into unet_se50 and the dilated deeplab_se50, lukemelas-named EfficientNet-B4 into
 * unet_ef4. The files are written by Python's torch (the repo's reference encoders,
 * bench/python/models_baseline.py), with the upstream classifier heads in them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor } from '../../src/core/tensor.js';
import { Model } from '../../src/models/model.js';
import { readTorchFile } from '../../src/models/torch-file.js';
import { BASELINE, hasPythonTorch, python } from './python.js';

const dir = mkdtempSync(join(tmpdir(), 'pn-pretrained-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function readPt(path: string): Promise<Map<string, Tensor>> {
  return new Map((await readTorchFile(path)).map(([k, t]) => [k, new Tensor(t)]));
}

/** Largest absolute difference relative to the reference's largest magnitude (at least 1). */
async function relDiff(a: Tensor, b: Tensor): Promise<number> {
  expect(a.shape).toEqual(b.shape);
  const x = await a.data('float32');
  const y = await b.data('float32');
  let worst = 0;
  let scale = 1;
  for (let i = 0; i < x.length; i++) {
    worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
    scale = Math.max(scale, Math.abs(y[i]!));
  }
  return worst / scale;
}

const SCRIPT = `
import collections, sys, torch, torchvision
sys.path.insert(0, sys.argv[2])
import models_baseline as mb
out = sys.argv[1]
torch.manual_seed(0)

def busy_bn(m):  # non-trivial statistics
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5); mod.bias.data.uniform_(-0.1, 0.1)

x = torch.randn(2, 3, 64, 64)
torch.save({'input': x}, out + '/input.pt')

def features(enc, name):
    enc.eval()
    with torch.no_grad():
        f = enc(x)
    torch.save({'f%d' % k: t.contiguous() for k, t in enumerate(f)}, out + '/' + name)

# torchvision resnet34, its own state_dict (an OrderedDict with _metadata, fc included), zip format
tv = torchvision.models.resnet34(); busy_bn(tv); tv.eval()
torch.save(tv.state_dict(), out + '/resnet34-tv.pth')
with torch.no_grad():
    f2 = torch.relu(tv.bn1(tv.conv1(x))); f4 = tv.layer1(tv.maxpool(f2)); f8 = tv.layer2(f4); f16 = tv.layer3(f8); f32 = tv.layer4(f16)
torch.save({'f0': f2, 'f1': f4, 'f2': f8, 'f3': f16, 'f4': f32}, out + '/resnet34-features.pt')

# SE-ResNeXt50 in Cadene's naming with last_linear, legacy format, no num_batches_tracked (as 2017)
se = mb.build_encoder('se_resnext50_32x4d'); busy_bn(se)
sd = collections.OrderedDict((k, v) for k, v in se.state_dict().items() if not k.endswith('num_batches_tracked'))
sd['last_linear.weight'] = torch.randn(1000, 2048) * 0.01
sd['last_linear.bias'] = torch.zeros(1000)
torch.save(sd, out + '/se50-cadene.pth', _use_new_zipfile_serialization=False)
features(se, 'se50-features.pt')
se16 = mb.build_encoder('se_resnext50_32x4d', 16)
se16.load_state_dict(se.state_dict())
features(se16, 'se50-os16-features.pt')

# EfficientNet-B4 in lukemelas' naming with _conv_head, _bn1 and _fc, zip format
ef = mb.build_encoder('efficientnet-b4'); busy_bn(ef)
sd = ef.state_dict()
sd['_conv_head.weight'] = torch.randn(1792, 448, 1, 1) * 0.01
for k, v in torch.nn.BatchNorm2d(1792).state_dict().items():
    sd['_bn1.' + k] = v
sd['_fc.weight'] = torch.randn(1000, 1792) * 0.01
sd['_fc.bias'] = torch.zeros(1000)
torch.save(sd, out + '/efficientnet-b4-lukemelas.pth')
features(ef, 'ef4-features.pt')
`;

describe.skipIf(!hasPythonTorch)('pretrained encoder weights in upstream naming', () => {
  const ready = (() => {
    let done = false;
    return () => {
      if (done) return;
      const script = join(dir, 'make.py');
      writeFileSync(script, SCRIPT);
      python([script, dir, join(BASELINE, '..')]);
      done = true;
    };
  })();

  const cases: { name: string; backbone: string; file: string; features: string; ignored: string[]; defaulted: 'none' | 'all' }[] = [
    { name: 'torchvision resnet34 -> albunet34', backbone: 'albunet34', file: 'resnet34-tv.pth', features: 'resnet34-features.pt', ignored: ['fc.weight', 'fc.bias'], defaulted: 'none' },
    { name: 'Cadene se_resnext50_32x4d (legacy format) -> unet_se50', backbone: 'unet_se50', file: 'se50-cadene.pth', features: 'se50-features.pt', ignored: ['last_linear.weight', 'last_linear.bias'], defaulted: 'all' },
    { name: 'Cadene se_resnext50_32x4d -> deeplab_se50 (dilated, output stride 16)', backbone: 'deeplab_se50', file: 'se50-cadene.pth', features: 'se50-os16-features.pt', ignored: ['last_linear.weight', 'last_linear.bias'], defaulted: 'all' },
    {
      name: 'lukemelas efficientnet-b4 -> unet_ef4',
      backbone: 'unet_ef4',
      file: 'efficientnet-b4-lukemelas.pth',
      features: 'ef4-features.pt',
      ignored: ['_conv_head.weight', '_bn1.weight', '_bn1.bias', '_bn1.running_mean', '_bn1.running_var', '_bn1.num_batches_tracked', '_fc.weight', '_fc.bias'],
      defaulted: 'none',
    },
  ];

  it.each(cases)('$name: loads strictly, the classifier named as ignored, and the five feature maps equal Python', async (c) => {
    ready();
    const model = await Model.create({ backbone: c.backbone, encoderWeights: join(dir, c.file), seed: 3, channelsLast: false });
    const report = model.encoderWeightsReport!;
    expect(report).not.toBeNull();
    expect(report.ignored.sort()).toEqual([...c.ignored].sort());
    expect(report.strippedPrefix).toBeNull();
    const bnCount = [...(await model.stateDict()).keys()].filter((k) => k.startsWith('encoder.') && k.endsWith('.num_batches_tracked')).length;
    expect(report.defaulted.length).toBe(c.defaulted === 'all' ? bnCount : 0);
    expect(model.spec.encoderWeights).toBe(join(dir, c.file));
    model.eval();
    const input = (await readPt(join(dir, 'input.pt'))).get('input')!;
    const ref = await readPt(join(dir, c.features));
    const features = await model.encode(input);
    expect(features.length).toBe(5);
    for (let k = 0; k < 5; k++) expect(await relDiff(features[k]!, ref.get(`f${k}`)!)).toBeLessThan(1e-4);
    // The channels-last default gives the same maps (other kernels: looser tolerance).
    const cl = await Model.create({ backbone: c.backbone, encoderWeights: join(dir, c.file), seed: 3 });
    cl.eval();
    const clFeatures = await cl.encode(input);
    expect(await relDiff(clFeatures[4]!, ref.get('f4')!)).toBeLessThan(1e-3);
    model.dispose();
    cl.dispose();
  });

  it('a single-channel model takes the RGB first convolution summed over its inputs', async () => {
    ready();
    const model = await Model.create({ backbone: 'unet_r34', inChannels: 1, encoderWeights: join(dir, 'resnet34-tv.pth'), channelsLast: false });
    expect(model.encoderWeightsReport!.adapted).toEqual(['conv1.weight']);
    const rgb = (await readPt(join(dir, 'resnet34-tv.pth'))).get('conv1.weight')!;
    const grey = (await model.stateDict()).get('encoder.conv1.weight')!;
    expect(grey.shape).toEqual([64, 1, 7, 7]);
    const a = await rgb.data('float32');
    const b = await grey.data('float32');
    for (const i of [0, 49 * 5 + 3, 64 * 49 - 1]) {
      const o = Math.floor(i / 49);
      const p = i % 49;
      expect(b[i]).toBeCloseTo(a[o * 147 + p]! + a[o * 147 + 49 + p]! + a[o * 147 + 98 + p]!, 5);
    }
    model.dispose();
  });

  it('a weights file for another encoder is an error listing the missing and unexpected tensors; nothing is loaded', async () => {
    ready();
    await expect(Model.create({ backbone: 'unet_r18', encoderWeights: join(dir, 'resnet34-tv.pth') })).rejects.toThrow(
      /resnet34-tv\.pth do not fit resnet18.*unexpected: layer1\.2\.conv1\.weight/s,
    );
    await expect(Model.create({ backbone: 'unet_se50', encoderWeights: join(dir, 'resnet34-tv.pth') })).rejects.toThrow(/missing: layer0\.conv1\.weight.*unexpected: conv1\.weight/s);
  });
});
