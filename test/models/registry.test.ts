/**
 * The registry's encoder contract (channels, strides) and parameter counts hold for the native
 * encoders, and the counts equal their Python sources': live from torchvision for the ResNets;
 * for SE-ResNeXt live from torchvision's ResNeXt plus the SE modules (pretrainedmodels is not
 * installable here); for EfficientNet the published efficientnet_pytorch totals minus the head.
 */
import { describe, expect, it } from 'vitest';
import { Model } from '../../src/models/model.js';
import { backbone, backboneNames, parseRegistry, registry } from '../../src/models/registry.js';
import { hasPythonTorch, python } from './python.js';

describe('registry', () => {
  it('lists the seeds\' backbone names', () => {
    for (const name of ['unet_se50', 'unet_se101', 'unet_ef3', 'unet_ef5', 'deeplab_se50', 'albunet34', 'unet_r50', 'scseunet_se50', 'unetpp_ef4']) {
      expect(backboneNames()).toContain(name);
    }
    expect(backbone('albunet34')).toMatchObject({ architecture: 'albunet', encoder: 'resnet34' });
    expect(() => backbone('unet_x')).toThrow(/for backbone but received "unet_x"/);
  });

  it('rejects a malformed registry naming the entry', () => {
    const raw = JSON.parse(JSON.stringify({ version: 1, encoders: {}, architectures: {}, backbones: {} }));
    expect(() => parseRegistry({ ...raw, backbones: { b: { architecture: 'unet', encoder: 'resnet18' } } })).toThrow(/backbones.b.architecture/);
    expect(() =>
      parseRegistry({ ...raw, encoders: { e: { family: 'resnet', source: 's', channels: [1, 2, 3, 4, 5], strides: [2, 4, 8, 16, 16], parameters: 1 } } }),
    ).toThrow(/encoders.e.strides/);
  });

  it.each([...registry().encoders.values()].map((e) => [e.name, e] as const))('%s: native channels, strides and parameters match', async (name, entry) => {
    const model = await Model.create({ architecture: 'unet', encoder: name, seed: 0 });
    expect(model.encoderInfo.channels).toEqual(entry.channels);
    expect(model.encoderInfo.strides).toEqual(entry.strides);
    expect(model.parameterCount().encoder).toBe(entry.parameters);
    model.dispose();
  });

  // Published totals with the 1000-class classifier (efficientnet_pytorch 0.7.1 README table / model
  // summaries): b3 12,233,232; b4 19,341,616; b5 30,389,784. The encoder drops _fc, _conv_head and _bn1.
  it.each([
    ['efficientnet-b3', 12_233_232, 384, 1536],
    ['efficientnet-b4', 19_341_616, 448, 1792],
    ['efficientnet-b5', 30_389_784, 512, 2048],
  ] as const)('%s: the published efficientnet_pytorch count minus the head', (name, published, last, head) => {
    const withoutHead = published - (head * 1000 + 1000) - last * head - 2 * head;
    expect(registry().encoders.get(name)!.parameters).toBe(withoutHead);
  });

  it.skipIf(!hasPythonTorch)('ResNet and SE-ResNeXt counts equal the Python sources (torchvision live)', () => {
    const out = python(['-c', `
import json, torchvision
from torchvision.models.resnet import ResNet, Bottleneck
counts = {}
for name in ['resnet18', 'resnet34', 'resnet50']:
    m = getattr(torchvision.models, name)()
    counts[name] = sum(p.numel() for k, p in m.named_parameters() if not k.startswith('fc.'))
# pretrainedmodels' SEResNeXtBottleneck = torchvision's ResNeXt bottleneck (groups 32, width 4)
# plus se_module (fc1: C -> C/16, fc2: C/16 -> C, both with bias) after bn3.
for name, blocks in [('se_resnext50_32x4d', [3, 4, 6, 3]), ('se_resnext101_32x4d', [3, 4, 23, 3])]:
    m = ResNet(Bottleneck, blocks, groups=32, width_per_group=4)
    base = sum(p.numel() for k, p in m.named_parameters() if not k.startswith('fc.'))
    se = sum(n * (2 * c * (c // 16) + c // 16 + c) for c, n in zip([256, 512, 1024, 2048], blocks))
    counts[name] = base + se
print(json.dumps(counts))
`]);
    const counts = JSON.parse(out) as Record<string, number>;
    // pretrainedmodels' own published totals (with last_linear 2048x1000): 27,559,896 and 48,955,416
    expect(counts['se_resnext50_32x4d']! + 2048 * 1000 + 1000).toBe(27_559_896);
    expect(counts['se_resnext101_32x4d']! + 2048 * 1000 + 1000).toBe(48_955_416);
    for (const [name, n] of Object.entries(counts)) expect(registry().encoders.get(name)!.parameters).toBe(n);
  });
});
