#!/usr/bin/env python3
"""Export a pretrained encoder to TorchScript for pneumo-native.

pneumo-native builds its encoders natively (ResNet, SE-ResNeXt, EfficientNet; see
models/registry.json) and fetches the seeds' ImageNet weights itself, without Python:
`Model.create({ backbone, encoderWeights: 'imagenet' })`, `pneumo-native train --encoder-weights
imagenet`, `pneumo-native weights fetch` (README, "Pretrained encoders"). This script is for
other weights and other encoders, if you have the Python packages:

1. As a TorchScript encoder (any architecture timm or pretrainedmodels has):

       python3 models/export_encoder.py timm:tf_efficientnet_b4_ns encoder-b4.pt
       python3 models/export_encoder.py pretrainedmodels:se_resnext50_32x4d encoder-se50.pt
       python3 models/export_encoder.py torchvision:resnet34 encoder-r34.pt
       python3 models/export_encoder.py --output-stride 16 timm:resnet50 encoder-r50-os16.pt  # DeepLabV3

   then `Model.create({ architecture: 'unet', encoder: 'encoder-b4.pt' })` (or
   `pneumo-native train --model.encoderPath encoder-b4.pt`). The file maps an N x 3 x H x W batch
   to the list of 5 feature maps at strides 2, 4, 8, 16, 32 (the encoder contract; with
   --output-stride 16, timm only, the last at 16, which DeepLabV3 uses as is); it is trained
   jointly with the native decoder and frozen/unfrozen like a native encoder.

2. As a state dict for a native encoder of the same family (names follow torchvision,
   pretrainedmodels and efficientnet_pytorch), with --state-dict:

       python3 models/export_encoder.py --state-dict pretrainedmodels:se_resnext50_32x4d se50.safetensors

   then `Model.create({ backbone: 'unet_se50', encoderWeights: 'se50.safetensors' })` (or
   `--encoder-weights se50.safetensors`; upstream `.pth` files load the same way, natively).

Not run in CI (it needs network access for the weights and packages that Debian does not ship).
"""
import argparse
import json
import struct
from typing import List

import torch
import torch.nn as nn


class TimmEncoder(nn.Module):
    """timm features_only model: already returns the maps at strides 2..32."""

    def __init__(self, name: str, output_stride: int = 32):
        super().__init__()
        import timm
        extra = {} if output_stride == 32 else {'output_stride': output_stride}
        self.model = timm.create_model(name, pretrained=True, features_only=True, out_indices=(0, 1, 2, 3, 4), **extra)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.model(x)


class PretrainedModelsSENet(nn.Module):
    """Cadene pretrainedmodels SENet family: layer0 (stride 4 with its pool) split at the pool."""

    def __init__(self, name: str):
        super().__init__()
        import pretrainedmodels
        net = pretrainedmodels.__dict__[name](num_classes=1000, pretrained='imagenet')
        self.stem = nn.Sequential(*list(net.layer0.children())[:-1])
        self.pool = list(net.layer0.children())[-1]
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        f2 = self.stem(x)
        f4 = self.layer1(self.pool(f2))
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return [f2, f4, f8, f16, self.layer4(f16)]


class TorchvisionResNet(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        import torchvision
        net = getattr(torchvision.models, name)(weights='IMAGENET1K_V1')
        self.conv1, self.bn1, self.maxpool = net.conv1, net.bn1, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        f2 = torch.relu(self.bn1(self.conv1(x)))
        f4 = self.layer1(self.maxpool(f2))
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return [f2, f4, f8, f16, self.layer4(f16)]


def source_model(spec: str, output_stride: int = 32):
    package, _, name = spec.partition(':')
    if package == 'timm':
        return TimmEncoder(name, output_stride)
    if output_stride != 32:
        raise SystemExit('--output-stride 16 needs a timm: source')
    if package == 'pretrainedmodels':
        return PretrainedModelsSENet(name)
    if package == 'torchvision':
        return TorchvisionResNet(name)
    raise SystemExit(f'unknown source {spec!r}: use timm:<name>, pretrainedmodels:<name> or torchvision:<name>')


def raw_state_dict(spec: str):
    """The source model's own state dict (names as the native encoders use them)."""
    package, _, name = spec.partition(':')
    if package == 'pretrainedmodels':
        import pretrainedmodels
        return pretrainedmodels.__dict__[name](num_classes=1000, pretrained='imagenet').state_dict()
    if package == 'torchvision':
        import torchvision
        return getattr(torchvision.models, name)(weights='IMAGENET1K_V1').state_dict()
    if package == 'efficientnet_pytorch':
        from efficientnet_pytorch import EfficientNet
        return EfficientNet.from_pretrained(name).state_dict()
    raise SystemExit(f'--state-dict takes pretrainedmodels:, torchvision: or efficientnet_pytorch: sources, not {spec!r}')


def write_safetensors(path: str, tensors):
    codes = {torch.float32: 'F32', torch.float16: 'F16', torch.int64: 'I64'}
    header, blobs, offset = {}, [], 0
    for key, value in tensors.items():
        value = value.detach().contiguous().cpu()
        data = value.numpy().tobytes()
        header[key] = {'dtype': codes[value.dtype], 'shape': list(value.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    encoded += b' ' * ((8 - len(encoded) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(encoded)) + encoded + b''.join(blobs))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('source', help='timm:<name>, pretrainedmodels:<name>, torchvision:<name> or efficientnet_pytorch:<name>')
    parser.add_argument('output', help='the .pt (TorchScript) or .safetensors (--state-dict) file to write')
    parser.add_argument('--state-dict', action='store_true', help='write the source state dict as safetensors instead')
    parser.add_argument('--output-stride', type=int, default=32, choices=[16, 32], help='16: a dilated last stage (for DeepLabV3; timm sources)')
    args = parser.parse_args()
    if args.state_dict:
        write_safetensors(args.output, raw_state_dict(args.source))
        return
    encoder = source_model(args.source, args.output_stride).eval()
    scripted = torch.jit.script(encoder)
    with torch.no_grad():
        features = scripted(torch.zeros(1, 3, 64, 64))
    strides = [64 // f.shape[-1] for f in features]
    expected = [2, 4, 8, 16, args.output_stride]
    if strides != expected:
        raise SystemExit(f'{args.source} gives strides {strides}, not {expected}')
    scripted.save(args.output)
    print(json.dumps({'output': args.output, 'channels': [f.shape[1] for f in features], 'strides': strides}))


if __name__ == '__main__':
    main()
