#!/usr/bin/env python3
"""Python baseline of bench/train.bench.mjs: one full training step of an eager zoo model
(models_baseline.py, same weights) as a PyTorch training script runs it: forward, the first
place's combo loss as a plain composition (weights 3, 1, 4; 1 - p as sigmoid(-x) so that float32
stays finite), backward, clip_grad_norm_(0.1), Adam (lr 1e-4, weight decay 5e-6 off for biases and
norms), zero_grad.

  train_baseline.py <arch> <encoder> <weights.pt> <size> <batch> <reps> [--threads N] [--bf16]

--bf16: forward and loss under torch.autocast('cpu', dtype=torch.bfloat16), as a PyTorch script
trains in bfloat16 on a CPU.

Prints {"msPerStep", "imagesPerSecond", "loss", "peakRssMb", "threads"} on one line.
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models_baseline  # noqa: E402


def combo(x, t, wb=3.0, wd=1.0, wf=4.0):
    bce = F.binary_cross_entropy_with_logits(x, t)
    p = torch.sigmoid(x)
    dice = 1 - (2 * (p * t).sum() + 1e-6) / (p.sum() + t.sum() + 1e-6)
    # 1 - p as sigmoid(-x): in float32, 1 - clamp(p, 1e-8, 1 - 1e-8) is 0 for a confident pixel
    # (1 - 1e-8 rounds to 1) and the focal term's log gives -inf, then NaN weights.
    pc = p.clamp(1e-8, 1 - 1e-8)
    qc = torch.sigmoid(-x).clamp(1e-8, 1 - 1e-8)
    pt = (1 - t) * qc + t * pc
    focal = (-(1 - pt) ** 2 * torch.log(pt)).mean()
    return (wb * bce + wd * dice + wf * focal).clamp_min(1e-5)


def main():
    arch, encoder, weights = sys.argv[1:4]
    size, batch, reps = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    if '--threads' in sys.argv:
        torch.set_num_threads(int(sys.argv[sys.argv.index('--threads') + 1]))
    torch.manual_seed(0)
    model = models_baseline.load(arch, encoder, weights)
    model.train()
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.Adam([{'params': decay, 'weight_decay': 5e-6}, {'params': no_decay, 'weight_decay': 0}], lr=1e-4)
    x = torch.randn(batch, 3, size, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing='ij')
    disk = (((yy - size / 2) ** 2 + (xx - size / 3) ** 2) < (size / 6) ** 2).float()
    t = disk.expand(batch, 1, size, size).contiguous()

    bf16 = '--bf16' in sys.argv

    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = combo(logits.float(), t)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        optimizer.zero_grad()
        return loss.item()

    step()
    start = time.perf_counter()
    loss = 0.0
    for _ in range(reps):
        loss = step()
    ms = (time.perf_counter() - start) * 1000 / reps
    print(json.dumps({'msPerStep': ms, 'imagesPerSecond': batch * 1000 / ms, 'loss': loss,
                      'peakRssMb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'threads': torch.get_num_threads()}))


if __name__ == '__main__':
    main()
