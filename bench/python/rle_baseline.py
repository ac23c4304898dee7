#!/usr/bin/env python3
"""numpy baseline for the RLE bench: the SIIM reference mask2rle / rle2mask (column-major,
relative "gap length" pairs, -1 for empty), written vectorised in numpy.

Usage: rle_baseline.py MASKS_BIN --count N --width W --height H --repeat R
MASKS_BIN holds N row-major uint8 masks of H x W. Prints one JSON object:
{"numpy": ..., "encodePerSecond": ..., "decodePerSecond": ..., "roundTripPerSecond": ...,
 "rle": [first masks' RLE strings, to check that both sides compute the same thing]}.
Run with Debian's /usr/bin/python3 (python3-numpy).
"""
import argparse
import json
import time

import numpy as np


def mask2rle(mask):
    """Row-major H x W 0/1 mask -> SIIM RLE (column-major, relative gaps)."""
    pixels = mask.T.ravel()  # column-major, as the reference encodes mask.T
    padded = np.concatenate(([0], pixels, [0]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    if edges.size == 0:
        return "-1"
    starts = edges[0::2]
    ends = edges[1::2]
    gaps = starts - np.concatenate(([0], ends[:-1]))
    pairs = np.empty(starts.size * 2, dtype=np.int64)
    pairs[0::2] = gaps
    pairs[1::2] = ends - starts
    return " ".join(map(str, pairs.tolist()))


def rle2mask(rle, width, height):
    """SIIM RLE -> row-major H x W 0/1 mask (decoded into (W, H), then transposed), as the
    reference does: absolute starts from a cumulative sum, one slice assignment per run (faster
    than a fully vectorised fill for the few hundred runs of a real mask). The transpose is made
    contiguous, since the Node side returns a materialised row-major mask too."""
    flat = np.zeros(width * height, dtype=np.uint8)
    text = rle.strip()
    if text != "-1" and text != "":
        values = np.array(text.split(), dtype=np.int64)
        gaps = values[0::2]
        lengths = values[1::2]
        starts = np.cumsum(gaps + np.concatenate(([0], lengths[:-1])))
        for start, length in zip(starts.tolist(), lengths.tolist()):
            flat[start:start + length] = 1
    return np.ascontiguousarray(flat.reshape(width, height).T)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("masks")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = np.fromfile(args.masks, dtype=np.uint8).reshape(args.count, args.height, args.width)
    masks = [np.ascontiguousarray(m) for m in data]
    texts = [mask2rle(m) for m in masks]
    for m, t in zip(masks, texts):
        if not np.array_equal(rle2mask(t, args.width, args.height), m):
            raise SystemExit("rle_baseline: round trip failed")
    best_encode = best_decode = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        for m in masks:
            mask2rle(m)
        best_encode = min(best_encode, time.perf_counter() - started)
        started = time.perf_counter()
        for t in texts:
            rle2mask(t, args.width, args.height)
        best_decode = min(best_decode, time.perf_counter() - started)
    n = len(masks)
    print(json.dumps({
        "numpy": np.__version__,
        "encodePerSecond": n / best_encode,
        "decodePerSecond": n / best_decode,
        "roundTripPerSecond": n / (best_encode + best_decode),
        "rle": texts,
    }))


if __name__ == "__main__":
    main()
