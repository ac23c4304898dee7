#!/usr/bin/env python3
"""numpy baselines for the threshold-search bench: mean Dice of (top, area, bottom) triplets over
uint8 probability maps (v = round(p * 255); v is above threshold t when v > floor(t * 255)).

- "per-triplet": the first place's validation loop, each triplet thresholding every map again,
  vectorised over maps in chunks;
- "per-threshold": each distinct threshold computed once per map (counts above, and inside the
  truth), then every triplet combined from those counts.

Usage: thresholds_baseline.py MAPS_BIN TRUTH_BIN --count N --size S --triplets JSON --area-size A
       --repeat R [--skip-per-triplet]
Prints one JSON object: seconds per variant (best of R) and per-triplet mean Dice.
Run with Debian's /usr/bin/python3 (python3-numpy).
"""
import argparse
import json
import time

import numpy as np


def level(t):
    return min(255, int(np.floor(t * 255)))


def per_triplet(maps, truth, triplets, scale, chunk=128):
    n = maps.shape[0]
    truth_area = truth.reshape(n, -1).sum(1)
    out = []
    for top, area, bottom in triplets:
        lt, lb = level(top), level(bottom)
        dice = np.empty(n)
        for s in range(0, n, chunk):
            m = maps[s:s + chunk]
            t = truth[s:s + chunk]
            above = (m > lt).reshape(m.shape[0], -1).sum(1)
            positive = above * scale >= area
            pred = (m > lb) & positive[:, None, None]
            inter = (pred & t).reshape(m.shape[0], -1).sum(1)
            total = pred.reshape(m.shape[0], -1).sum(1) + truth_area[s:s + chunk]
            dice[s:s + chunk] = np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))
        out.append(float(dice.mean()))
    return out


def per_threshold(maps, truth, triplets, scale, chunk=128):
    n = maps.shape[0]
    levels = sorted({level(t[0]) for t in triplets} | {level(t[2]) for t in triplets})
    above = {}
    inside = {}
    for lv in levels:
        a = np.empty(n, dtype=np.int64)
        b = np.empty(n, dtype=np.int64)
        for s in range(0, n, chunk):
            m = maps[s:s + chunk] > lv
            a[s:s + chunk] = m.reshape(m.shape[0], -1).sum(1)
            b[s:s + chunk] = (m & truth[s:s + chunk]).reshape(m.shape[0], -1).sum(1)
        above[lv] = a
        inside[lv] = b
    truth_area = truth.reshape(n, -1).sum(1)
    out = []
    for top, area, bottom in triplets:
        positive = above[level(top)] * scale >= area
        pred = np.where(positive, above[level(bottom)], 0)
        inter = np.where(positive, inside[level(bottom)], 0)
        total = pred + truth_area
        dice = np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))
        out.append(float(dice.mean()))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("maps")
    p.add_argument("truth")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--triplets", required=True)
    p.add_argument("--area-size", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--skip-per-triplet", action="store_true")
    a = p.parse_args()
    shape = (a.count, a.size, a.size)
    maps = np.fromfile(a.maps, dtype=np.uint8).reshape(shape)
    truth = np.fromfile(a.truth, dtype=np.uint8).reshape(shape).astype(bool)
    triplets = json.loads(a.triplets)
    scale = (a.area_size / a.size) ** 2
    result = {"numpy": np.__version__}
    best = float("inf")
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        result["perThresholdDice"] = per_threshold(maps, truth, triplets, scale)
        best = min(best, time.perf_counter() - t0)
    result["perThresholdSeconds"] = best
    if not a.skip_per_triplet:
        t0 = time.perf_counter()
        result["perTripletDice"] = per_triplet(maps, truth, triplets, scale)
        result["perTripletSeconds"] = time.perf_counter() - t0
    print(json.dumps(result))


if __name__ == "__main__":
    main()
