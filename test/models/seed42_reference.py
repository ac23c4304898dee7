"""Eager-PyTorch reference of the 42nd place's BiSeNet and dual-attention UNet (for bisenet.test.ts).

Written from the seed's description (github.com/adam9500370/Kaggle-SIIM, models/bisenet.py,
models/unet.py, models/utils.py: module names, widths, forward order) with a torchvision ResNet
as `encoder` (the seed's `backbone`). The native models must have the same parameters (names and
shapes) and, with the same weights, the same outputs.

usage: seed42_reference.py ARCH WIDTHS_JSON CLASSES CLASSIFY WEIGHTS_OR_- INPUT_OR_- OUT_DIR
Prints JSON: parameter count, named parameter and buffer shapes, output shapes (eval and
training mode); with weights and an input, writes the eval output to OUT_DIR/out.pt.
"""
import copy
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def up(x, size):
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


class CBR(nn.Module):
    def __init__(self, cin, cout, k, stride=1, norm=True):
        super().__init__()
        layers = [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        self.cbr_unit = nn.Sequential(*layers)

    def forward(self, x):
        return self.cbr_unit(x)


class CB(nn.Module):
    def __init__(self, cin, cout, norm=True):
        super().__init__()
        layers = [nn.Conv2d(cin, cout, 1, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        self.cb_unit = nn.Sequential(*layers)

    def forward(self, x):
        return self.cb_unit(x)


class ARM(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.cbr = CBR(cin, cout, 3)
        self.arm = nn.Sequential(nn.AdaptiveAvgPool2d(1), CB(cout, cout), nn.Sigmoid())

    def forward(self, x):
        x = self.cbr(x)
        return x * self.arm(x)


class FFM(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.cbr = CBR(cin, cout, 1)
        self.cse = nn.Sequential(nn.AdaptiveAvgPool2d(1), CBR(cout, cout // 2, 1, norm=False), CB(cout // 2, cout, norm=False), nn.Sigmoid())

    def forward(self, xs, xc):
        x = self.cbr(torch.cat([xs, xc], 1))
        return x + x * self.cse(x)


class PAM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.query_conv = nn.Conv2d(c, c // 2, 1)
        self.key_conv = self.query_conv  # shared, as in the seed
        self.value_conv = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.size()
        q = self.query_conv(x).view(b, -1, h * w).permute(0, 2, 1)
        k = self.key_conv(x).view(b, -1, h * w)
        attention = F.softmax(torch.bmm(q, k), dim=-1)
        v = self.value_conv(x).view(b, -1, h * w)
        out = torch.bmm(v, attention.permute(0, 2, 1)).view(b, c, h, w)
        return self.gamma * out + x


class CAM(nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.size()
        q = x.view(b, c, -1)
        energy = torch.bmm(q, q.permute(0, 2, 1))
        energy = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        out = torch.bmm(F.softmax(energy, dim=-1), q).view(b, c, h, w)
        return self.gamma * out + x


def head(cin, mid, classes, k, dropout):
    return nn.Sequential(CBR(cin, mid, k), dropout, nn.Conv2d(mid, classes, 1))


def ppm(x):
    h, w = x.shape[2:]
    out = 0.0
    for p in [6, 3, 2, 1]:
        sh, sw = h // p, w // p
        if sh > 0 and sw > 0:
            y = F.avg_pool2d(x, (h - sh * (p - 1), w - sw * (p - 1)), stride=(sh, sw))
        else:
            y = F.adaptive_avg_pool2d(x, p)
        out = out + up(y, (h, w))
    return out


def resnet(name):
    m = getattr(torchvision.models, name)()
    del m.fc
    return m


def features(enc, x):
    f2 = enc.relu(enc.bn1(enc.conv1(x)))
    f4 = enc.layer1(enc.maxpool(f2))
    f8 = enc.layer2(f4)
    f16 = enc.layer3(f8)
    return f2, f4, f8, f16, enc.layer4(f16)


class ContextPath(nn.Module):
    def __init__(self, c, sc):
        super().__init__()
        self.arm_32x, self.arm_16x, self.arm_8x = ARM(c[4], sc), ARM(c[3], sc), ARM(c[2], sc)
        self.cbr_gap = CBR(c[4], sc, 1)
        self.cbr_32x, self.cbr_16x, self.cbr_8x = CBR(sc, sc, 3), CBR(sc, sc, 3), CBR(sc, sc, 3)

    def forward(self, f8, f16, f32):
        gap = self.cbr_gap(F.adaptive_avg_pool2d(f32, 1))
        c32 = self.cbr_32x(self.arm_32x(f32) + gap)
        c16 = self.cbr_16x(self.arm_16x(f16) + up(c32, f16.shape[2:]))
        c8 = self.cbr_8x(self.arm_8x(f8) + up(c16, f8.shape[2:]))
        return c8, c16, c32, gap


class SpatialPath(nn.Module):
    def __init__(self, cin, sc):
        super().__init__()
        self.cbr1, self.cbr2, self.cbr3 = CBR(cin, sc // 2, 3, 2), CBR(sc // 2, sc // 2, 3, 2), CBR(sc // 2, sc, 3, 2)

    def forward(self, x):
        return self.cbr3(self.cbr2(self.cbr1(x)))


class BiSeNet(nn.Module):
    def __init__(self, backbone, c, sc, classes, cin=3):
        super().__init__()
        self.encoder = resnet(backbone)
        self.spatial_path = SpatialPath(cin, sc)
        self.context_path = ContextPath(c, sc)
        self.ffm = FFM(sc * 2, sc)
        self.pam, self.cam = PAM(sc), CAM()
        self.cbr_pam, self.cbr_cam = CBR(sc, sc, 3), CBR(sc, sc, 3)
        self.dropout = nn.Dropout2d(0.1)
        self.gamma_gap = nn.Parameter(torch.zeros(1))
        self.aux_cls_gap = head(sc, sc // 4, classes, 1, self.dropout)
        self.aux_cls_8x = head(sc, sc // 4, classes, 3, self.dropout)
        self.aux_cls_16x = head(sc, sc // 4, classes, 3, self.dropout)
        self.aux_cls_32x = head(sc, sc // 4, classes, 3, self.dropout)
        self.cls = head(sc, sc // 4, classes, 3, self.dropout)

    def forward(self, x, return_aux):
        size = x.shape[2:]
        _, _, f8, f16, f32 = features(self.encoder, x)
        s8 = self.spatial_path(x)
        c8, c16, c32, gap = self.context_path(f8, f16, f32)
        g = self.aux_cls_gap(gap)
        ff = self.ffm(s8, c8)
        d = self.cbr_pam(self.pam(ff)) + self.cbr_cam(self.cam(ff))
        y = up(self.cls(d) + self.gamma_gap * g, size)
        if not return_aux:
            return y, g.flatten(1), []
        return y, g.flatten(1), [up(self.aux_cls_8x(c8), size), up(self.aux_cls_16x(c16), size), up(self.aux_cls_32x(c32), size)]


class DAUnet(nn.Module):
    def __init__(self, backbone, c, wd, classes):
        super().__init__()
        self.encoder = resnet(backbone)
        self.c1br_16x, self.c1br_8x, self.c1br_4x, self.c1br_2x = CBR(c[3], wd[0], 1), CBR(c[2], wd[1], 1), CBR(c[1], wd[2], 1), CBR(c[0], wd[3], 1)
        self.c3br_ppm = CBR(c[4], wd[0], 3)
        self.c3br2_16x = nn.Sequential(CBR(wd[0] * 2, wd[1], 3), CBR(wd[1], wd[1], 3))
        self.c3br2_8x = nn.Sequential(CBR(wd[1] * 2, wd[2], 3), CBR(wd[2], wd[2], 3))
        self.c3br2_4x = nn.Sequential(CBR(wd[2] * 2, wd[3], 3), CBR(wd[3], wd[3], 3))
        self.c3br2_2x = nn.Sequential(CBR(wd[3] * 2, wd[4], 3), CBR(wd[4], wd[4], 3))
        self.pam, self.cam = PAM(wd[2]), CAM()
        self.c3br_pam, self.c3br_cam = CBR(wd[2], wd[2], 3), CBR(wd[2], wd[2], 3)
        self.dropout = nn.Dropout2d(0.1)
        self.gamma_gap = nn.Parameter(torch.zeros(1))
        self.aux_cls_gap = head(wd[0], wd[2], classes, 1, self.dropout)
        self.aux_cls_ppm = head(wd[0], wd[2], classes, 3, self.dropout)
        self.aux_cls_4x = head(wd[2], wd[4], classes, 3, self.dropout)
        self.cls = head(wd[4], wd[4], classes, 3, self.dropout)

    def forward(self, x, return_aux):
        size = x.shape[2:]
        f2, f4, f8, f16, f32 = features(self.encoder, x)
        p = self.c3br_ppm(ppm(f32))
        gap = F.adaptive_avg_pool2d(p, 1)
        d16 = self.c1br_16x(f16)
        d16 = self.c3br2_16x(torch.cat([d16, up(p, d16.shape[2:])], 1))
        d8 = self.c1br_8x(f8)
        d8 = self.c3br2_8x(torch.cat([d8, up(d16, d8.shape[2:])], 1))
        d8 = self.c3br_pam(self.pam(d8)) + self.c3br_cam(self.cam(d8))
        d4 = self.c1br_4x(f4)
        u8 = up(d8, d4.shape[2:])
        d4 = self.c3br2_4x(torch.cat([d4, u8], 1))
        d2 = self.c1br_2x(f2)
        d2 = self.c3br2_2x(torch.cat([d2, up(d4, d2.shape[2:])], 1))
        g = self.aux_cls_gap(gap)
        y = self.cls(up(d2, size)) + self.gamma_gap * g
        if not return_aux:
            return y, g.flatten(1), []
        return y, g.flatten(1), [up(self.aux_cls_4x(u8), size), up(self.aux_cls_ppm(p), size)]


def main():
    arch, widths, classes, classify, weights, inp, out_dir = sys.argv[1:8]
    widths, classes = json.loads(widths), int(classes)
    c = [64, 64, 128, 256, 512]
    torch.manual_seed(0)
    model = BiSeNet('resnet18', c, widths[0], classes) if arch == 'bisenet' else DAUnet('resnet18', c, widths, classes)
    report = {
        'parameters': sum(p.numel() for p in model.parameters()),
        'encoder': sum(p.numel() for p in model.encoder.parameters()),
        'tensors': {k: list(v.shape) for k, v in list(model.named_parameters()) + list(model.named_buffers())},
    }
    x = torch.randn(2, 3, 64, 96)
    if inp != '-':
        x = next(iter(torch.load(inp).values()))
    if weights != '-':
        sd = torch.load(weights)
        sd['pam.key_conv.weight'], sd['pam.key_conv.bias'] = sd['pam.query_conv.weight'], sd['pam.query_conv.bias']
        model.load_state_dict(sd, strict=True)
    model.eval()
    with torch.no_grad():
        y, g, _ = model(x, False)
    report['eval'] = {'mask': list(y.shape), 'label': list(g.shape)}
    trained = copy.deepcopy(model).train()  # a copy: training mode updates BatchNorm statistics
    ty, tg, aux = trained(x, True)
    report['train'] = {'mask': list(ty.shape), 'label': list(tg.shape), 'aux': [list(a.shape) for a in aux]}
    torch.save({'mask': y.contiguous(), 'label': g.contiguous()}, out_dir + '/out.pt')
    print(json.dumps(report))


if __name__ == '__main__':
    main()
