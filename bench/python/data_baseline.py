#!/usr/bin/env python3
"""Python baseline for the data-path bench: SIIM JPEG DICOM -> pixels -> resized -> normalised
float32 batch, the way the reference solutions do it (pydicom + Pillow decode, OpenCV bilinear
resize, numpy normalisation), on N worker processes writing into one shared-memory batch.

Usage: data_baseline.py FILE_LIST_JSON --sizes 256,512,1024 --workers 2 --repeat 2
Prints one JSON object: {"pydicom": ..., "results": [{"size": 512, "imagesPerSecond": ...}, ...]}.
Run with Debian's /usr/bin/python3 (python3-pydicom python3-pil python3-numpy python3-opencv).
"""
import argparse
import json
import time
from multiprocessing import Pool, shared_memory

import cv2
import numpy as np
import pydicom

MEAN = 0.485
STD = 0.229
_state = {}


def _init(shm_name):
    cv2.setNumThreads(1)  # one core per worker process, like the Node side
    _state["shm"] = shared_memory.SharedMemory(name=shm_name)


def _load(task):
    index, path, size = task
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array  # JPEG Baseline decoded by Pillow
    if pixels.shape != (size, size):
        pixels = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_LINEAR)
    batch = np.ndarray((size * size,), dtype=np.float32, buffer=_state["shm"].buf, offset=index * size * size * 4)
    batch[:] = (pixels.astype(np.float32).ravel() / 255.0 - MEAN) / STD
    return index


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("files")
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with open(args.files) as f:
        files = json.load(f)
    sizes = [int(s) for s in args.sizes.split(",")]
    shm = shared_memory.SharedMemory(create=True, size=len(files) * max(sizes) ** 2 * 4)
    results = []
    checksums = {}
    try:
        with Pool(args.workers, initializer=_init, initargs=(shm.name,)) as pool:
            pool.map(_load, [(i, p, sizes[0]) for i, p in enumerate(files[: args.workers * 2])])  # warm-up
            for size in sizes:
                best = float("inf")
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    pool.map(_load, [(i, p, size) for i, p in enumerate(files)], chunksize=1)
                    best = min(best, time.perf_counter() - start)
                batch = np.ndarray((len(files), size, size), dtype=np.float32, buffer=shm.buf)
                checksums[size] = float(batch.mean())
                del batch
                results.append({"size": size, "imagesPerSecond": len(files) / best, "seconds": best})
    finally:
        shm.close()
        shm.unlink()
    print(json.dumps({"pydicom": pydicom.__version__, "opencv": cv2.__version__, "results": results, "batchMean": checksums}))


if __name__ == "__main__":
    main()
