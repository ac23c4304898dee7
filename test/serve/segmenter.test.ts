/**
 * `Segmenter`: every input format to the same result, the triplet rule, micro-batching, the
 * queue limit, AbortSignal, dispose/close, and clear BAD_INPUT / INPUT_TOO_LARGE errors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode as decodeRle } from '../../src/data/rle.js';
import { applyTriplet } from '../../src/scoring/postprocess.js';
import { resizeMask } from '../../src/scoring/resize.js';
import type { Model } from '../../src/models/model.js';
import { SegmenterError } from '../../src/serve/errors.js';
import { Segmenter } from '../../src/serve/segmenter.js';
import type { BatchEvent, SegmentResult } from '../../src/serve/segmenter.js';
import { IMAGE, SIZE, chestFiles, chestPixels, randomBytes, tinyModel, withDimensions } from './fixtures.js';
import type { ChestFiles } from './fixtures.js';

let files: ChestFiles;
let other: ChestFiles;
let seg: Segmenter;
const batches: BatchEvent[] = [];

beforeAll(async () => {
  files = await chestFiles(0);
  other = await chestFiles(1);
  seg = Segmenter.fromModel(await tinyModel(), { size: SIZE, maxSize: 2 * SIZE, maxBatchSize: 8, maxWaitMs: 20, onBatch: (e) => batches.push(e) });
});
afterAll(() => seg.dispose());

async function rejection(promise: Promise<unknown>): Promise<SegmenterError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SegmenterError);
  return err as SegmenterError;
}

function expectConsistent(r: SegmentResult): void {
  expect(r.mask.length).toBe(r.width * r.height);
  let area = 0;
  for (const v of r.mask) area += v;
  expect(r.area).toBe(area);
  expect(Buffer.from(decodeRle(r.rle, r.width, r.height)).equals(Buffer.from(r.mask))).toBe(true);
  expect(r.positive || r.area === 0).toBe(true);
  expect(r.maxProbability).toBeGreaterThan(0);
  expect(r.maxProbability).toBeLessThanOrEqual(1);
  for (const key of ['decodeMs', 'queueMs', 'inferenceMs', 'postprocessMs', 'totalMs'] as const) expect(r.timings[key]).toBeGreaterThanOrEqual(0);
  expect(r.timings.totalMs).toBeGreaterThanOrEqual(r.timings.inferenceMs);
}

describe('Segmenter: inputs and results', () => {
  it('gives the same result for the same pixels as a lossless DICOM, a PNG and raw pixels', async () => {
    const all = [0, 0.5].map((bottom) => [0, 0, bottom] as [number, number, number]);
    for (const triplet of all) {
      const [a, b, c] = await Promise.all([
        seg.predict(files.dicomRaw, { triplet }),
        seg.predict(files.png, { triplet }),
        seg.predict({ data: files.pixels, width: IMAGE, height: IMAGE }, { triplet }),
      ]);
      for (const r of [a, b, c]) expectConsistent(r);
      expect([a.input.format, b.input.format, c.input.format]).toEqual(['dicom', 'png', 'raw']);
      expect(a.width).toBe(IMAGE);
      expect(a.height).toBe(IMAGE);
      expect(b.rle).toBe(a.rle);
      expect(c.rle).toBe(a.rle);
      expect(b.maxProbability).toBe(a.maxProbability);
    }
  });

  it('reads JPEG DICOMs and JPEG files', async () => {
    const [d, j] = await Promise.all([seg.predict(files.dicomJpeg), seg.predict(files.jpeg)]);
    expectConsistent(d);
    expectConsistent(j);
    expect(d.input).toEqual({ format: 'dicom', width: IMAGE, height: IMAGE });
    expect(j.input).toEqual({ format: 'jpeg', width: IMAGE, height: IMAGE });
  });

  it('applies the triplet rule to the probability map (area counted at areaSize)', async () => {
    const alwaysEmpty = await seg.predict(files.png, { triplet: [1, 1, 0] });
    expect(alwaysEmpty.positive).toBe(false);
    expect(alwaysEmpty.rle).toBe('-1');
    expect(alwaysEmpty.area).toBe(0);
    const everything = await seg.predict(files.png, { triplet: [0, 0, 0] });
    expect(everything.positive).toBe(true);
    expect(everything.area).toBe(IMAGE * IMAGE);
    // At the model's size, the mask is exactly applyTriplet of the map: p > bottom where p is
    // known only through the result, so check it against a threshold between two results.
    const model = Segmenter.fromModel(await tinyModel(), { size: SIZE, maskSize: 'model' });
    try {
      const mid = await model.predict(files.png, { triplet: [0, 0, 0.5] });
      expect(mid.width).toBe(SIZE);
      expect(mid.mask.length).toBe(SIZE * SIZE);
      const fromMask = applyTriplet(Float32Array.from(mid.mask), SIZE, SIZE, [0.5, 0, 0.5]);
      expect(fromMask.area).toBe(mid.area);
      // The input-size mask is the model-size mask resized as SPEC section 4 says (same weights: same seed).
      const full = await seg.predict(files.png, { triplet: [0, 0, 0.5] });
      expect(Buffer.from(full.mask).equals(Buffer.from(resizeMask(mid.mask, SIZE, SIZE, IMAGE, IMAGE)))).toBe(true);
      const top = mid.maxProbability;
      const gated = await model.predict(files.png, { triplet: [top, 1, 0.5] });
      expect(gated.positive).toBe(false); // no pixel is strictly above the maximum
      const justBelow = await model.predict(files.png, { triplet: [top * 0.999999, 1, 0.5] });
      expect(justBelow.positive).toBe(true);
      expect(justBelow.rle).toBe(mid.rle);
    } finally {
      model.dispose();
    }
  });

  it('runs with flip TTA: the result of a mirrored image is the mirrored result', async () => {
    // At the model's size, so that no resize sits between the flips.
    const N = SIZE;
    const pixels = chestPixels(0, N);
    const mirrored = new Uint8Array(N * N);
    for (let y = 0; y < N; y++) for (let x = 0; x < N; x++) mirrored[y * N + x] = pixels[y * N + N - 1 - x]!;
    const options = { tta: true, triplet: [0, 0, 0.5] as [number, number, number] };
    const [r, m] = await Promise.all([
      seg.predict({ data: pixels, width: N, height: N }, options),
      seg.predict({ data: mirrored, width: N, height: N }, options),
    ]);
    expectConsistent(r);
    expect(r.tta).toBe(true);
    expect(m.maxProbability).toBeCloseTo(r.maxProbability, 5);
    let differ = 0;
    for (let y = 0; y < N; y++) for (let x = 0; x < N; x++) differ += r.mask[y * N + x] !== m.mask[y * N + N - 1 - x] ? 1 : 0;
    expect(differ).toBeLessThanOrEqual(N); // at most float-rounding ties at the 0.5 cut
    // Without TTA the untrained network is far from flip-equivariant: the test can fail.
    const [p, q] = await Promise.all([
      seg.predict({ data: pixels, width: N, height: N }, { ...options, tta: false }),
      seg.predict({ data: mirrored, width: N, height: N }, { ...options, tta: false }),
    ]);
    let plainDiffer = 0;
    for (let y = 0; y < N; y++) for (let x = 0; x < N; x++) plainDiffer += p.mask[y * N + x] !== q.mask[y * N + N - 1 - x] ? 1 : 0;
    expect(plainDiffer).toBeGreaterThan(differ);
  });

  it('accepts a 1-channel model', async () => {
    const gray = Segmenter.fromModel(await tinyModel(3, 1), { size: SIZE });
    try {
      expectConsistent(await gray.predict(files.png));
    } finally {
      gray.dispose();
    }
  });
});

describe('Segmenter: micro-batching', () => {
  it('runs concurrent calls as one forward, with the same results as alone', async () => {
    const alone = await seg.predict(other.png, { triplet: [0, 0, 0.5] });
    batches.length = 0;
    const before = seg.stats();
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => seg.predict(i % 2 ? other.png : files.png, { triplet: [0, 0, 0.5] })));
    const after = seg.stats();
    expect(Math.max(...results.map((r) => r.batchSize))).toBeGreaterThan(1);
    expect(after.batches - before.batches).toBeLessThan(6);
    expect(after.completed - before.completed).toBe(6);
    expect(after.batchSizes.slice(2).reduce((s, n) => s + n, 0)).toBeGreaterThan(0);
    expect(batches.length).toBe(after.batches - before.batches);
    expect(batches.reduce((s, b) => s + b.size, 0)).toBe(6);
    for (const r of results.filter((_, i) => i % 2)) {
      expect(r.maxProbability).toBeCloseTo(alone.maxProbability, 5);
      expect(r.area).toBeGreaterThanOrEqual(alone.area - 20);
      expect(r.area).toBeLessThanOrEqual(alone.area + 20);
    }
  });

  it('rejects only the image the native decoder fails on, and runs the rest of its batch', async () => {
    // A JPEG DICOM whose Huffman table (after the frame header the reader checks) is garbage.
    const corrupt = Buffer.from(files.dicomJpeg);
    const dht = corrupt.indexOf(Buffer.from([0xff, 0xc4]), 132);
    expect(dht).toBeGreaterThan(0);
    corrupt.fill(0xff, dht + 4, dht + 40);
    const s = Segmenter.fromModel(await tinyModel(), { size: SIZE, maxWaitMs: 200 });
    try {
      const [a, bad, b] = await Promise.allSettled([s.predict(files.dicomJpeg), s.predict(corrupt), s.predict(other.dicomJpeg)]);
      expect(bad.status).toBe('rejected');
      const err = (bad as PromiseRejectedResult).reason as SegmenterError;
      expect(err.code).toBe('BAD_INPUT');
      expect(err.message).toMatch(/The image cannot be decoded: /);
      expect(a.status).toBe('fulfilled');
      expect(b.status).toBe('fulfilled');
      expect((a as PromiseFulfilledResult<SegmentResult>).value.batchSize).toBe(2);
      expect(s.stats()).toMatchObject({ completed: 2, failed: 1, batches: 1 });
    } finally {
      s.dispose();
    }
  });

  it('keeps calls of different sizes in different batches', async () => {
    const [a, b] = await Promise.all([seg.predict(files.png, { size: SIZE }), seg.predict(files.png, { size: 2 * SIZE })]);
    expect(a.size).toBe(SIZE);
    expect(b.size).toBe(2 * SIZE);
    expect(a.batchSize).toBe(1);
    expect(b.batchSize).toBe(1);
  });
});

describe('Segmenter: queue limit, abort, dispose', () => {
  it('refuses calls beyond maxQueue with QUEUE_FULL and serves the others', async () => {
    const small = Segmenter.fromModel(await tinyModel(), { size: SIZE, maxQueue: 2, maxWaitMs: 50 });
    try {
      const calls = Array.from({ length: 5 }, () => small.predict(files.png));
      const settled = await Promise.allSettled(calls);
      expect(settled.filter((s) => s.status === 'fulfilled')).toHaveLength(2);
      const refused = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected').map((s) => s.reason as SegmenterError);
      expect(refused).toHaveLength(3);
      for (const e of refused) {
        expect(e).toBeInstanceOf(SegmenterError);
        expect(e.code).toBe('QUEUE_FULL');
        expect(e.message).toMatch(/queue is full \(2 calls waiting\)/);
      }
      expectConsistent(await small.predict(files.png)); // room again
    } finally {
      small.dispose();
    }
  });

  it('rejects a call whose signal is already aborted, and removes an aborted call from the queue', async () => {
    const slow = Segmenter.fromModel(await tinyModel(), { size: SIZE, maxWaitMs: 60_000, maxBatchSize: 4 });
    try {
      const err = await rejection(slow.predict(files.png, { signal: AbortSignal.abort() }));
      expect(err.code).toBe('ABORTED');
      const controller = new AbortController();
      const waiting = slow.predict(files.png, { signal: controller.signal });
      const kept = slow.predict(files.png);
      await new Promise((r) => setTimeout(r, 100)); // both prepared and queued (the batch waits up to 60 s)
      expect(slow.stats().queued).toBe(2);
      controller.abort();
      const aborted = await rejection(waiting);
      expect(aborted.code).toBe('ABORTED');
      expect(slow.stats().queued).toBe(1);
      expect(slow.stats().batches).toBe(0);
      // A full batch runs at once: the kept call and three more, never the aborted one.
      const more = [0, 1, 2].map(() => slow.predict(files.png));
      const results = await Promise.all([kept, ...more]);
      expect(results.map((r) => r.batchSize)).toEqual([4, 4, 4, 4]);
      expect(slow.stats()).toMatchObject({ completed: 4, failed: 1, batches: 1, queued: 0 }); // the pre-aborted call was never accepted
    } finally {
      slow.dispose();
    }
  });

  it('rejects a call aborted during its forward at once, and keeps serving', async () => {
    const s = Segmenter.fromModel(await tinyModel(), { size: SIZE, maxWaitMs: 0 });
    try {
      const controller = new AbortController();
      const p = s.predict(files.png, { signal: controller.signal });
      while (s.stats().running === 0) await new Promise((r) => setTimeout(r, 1));
      controller.abort();
      expect((await rejection(p)).code).toBe('ABORTED');
      expectConsistent(await s.predict(files.png));
    } finally {
      s.dispose();
    }
  });

  it('reports a timeout signal as such', async () => {
    const slow = Segmenter.fromModel(await tinyModel(), { size: SIZE, maxWaitMs: 60_000 });
    try {
      const err = await rejection(slow.predict(files.png, { signal: AbortSignal.timeout(50) }));
      expect(err.code).toBe('ABORTED');
      expect(err.message).toMatch(/timed out/);
    } finally {
      slow.dispose();
    }
  });

  it('dispose() rejects pending calls and later calls with DISPOSED and frees the model', async () => {
    const model: Model = await tinyModel();
    const s = Segmenter.fromModel(model, { size: SIZE, maxWaitMs: 60_000 });
    const pending = [s.predict(files.png), s.predict(files.dicomJpeg)];
    await new Promise((r) => setTimeout(r, 50));
    s.dispose();
    for (const p of pending) expect((await rejection(p)).code).toBe('DISPOSED');
    expect((await rejection(s.predict(files.png))).code).toBe('DISPOSED');
    expect(model.disposed).toBe(true);
    s.dispose(); // idempotent
  });

  it('dispose() during a forward frees the model after it and rejects its calls', async () => {
    const model: Model = await tinyModel();
    const s = Segmenter.fromModel(model, { size: SIZE, maxWaitMs: 0 });
    const p = s.predict(files.png);
    while (s.stats().running === 0) await new Promise((r) => setTimeout(r, 1));
    s.dispose();
    expect((await rejection(p)).code).toBe('DISPOSED');
    // The forward finishes on its thread first (no fixed wait: it can take seconds on a loaded machine).
    for (let waited = 0; !model.disposed && waited < 60_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
    expect(model.disposed).toBe(true);
  });

  it('close() finishes accepted calls, then disposes', async () => {
    const s = Segmenter.fromModel(await tinyModel(), { size: SIZE, maxWaitMs: 60_000 });
    const pending = [s.predict(files.png), s.predict(files.png)];
    await new Promise((r) => setTimeout(r, 50));
    await s.close();
    for (const r of await Promise.all(pending)) expectConsistent(r);
    expect(s.disposed).toBe(true);
  });
});

describe('Segmenter: bad input', () => {
  it('rejects what is not an image with BAD_INPUT and the reason', async () => {
    const cases: [unknown, RegExp][] = [
      [new Uint8Array(0), /empty/],
      [randomBytes(5000, 3), /not a DICOM .*PNG or JPEG/],
      [files.dicomJpeg.subarray(0, 600), /DICOM cannot be decoded/],
      [files.dicomJpeg.subarray(0, files.dicomJpeg.length - 2000), /DICOM cannot be decoded/],
      [files.dicomRaw.subarray(0, files.dicomRaw.length - 100), /DICOM cannot be decoded/],
      [withDimensions(files.dicomRaw, 2 * IMAGE, IMAGE), /DICOM cannot be decoded/],
      [withDimensions(files.dicomJpeg, IMAGE + 8, IMAGE), /DICOM cannot be decoded/],
      [withDimensions(files.dicomRaw, 0, IMAGE), /no pixels|cannot be decoded/],
      [files.png.subarray(0, files.png.length / 2), /PNG is truncated or corrupt|cannot be read/],
      [files.jpeg.subarray(0, 20), /JPEG cannot be read/],
      [{ data: new Uint8Array(10), width: 4, height: 4 }, /Expected 16 bytes \(4x4\) for input.data but received 10/],
      [{ data: [1, 2, 3], width: 1, height: 3 }, /Expected a Uint8Array/],
      ['image.png', /Expected a Uint8Array \(DICOM, PNG or JPEG bytes\) or \{ data, width, height \}/],
    ];
    for (const [input, message] of cases) {
      const err = await rejection(seg.predict(input as Uint8Array));
      expect(err.code, String(message)).toBe('BAD_INPUT');
      expect(err.message).toMatch(message);
    }
    expectConsistent(await seg.predict(files.png)); // still serving
  });

  it('refuses images over maxPixels from their header, before decoding', async () => {
    const err = await rejection(seg.predict(withDimensions(files.dicomJpeg, 65535, 65535)));
    expect(err.code).toBe('INPUT_TOO_LARGE');
    expect(err.message).toMatch(/65535x65535 \(4294836225 pixels\); the limit is 16777216 pixels/);
    const strict = Segmenter.fromModel(await tinyModel(), { size: SIZE, maxPixels: 100 * 100 });
    try {
      for (const input of [files.png, files.jpeg, files.dicomRaw, { data: files.pixels, width: IMAGE, height: IMAGE }]) {
        expect((await rejection(strict.predict(input))).code).toBe('INPUT_TOO_LARGE');
      }
    } finally {
      strict.dispose();
    }
  });

  it('validates options with the parameter name', async () => {
    await expect(seg.predict(files.png, { size: 65 })).rejects.toThrow(/multiple of 32 .* for options.size but received 65/);
    await expect(seg.predict(files.png, { triplet: [2, 0, 0] as never })).rejects.toThrow(/options.triplet top/);
    await expect(seg.predict(files.png, { tta: 'yes' as never })).rejects.toThrow(/a boolean for options.tta/);
    await expect(seg.predict(files.png, { signal: {} as never })).rejects.toThrow(/an AbortSignal for options.signal/);
    expect(() => Segmenter.fromModel({} as never)).toThrow(/Expected a Model for model/);
  });
});
