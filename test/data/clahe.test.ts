/**
 * The seeds' image ingredients against OpenCV (python3-opencv): CLAHE preprocessing (`clahe`,
 * `prepare --clahe`), and the UNet++ seed's colour inversion and Gaussian smoothing augmentations.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { Tensor } from '../../src/core/tensor.js';
import { clahe } from '../../src/data/clahe.js';
import { prepare } from '../../src/data/prepare.js';
import { SYNTH_FILES, synthesize } from '../../src/data/synth/dataset.js';
import { AugmentPipeline } from '../../src/training/augment/index.js';
import { gaussianKernel1d } from '../../src/training/augment/plan.js';
import { PYTHON } from '../models/python.js';

/** Runs a Python snippet that reads raw uint8 bytes on stdin and writes raw bytes on stdout. */
function python(code: string, input: Uint8Array): Buffer {
  const r = spawnSync(PYTHON, ['-c', code], { input, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr.toString()}`);
  return r.stdout;
}

function cvClahe(img: Uint8Array, w: number, h: number, clip: number, tiles: number): Uint8Array {
  const code = `import sys, numpy as np, cv2
a = np.frombuffer(sys.stdin.buffer.read(), np.uint8).reshape(${h}, ${w})
sys.stdout.buffer.write(cv2.createCLAHE(clipLimit=${clip}, tileGridSize=(${tiles}, ${tiles})).apply(a).tobytes())`;
  return new Uint8Array(python(code, img));
}

/** A chest-X-ray-like test image: smooth low-contrast structure plus noise. */
function testImage(w: number, h: number, seed: number): Uint8Array {
  const rng = new Random(seed);
  return Uint8Array.from({ length: w * h }, (_, i) => {
    const x = i % w;
    const y = Math.floor(i / w);
    return Math.max(0, Math.min(255, Math.round(90 + 40 * Math.sin(x / 11) * Math.cos(y / 17) + 25 * (y / h) + rng.uniform(-12, 12))));
  });
}

function compare(a: Uint8Array, b: Uint8Array): { maxDiff: number; exact: number } {
  let maxDiff = 0;
  let exact = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    maxDiff = Math.max(maxDiff, d);
    if (d === 0) exact++;
  }
  return { maxDiff, exact: exact / a.length };
}

describe('CLAHE preprocessing', () => {
  it('matches cv2.createCLAHE(...).apply within 1 level (>= 99% of pixels exact), divisible sizes or not', () => {
    for (const [w, h, clip, tiles, seed] of [
      [64, 64, 2, 8, 1],
      [128, 96, 4, 4, 2],
      [100, 75, 2, 8, 3],
      [257, 130, 1.5, 3, 4],
      [64, 64, 0, 8, 5],
    ] as const) {
      const img = testImage(w, h, seed);
      const ours = clahe(img, w, h, { clipLimit: clip, tileGrid: tiles });
      const ref = cvClahe(img, w, h, clip, tiles);
      const { maxDiff, exact } = compare(ours, ref);
      expect(maxDiff, `${w}x${h} clip ${clip} tiles ${tiles}`).toBeLessThanOrEqual(1);
      expect(exact, `${w}x${h} clip ${clip} tiles ${tiles}`).toBeGreaterThanOrEqual(0.99);
      // And it does equalise: the spread of levels grows.
      const spread = (a: Uint8Array) => Math.max(...a) - Math.min(...a);
      expect(spread(ours)).toBeGreaterThan(spread(img));
    }
  });

  it('rejects bad input naming it', () => {
    expect(() => clahe(new Uint8Array(10), 4, 4)).toThrow(/Expected 16 pixels for a 4 x 4 image but received 10/);
    expect(() => clahe(new Uint8Array(16), 4, 4, { tileGrid: 0 })).toThrow(/tileGrid/);
  });

  describe('prepare --clahe', () => {
    let dir: string;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'pn-clahe-'));
      await synthesize({ out: join(dir, 'synth'), train: 4, test: 2, seed: 3, size: 128, workers: 0 });
    }, 120_000);
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('writes CLAHE of the plain prepared image for train and test (masks unchanged), and refuses to mix settings', async () => {
      const common = { trainDicom: join(dir, 'synth', SYNTH_FILES.trainDicom), testDicom: join(dir, 'synth', SYNTH_FILES.testDicom), labels: join(dir, 'synth', SYNTH_FILES.trainLabels), imgSize: 64, workers: 0 };
      const plain = await prepare({ ...common, out: join(dir, 'plain') });
      const eq = await prepare({ ...common, out: join(dir, 'clahe'), clahe: { clipLimit: 2, tileGrid: 8 } });
      expect(plain.failures).toEqual([]);
      expect(eq.failures).toEqual([]);
      expect(eq.train.done + eq.test.done).toBe(6);
      const gray = async (p: string) => new Uint8Array(await sharp(p).toColourspace('b-w').raw().toBuffer());
      for (const split of ['train', 'test', 'mask']) {
        for (const name of (await import('node:fs')).readdirSync(join(dir, 'plain', split))) {
          const before = await gray(join(dir, 'plain', split, name));
          const after = await gray(join(dir, 'clahe', split, name));
          expect(after).toEqual(split === 'mask' ? before : clahe(before, 64, 64, { clipLimit: 2, tileGrid: 8 }));
        }
      }
      expect(JSON.parse(readFileSync(join(dir, 'clahe', 'prepare.json'), 'utf8'))).toEqual({ imgSize: 64, clahe: { clipLimit: 2, tileGrid: 8 } });
      await expect(prepare({ ...common, out: join(dir, 'clahe') })).rejects.toThrow(/prepared with CLAHE \{"clipLimit":2,"tileGrid":8\}, not null/);
    }, 120_000);
  });
});

describe('UNet++ augmentations', () => {
  const w = 40;
  const h = 30;
  const img = testImage(w, h, 9);
  const run = async (config: unknown): Promise<Float32Array> => {
    const pipeline = new AugmentPipeline({ type: 'Compose', transforms: [config] });
    const t = Tensor.from(img, [1, 1, h, w]);
    try {
      const out = await pipeline.apply(t, undefined, pipeline.sample(1, 1, h, w));
      return out.images.takeData('float32');
    } finally {
      t.dispose();
    }
  };

  it('InvertImg is 255 - x exactly', async () => {
    expect(await run({ type: 'InvertImg', p: 1 })).toEqual(Float32Array.from(img, (v) => 255 - v));
    expect(await run({ type: 'InvertImg', p: 0 })).toEqual(Float32Array.from(img));
  });

  it('GaussianBlur matches cv2.GaussianBlur (reflect-101 borders) for OpenCV-derived and given sigmas', async () => {
    for (const [ksize, sigma] of [
      [3, 0],
      [5, 0],
      [7, 0],
      [9, 0],
      [11, 0],
      [5, 1.7],
    ] as const) {
      const ours = await run({ type: 'GaussianBlur', blur_limit: [ksize, ksize], sigma_limit: [sigma, sigma], p: 1 });
      const code = `import sys, numpy as np, cv2
a = np.frombuffer(sys.stdin.buffer.read(), np.uint8).reshape(${h}, ${w}).astype(np.float32)
sys.stdout.buffer.write(cv2.GaussianBlur(a, (${ksize}, ${ksize}), ${sigma}).astype(np.float32).tobytes())`;
      const ref = new Float32Array(new Uint8Array(python(code, img)).buffer);
      let maxDiff = 0;
      for (let i = 0; i < ref.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ours[i]! - ref[i]!));
      expect(maxDiff, `ksize ${ksize} sigma ${sigma}`).toBeLessThan(1e-3);
    }
    // The kernel itself, against cv2.getGaussianKernel.
    const ref = python('import sys, cv2, numpy as np\nsys.stdout.buffer.write(np.concatenate([cv2.getGaussianKernel(k, s).ravel() for k, s in [(3,0),(9,0),(11,0),(5,1.7)]]).astype(np.float64).tobytes())', new Uint8Array());
    const k = new Float64Array(new Uint8Array(ref).buffer);
    const ours = [...gaussianKernel1d(3, 0), ...gaussianKernel1d(9, 0), ...gaussianKernel1d(11, 0), ...gaussianKernel1d(5, 1.7)];
    ours.forEach((v, i) => expect(v).toBeCloseTo(k[i]!, 12));
  });

  it('the unetpp preset parses and draws inversion and smoothing', () => {
    const pipeline = AugmentPipeline.preset('unetpp');
    const plans = pipeline.sample(5, 200, 32, 32);
    const applied = new Set(plans.flatMap((p) => p.applied));
    for (const name of ['HorizontalFlip', 'InvertImg', 'GaussianBlur', 'ShiftScaleRotate', 'RandomGamma']) expect(applied.has(name)).toBe(true);
  });
});
