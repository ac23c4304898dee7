#!/usr/bin/env python3
"""Python PyTorch baseline for the inference bench: horizontal-flip TTA prediction,
(sigmoid(f(x)) + flip(sigmoid(f(flip(x))))) / 2 as one batched forward over [x, flip(x)], in eval
mode under torch.no_grad(), with the weights pneumo-native exported (models_baseline.py builds the
same architecture).

Usage: infer_baseline.py ARCH ENCODER WEIGHTS SIZE BATCH REPS [--threads N]
The input is deterministic (x[b,c,h,w] = sin(0.001 * (h * SIZE + w) + c + b)), the same as the
native side's, so the two can compare outputs. Prints one JSON object: imagesPerSecond, mean
probability, checksum, threads.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from models_baseline import load  # noqa: E402


def main():
    arch, encoder, weights = sys.argv[1:4]
    size, batch, reps = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    if '--threads' in sys.argv:
        torch.set_num_threads(int(sys.argv[sys.argv.index('--threads') + 1]))
    model = load(arch, encoder, weights).eval()
    idx = torch.arange(size * size, dtype=torch.float64).reshape(size, size) * 0.001
    x = torch.stack([torch.stack([torch.sin(idx + c + b) for c in range(3)]) for b in range(batch)]).float()

    def predict():
        with torch.no_grad():
            y = torch.sigmoid(model(torch.cat([x, x.flip(3)])))
            return (y[:batch] + y[batch:].flip(3)) / 2

    p = predict()
    t = time.perf_counter()
    for _ in range(reps):
        p = predict()
    seconds = (time.perf_counter() - t) / reps
    print(json.dumps({
        'imagesPerSecond': batch / seconds,
        'meanProbability': float(p.mean()),
        'checksum': float((p * torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape).remainder(97)).sum()),
        'threads': torch.get_num_threads(),
    }))


if __name__ == '__main__':
    main()
