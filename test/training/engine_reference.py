#!/usr/bin/env python3
"""Python PyTorch references for test/training/engine.test.ts and test/training/swa.test.ts, on the
eager models of bench/python/models_baseline.py (same parameter names as the native zoo).

  engine_reference.py step <config.json>...      training calls as TrainEngine makes them
  engine_reference.py update_bn <config.json>    torch.optim.swa_utils.update_bn over batches

Prints a JSON list with one report per config (one process for several: torch imports are slow).

Inputs are raw float32 files ({file, shape}); the resulting state dict is written with torch.save.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'bench', 'python'))
import models_baseline  # noqa: E402


def array(spec):
    return torch.from_numpy(np.fromfile(spec['file'], dtype=np.float32).reshape(spec['shape']).copy())


def combo(x, t, o):
    """SPEC 4's combo loss as a plain composition (the first place's formula), in float64 so that
    the clamp of p to [1e-8, 1 - 1e-8] holds (in float32 1 - 1e-8 rounds to 1 and a confident
    pixel costs log(0) = -inf; the fused loss computes 1 - p from the logit instead)."""
    x, t = x.double(), t.double()
    bce = F.binary_cross_entropy_with_logits(x, t)
    p = torch.sigmoid(x)
    dice = 1 - (2 * (p * t).sum() + 1e-6) / (p.sum() + t.sum() + 1e-6)
    pc = p.clamp(1e-8, 1 - 1e-8)
    pt = (1 - t) * (1 - pc) + t * pc
    focal = (-(1 - pt) ** 2 * torch.log(pt)).mean()
    return (o.get('bceWeight', 1) * bce + o.get('diceWeight', 1) * dice + o.get('focalWeight', 1) * focal).clamp_min(1e-5)


def soft_dice(x, t, o):
    s = o.get('smooth', 0.01)
    b = x.shape[0]
    p = torch.sigmoid(x).reshape(b, -1)
    t = t.reshape(b, -1)
    return (1 - (2 * (p * t).sum(1) + s) / ((p * p).sum(1) + (t * t).sum(1) + s)).mean()


LOSSES = {'combo': combo, 'soft-dice': soft_dice}


def optimizer_for(model, spec):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if p.dim() > 1 else no_decay).append(p)
    wd = spec.get('weightDecay', 0)
    groups = [{'params': decay, 'weight_decay': wd}, {'params': no_decay, 'weight_decay': 0}]
    lr = spec.get('lr', 1e-3)
    if spec['algorithm'] == 'sgd':
        return torch.optim.SGD(groups, lr=lr, momentum=spec.get('momentum', 0), nesterov=spec.get('nesterov', False))
    if spec['algorithm'] == 'adam':
        return torch.optim.Adam(groups, lr=lr, betas=(spec.get('beta1', 0.9), spec.get('beta2', 0.999)), eps=spec.get('eps', 1e-8))
    raise ValueError('unsupported optimizer ' + spec['algorithm'])


def step(cfg):
    model = models_baseline.load(cfg['arch'], cfg['encoder'], cfg['weights'])
    model.train()
    images, masks = array(cfg['images']), array(cfg['masks'])
    optimizer = optimizer_for(model, cfg['optimizer'])
    optimizer.zero_grad()
    accumulation = cfg.get('accumulation', 1)
    report = {'loss': [], 'gradNorm': []}
    pending = 0
    for start, end in cfg['calls']:
        logits = model(images[start:end])
        loss = sum(term.get('weight', 1) * LOSSES[term['kind']](logits, masks[start:end], term.get('options', {})) for term in cfg['loss'])
        report['loss'].append(loss.item())
        (loss / accumulation).backward()
        pending += 1
        if pending < accumulation:
            report['gradNorm'].append(None)
            continue
        pending = 0
        if cfg.get('gradClip', 0) > 0:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg['gradClip'])
        else:
            norm = torch.norm(torch.stack([p.grad.norm(2) for p in model.parameters() if p.grad is not None]), 2)
        report['gradNorm'].append(float(norm))
        optimizer.step()
        optimizer.zero_grad()
    torch.save(dict(model.state_dict()), cfg['out'])
    return report


def update_bn(cfg):
    model = models_baseline.load(cfg['arch'], cfg['encoder'], cfg['weights'])
    batches = [array(b) for b in cfg['batches']]
    torch.optim.swa_utils.update_bn(batches, model)
    model.eval()
    torch.save(dict(model.state_dict()), cfg['out'])
    return {'training': model.training}


if __name__ == '__main__':
    torch.set_num_threads(2)
    command = {'step': step, 'update_bn': update_bn}[sys.argv[1]]
    print(json.dumps([command(json.load(open(path))) for path in sys.argv[2:]]))
