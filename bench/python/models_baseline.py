#!/usr/bin/env python3
"""The zoo's architectures in eager PyTorch, with the native side's parameter names, so that a
state dict written by pneumo-native (Model.saveStateDict) loads strictly and both run identical
weights. Used by bench/models.bench.mjs (timings) and test/models (output equality).

  models_baseline.py check  <arch> <encoder> <weights.pt> <input.pt> <output.pt> [--head]
  models_baseline.py bench  <arch> <encoder> <weights.pt> <size> <batch> <reps> [--threads N]

Encoders follow torchvision 0.14 (resnets), Cadene pretrainedmodels 0.7.4 (SE-ResNeXt) and
lukemelas efficientnet_pytorch 0.7.1 (EfficientNet, with TensorFlow "same" padding computed from
the input size), without their classifiers; forward returns the maps at strides 2..32.
"""
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


# ---- encoders -------------------------------------------------------------------------------------

def dilate(stage, rate):
    """smp's replace_strides_with_dilation on one stage."""
    for m in stage.modules():
        if isinstance(m, nn.Conv2d):
            m.stride = (1, 1)
            m.dilation = (rate, rate)
            kh, kw = m.kernel_size
            m.padding = ((kh // 2) * rate, (kw // 2) * rate)


class ResNetEncoder(nn.Module):
    def __init__(self, name, output_stride=32):
        super().__init__()
        net = getattr(torchvision.models, name)()
        del net.fc
        for k in ['conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'layer4']:
            setattr(self, k, getattr(net, k))
        if output_stride == 16:
            dilate(self.layer4, 2)
        elif output_stride == 8:
            dilate(self.layer3, 2)
            dilate(self.layer4, 4)

    def forward(self, x):
        f2 = F.relu(self.bn1(self.conv1(x)), inplace=True)
        x = F.max_pool2d(f2, 3, 2, 1)
        f4 = self.layer1(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        f32 = self.layer4(f16)
        return [f2, f4, f8, f16, f32]


class SEModule(nn.Module):
    def __init__(self, channels, reduction):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s), inplace=True)))


class SEResNeXtBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride, downsample):
        super().__init__()
        width = math.floor(planes * (4 / 64)) * 32
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=32, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.se_module = SEModule(planes * 4, 16)
        self.downsample = downsample

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.se_module(self.bn3(self.conv3(y)))
        r = self.downsample(x) if self.downsample is not None else x
        return F.relu(y + r, inplace=True)


