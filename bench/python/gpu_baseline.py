#!/usr/bin/env python3
"""Eager PyTorch peer of bench/gpu.worker.mjs on the same GPU: the same zoo model
(models_baseline.py, same weights), channels-last, cudnn.benchmark, a training step as a PyTorch
script runs it (forward, combo loss 3,1,4 as a composition, backward, clip_grad_norm_(0.1), Adam
lr 1e-4 wd 5e-6 off for 1-D params; bf16 autocast, or fp16 autocast + GradScaler), then eval
forwards without and with flip TTA under no_grad. Also counts the model's forward FLOPs once
(conv and linear layers, forward hooks).

  gpu_baseline.py <arch> <encoder> <weights.pt> <size> <batch> <precision> <reps>
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models_baseline  # noqa: E402
from train_baseline import combo  # noqa: E402


def forward_flops(model, x):
    """Multiply-adds x 2 of every Conv2d and Linear in one forward of x (per batch)."""
    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * (module.in_channels // module.groups)
            total[0] += 2 * output.numel() * k
        elif isinstance(module, torch.nn.Linear):
            total[0] += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


def main():
    arch, encoder, weights = sys.argv[1:4]
    size, batch, precision, reps = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
    dev = torch.device('cuda')
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = models_baseline.load(arch, encoder, weights).to(dev).to(memory_format=torch.channels_last)
    dtype = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]
    x = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
    yy, xx = torch.meshgrid(torch.arange(size, device=dev), torch.arange(size, device=dev), indexing='ij')
    disk = (((yy - size / 2) ** 2 + (xx - size / 3) ** 2) < (size / 6) ** 2).float()
    t = disk.expand(batch, 1, size, size).contiguous()
    flops = forward_flops(model, x[:1])
    model.train()
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.Adam([{'params': decay, 'weight_decay': 5e-6}, {'params': no_decay, 'weight_decay': 0}], lr=1e-4)
    scaler = torch.amp.GradScaler('cuda', enabled=precision == 'fp16')

    def step():
        with torch.autocast('cuda', dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        loss = combo(logits.float(), t)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        return loss.item()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    loss = 0.0
    for _ in range(reps):
        loss = step()
    torch.cuda.synchronize()
    train_ms = (time.perf_counter() - start) * 1000 / reps
    train_peak = torch.cuda.max_memory_allocated() / 2 ** 20
    optimizer.zero_grad(set_to_none=True)
    model.eval()

    def predict(tta):
        with torch.no_grad(), torch.autocast('cuda', dtype=dtype or torch.float32, enabled=dtype is not None):
            if tta:
                # The same rule as pneumo-native's predict: one forward over cat([x, flip(x)]) unless
                # the doubled batch would pass INT_MAX elements in a 256-channel full-size activation.
                if 2 * batch * 256 * size * size > 2 ** 31 - 1:
                    a = torch.sigmoid(model(x).float())
                    b = torch.sigmoid(model(x.flip(3)).float())
                    return (a + b.flip(3)) / 2
                y = torch.sigmoid(model(torch.cat([x, x.flip(3)])).float())
                return (y[:batch] + y[batch:].flip(3)) / 2
            return torch.sigmoid(model(x).float())

    def eval_phase(tta):
        for _ in range(2):
            predict(tta)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        begin = time.perf_counter()
        for _ in range(reps):
            predict(tta)
        torch.cuda.synchronize()
        return (time.perf_counter() - begin) * 1000 / reps, torch.cuda.max_memory_allocated() / 2 ** 20

    eval_ms, eval_peak = eval_phase(False)
    tta_ms, _ = eval_phase(True)
    print(json.dumps({
        'trainImagesPerSecond': batch * 1000 / train_ms, 'evalImagesPerSecond': batch * 1000 / eval_ms,
        'ttaImagesPerSecond': batch * 1000 / tta_ms, 'trainPeakMb': train_peak, 'evalPeakMb': eval_peak,
        'loss': loss, 'forwardFlopsPerImage': flops, 'device': torch.cuda.get_device_name(0), 'torch': torch.__version__,
    }))


if __name__ == '__main__':
    main()