class SENetEncoder(nn.Module):
    def __init__(self, blocks, output_stride=32):
        super().__init__()
        self.layer0 = nn.Sequential()
        self.layer0.add_module('conv1', nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False))
        self.layer0.add_module('bn1', nn.BatchNorm2d(64))
        inplanes = 64
        for i, (planes, n) in enumerate(zip([64, 128, 256, 512], blocks)):
            stride = 1 if i == 0 else 2
            layers = []
            for b in range(n):
                s = stride if b == 0 else 1
                down = None
                if b == 0 and (s != 1 or inplanes != planes * 4):
                    down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=s, bias=False), nn.BatchNorm2d(planes * 4))
                layers.append(SEResNeXtBottleneck(inplanes, planes, s, down))
                inplanes = planes * 4
            setattr(self, 'layer%d' % (i + 1), nn.Sequential(*layers))
        if output_stride == 16:
            dilate(self.layer4, 2)
        elif output_stride == 8:
            dilate(self.layer3, 2)
            dilate(self.layer4, 4)

    def forward(self, x):
        f2 = F.relu(self.layer0.bn1(self.layer0.conv1(x)), inplace=True)
        x = F.max_pool2d(f2, 3, 2, 0, ceil_mode=True)
        f4 = self.layer1(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        f32 = self.layer4(f16)
        return [f2, f4, f8, f16, f32]


class SameConv(nn.Conv2d):
    """efficientnet_pytorch's Conv2dDynamicSamePadding."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        s, d = self.stride[0], self.dilation[0]
        ph = max((math.ceil(ih / s) - 1) * s + (kh - 1) * d + 1 - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + (kw - 1) * d + 1 - iw, 0)
        if ph > 0 or pw > 0:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    def __init__(self, inp, out, expand, k, stride, drop):
        super().__init__()
        mid = inp * expand
        self.expand = expand
        if expand != 1:
            self._expand_conv = SameConv(inp, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, momentum=0.01, eps=1e-3)
        self._depthwise_conv = SameConv(mid, mid, k, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, momentum=0.01, eps=1e-3)
        sq = max(1, int(inp * 0.25))
        self._se_reduce = nn.Conv2d(mid, sq, 1)
        self._se_expand = nn.Conv2d(sq, mid, 1)
        self._project_conv = SameConv(mid, out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out, momentum=0.01, eps=1e-3)
        self.skip = stride == 1 and inp == out
        self.drop = drop

    def forward(self, inputs):
        x = inputs
        if self.expand != 1:
            x = F.silu(self._bn0(self._expand_conv(x)))
        x = F.silu(self._bn1(self._depthwise_conv(x)))
        s = self._se_expand(F.silu(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
        x = torch.sigmoid(s) * x
        x = self._bn2(self._project_conv(x))
        if self.skip:
            if self.training and self.drop > 0:
                keep = 1 - self.drop
                r = torch.rand([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device) + keep
                x = x / keep * torch.floor(r)
            x = x + inputs
        return x


B0 = [(3, 1, 1, 32, 16, 1), (3, 2, 6, 16, 24, 2), (5, 2, 6, 24, 40, 2), (3, 2, 6, 40, 80, 3),
      (5, 1, 6, 80, 112, 3), (5, 2, 6, 112, 192, 4), (3, 1, 6, 192, 320, 1)]
EFF = {'efficientnet-b3': (1.2, 1.4), 'efficientnet-b4': (1.4, 1.8), 'efficientnet-b5': (1.6, 2.2)}


def round_filters(f, w):
    f *= w
    n = max(8, int(f + 4) // 8 * 8)
    if n < 0.9 * f:
        n += 8
    return int(n)


class EfficientNetEncoder(nn.Module):
    def __init__(self, name):
        super().__init__()
        w, d = EFF[name]
        plan = []
        for k, s, e, i, o, r in B0:
            i, o = round_filters(i, w), round_filters(o, w)
            for j in range(int(math.ceil(d * r))):
                plan.append((i if j == 0 else o, o, e, k, s if j == 0 else 1))
        stem = round_filters(32, w)
        self._conv_stem = SameConv(3, stem, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(stem, momentum=0.01, eps=1e-3)
        self._blocks = nn.ModuleList([MBConvBlock(i, o, e, k, s, 0.2 * n / len(plan)) for n, (i, o, e, k, s) in enumerate(plan)])
        self.taps = set()
        stride = 2
        for n, p in enumerate(plan):
            stride *= p[4]
            if (n == len(plan) - 1 or plan[n + 1][4] == 2) and stride > 2:
                self.taps.add(n)

    def forward(self, x):
        x = F.silu(self._bn0(self._conv_stem(x)))
        features = [x]
        for n, block in enumerate(self._blocks):
            x = block(x)
            if n in self.taps:
                features.append(x)
        return features


def build_encoder(name, output_stride=32):
    if name.startswith('resnet'):
        return ResNetEncoder(name, output_stride)
    if name == 'se_resnext50_32x4d':
        return SENetEncoder([3, 4, 6, 3], output_stride)
    if name == 'se_resnext101_32x4d':
        return SENetEncoder([3, 4, 23, 3], output_stride)
    return EfficientNetEncoder(name)


def encoder_channels(enc):
    with torch.no_grad():
        was = enc.training
        enc.eval()
        c = [f.shape[1] for f in enc(torch.zeros(1, 3, 64, 64))]
        enc.train(was)
    return c


# ---- decoders -------------------------------------------------------------------------------------

class Conv2dReLU(nn.Sequential):
    def __init__(self, i, o, k, dilation=1):
        super().__init__(nn.Conv2d(i, o, k, padding=dilation * (k // 2), dilation=dilation, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        return F.relu(super().forward(x), inplace=True)


class SCSE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.cse_reduce = nn.Conv2d(c, c // 2, 1)
        self.cse_expand = nn.Conv2d(c // 2, c, 1)
        self.sse = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        c = x * torch.sigmoid(self.cse_expand(F.relu(self.cse_reduce(s), inplace=True)))
        p = x * torch.sigmoid(self.sse(x))
        return torch.maximum(c, p)


class DecoderBlock(nn.Module):
    def __init__(self, i, skip, o, scse=False):
        super().__init__()
        self.conv1 = Conv2dReLU(i + skip, o, 3)
        self.conv2 = Conv2dReLU(o, o, 3)
        if scse:
            self.scse = SCSE(o)

    def forward(self, x, skip=None):
        x = F.interpolate(x, scale_factor=2.0, mode='nearest')
        if skip is not None:
            x = torch.cat([x, skip], 1)
        x = self.conv2(self.conv1(x))
        if hasattr(self, 'scse'):
            x = self.scse(x)
        return x


class UnetDecoder(nn.Module):
    def __init__(self, c, widths, scse):
        super().__init__()
        ins = [c[4]] + widths[:4]
        skips = [c[3], c[2], c[1], c[0], 0]
        self.blocks = nn.ModuleList([DecoderBlock(ins[i], skips[i], widths[i], scse) for i in range(5)])

    def forward(self, f2, f4, f8, f16, f32):
        x = f32
        for block, skip in zip(self.blocks, [f16, f8, f4, f2, None]):
            x = block(x, skip)
        return x


class UnetPlusPlusDecoder(nn.Module):
    def __init__(self, c, widths):
        super().__init__()
        enc = [c[4], c[3], c[2], c[1], c[0]]
        ins = [enc[0]] + widths[:4]
        skips = enc[1:] + [0]
        self.depth = 4
        blocks = {}
        for l in range(4):
            for d in range(l + 1):
                if d == 0:
                    i, s, o = ins[l], skips[l] * (l + 1), widths[l]
                else:
                    o, s, i = skips[l], skips[l] * (l + 1 - d), skips[l - 1]
                blocks['x_%d_%d' % (d, l)] = DecoderBlock(i, s, o)
        blocks['x_0_4'] = DecoderBlock(ins[4], 0, widths[4])
        self.blocks = nn.ModuleDict(blocks)

    def forward(self, f2, f4, f8, f16, f32):
        feats = [f32, f16, f8, f4, f2]
        x = {}
        for l in range(4):
            for d in range(4 - l):
                if l == 0:
                    x['x_%d_%d' % (d, d)] = self.blocks['x_%d_%d' % (d, d)](feats[d], feats[d + 1])
                else:
                    dl = d + l
                    cat = torch.cat([x['x_%d_%d' % (i, dl)] for i in range(d + 1, dl + 1)] + [feats[dl + 1]], 1)
                    x['x_%d_%d' % (d, dl)] = self.blocks['x_%d_%d' % (d, dl)](x['x_%d_%d' % (d, dl - 1)], cat)
        return self.blocks['x_0_4'](x['x_0_3'])


class ConvRelu(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.conv = nn.Conv2d(i, o, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv(x), inplace=True)


class DecoderBlockV2(nn.Module):
    def __init__(self, i, m, o):
        super().__init__()
        self.conv1 = ConvRelu(i, m)
        self.conv2 = ConvRelu(m, o)

    def forward(self, x):
        return self.conv2(self.conv1(F.interpolate(x, scale_factor=2.0, mode='bilinear', align_corners=False)))


class AlbuNetDecoder(nn.Module):
    def __init__(self, c, nf=32):
        super().__init__()
        self.center = DecoderBlockV2(c[4], nf * 16, nf * 8)
        self.dec5 = DecoderBlockV2(c[4] + nf * 8, nf * 16, nf * 8)
        self.dec4 = DecoderBlockV2(c[3] + nf * 8, nf * 16, nf * 8)
        self.dec3 = DecoderBlockV2(c[2] + nf * 8, nf * 8, nf * 2)
        self.dec2 = DecoderBlockV2(c[1] + nf * 2, nf * 4, nf * 4)
        self.dec1 = DecoderBlockV2(nf * 4, nf * 4, nf)
        self.dec0 = ConvRelu(nf, nf)

    def forward(self, f2, f4, f8, f16, f32):
        center = self.center(F.max_pool2d(f32, 2, 2))
        d5 = self.dec5(torch.cat([center, f32], 1))
        d4 = self.dec4(torch.cat([d5, f16], 1))
        d3 = self.dec3(torch.cat([d4, f8], 1))
        d2 = self.dec2(torch.cat([d3, f4], 1))
        return self.dec0(self.dec1(d2))


class ASPP(nn.Module):
    def __init__(self, i, w, base):
        super().__init__()
        self.b0 = Conv2dReLU(i, w, 1)
        self.b1 = Conv2dReLU(i, w, 3, base)
        self.b2 = Conv2dReLU(i, w, 3, base * 2)
        self.b3 = Conv2dReLU(i, w, 3, base * 3)
        self.pool = Conv2dReLU(i, w, 1)
        self.project = Conv2dReLU(w * 5, w, 1)

    def forward(self, x):
        p = self.pool(F.adaptive_avg_pool2d(x, 1))
        p = F.interpolate(p, size=x.shape[-2:], mode='bilinear', align_corners=False)
        y = torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(x), p], 1)
        return F.dropout(self.project(y), 0.5, self.training)


class DeepLabV3Decoder(nn.Module):
    def __init__(self, c, w=256):
        super().__init__()
        self.aspp = ASPP(c[4], w, 6)
        self.conv = Conv2dReLU(w, w, 3)

    def forward(self, f2, f4, f8, f16, f32):
        return self.conv(self.aspp(f32))


class ClassificationHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.fc = nn.Linear(c, 1)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SegmentationModel(nn.Module):
    def __init__(self, arch, encoder, classes=1, head=False):
        super().__init__()
        self.arch = arch
        self.encoder = build_encoder(encoder, 16 if arch == 'deeplabv3' else 32)
        c = encoder_channels(self.encoder)
        widths = [256, 128, 64, 32, 16]
        if arch in ('unet', 'scseunet'):
            self.decoder = UnetDecoder(c, widths, arch == 'scseunet')
            hin, k = 16, 3
        elif arch == 'unetpp':
            self.decoder = UnetPlusPlusDecoder(c, widths)
            hin, k = 16, 3
        elif arch == 'albunet':
            self.decoder = AlbuNetDecoder(c)
            hin, k = 32, 1
        else:
            self.decoder = DeepLabV3Decoder(c)
            hin, k = 256, 1
        self.segmentation_head = nn.Conv2d(hin, classes, k, padding=k // 2)
        if head:
            self.classification_head = ClassificationHead(c[4])

    def forward(self, x):
        h, w = x.shape[-2:]
        f = self.encoder(x)
        y = self.segmentation_head(self.decoder(*f))
        if self.arch == 'deeplabv3':
            y = F.interpolate(y, size=(h, w), mode='bilinear', align_corners=False)
        if hasattr(self, 'classification_head'):
            return y, self.classification_head(f[4])
        return y


def load(arch, encoder, weights, head=False):
    model = SegmentationModel(arch, encoder, head=head)
    try:
        # LibTorch-written files hold torch.jit pickling helpers that torch >= 2.6's weights_only load refuses.
        state = torch.load(weights, weights_only=False)
    except TypeError:
        state = torch.load(weights)
    model.load_state_dict(state, strict=True)
    return model


def main():
    cmd, arch, encoder, weights = sys.argv[1:5]
    threads = None
    if '--threads' in sys.argv:
        threads = int(sys.argv[sys.argv.index('--threads') + 1])
        torch.set_num_threads(threads)
    head = '--head' in sys.argv
    model = load(arch, encoder, weights, head)
    if cmd == 'check':
        inp, outp = sys.argv[5], sys.argv[6]
        x = torch.load(inp)['input']
        model.eval()
        with torch.no_grad():
            y = model(x)
        out = {'mask': y[0], 'label': y[1]} if isinstance(y, tuple) else {'mask': y}
        feats = model.encoder(x)
        for i, f in enumerate(feats):
            out['feature%d' % i] = f
        torch.save(out, outp)
        return
    size, batch, reps = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    x = torch.randn(batch, 3, size, size)
    result = {}
    model.eval()
    with torch.no_grad():
        model(x)
        t = time.perf_counter()
        for _ in range(reps):
            model(x)
        result['forwardMs'] = (time.perf_counter() - t) * 1000 / reps / batch
    rss_eval = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.train()
    def step():
        y = model(x)
        y = y[0] if isinstance(y, tuple) else y
        loss = y.pow(2).mean()
        loss.backward()
        for p in model.parameters():
            p.grad = None
    step()
    t = time.perf_counter()
    for _ in range(reps):
        step()
    result['trainMs'] = (time.perf_counter() - t) * 1000 / reps / batch
    result['peakRssMb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result['peakRssEvalMb'] = rss_eval / 1024
    result['threads'] = torch.get_num_threads()
    print(json.dumps(result))


if __name__ == '__main__':
    main()
