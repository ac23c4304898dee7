/** The native batch augmentation against exact references for known parameters. */
import { describe, expect, it } from 'vitest';
import { Random } from '../../src/core/random.js';
import { Tensor } from '../../src/core/tensor.js';
import { AugmentPipeline, lineKernel } from '../../src/training/augment/index.js';
import type { ImageAugmentation, PhotometricStep, TransformInput } from '../../src/training/augment/index.js';

const RAW = new AugmentPipeline({ type: 'Compose', transforms: [] });

/** A uint8 image of pseudo-random levels. */
function noiseImage(h: number, w: number, seed: number): Uint8Array {
  const rng = new Random(seed);
  return Uint8Array.from({ length: h * w }, () => rng.int(0, 255));
}

/** A smooth test pattern (so that bilinear interpolation is accurate). */
function smoothImage(h: number, w: number): Uint8Array {
  const out = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = Math.round(128 + 100 * Math.sin(x / 7) * Math.cos(y / 9));
  return out;
}

interface Run {
  images: Float32Array;
  masks?: Float32Array;
  channels: number;
}

/** Applies records to a batch of identical-size images (pipeline only supplies normalisation). */
async function applyPlan(
  images: Uint8Array[],
  h: number,
  w: number,
  plan: ImageAugmentation[],
  options: { masks?: Uint8Array[]; pipeline?: AugmentPipeline; maskInterpolation?: 'nearest' | 'bilinear' } = {},
): Promise<Run> {
  const batch = new Uint8Array(images.length * h * w);
  images.forEach((im, i) => batch.set(im, i * h * w));
  const t = Tensor.from(batch, [images.length, 1, h, w]);
  let m: Tensor | undefined;
  if (options.masks) {
    const mb = new Uint8Array(images.length * h * w);
    options.masks.forEach((im, i) => mb.set(im, i * h * w));
    m = Tensor.from(mb, [images.length, 1, h, w]);
  }
  const pipeline = options.pipeline ?? RAW;
  const result = await pipeline.apply(t, m, plan, options.maskInterpolation ? { maskInterpolation: options.maskInterpolation } : {});
  t.dispose();
  m?.dispose();
  const channels = result.images.shape[1] as number;
  const out: Run = { images: result.images.takeData('float32'), channels };
  if (result.masks) out.masks = result.masks.takeData('float32');
  return out;
}

/** Samples records from a pipeline config (no Normalize) for n images. */
function drawn(config: TransformInput | TransformInput[], n: number, h: number, w: number, seed = 1): ImageAugmentation[] {
  return new AugmentPipeline(config).sample(seed, n, h, w);
}

function photometric(step: PhotometricStep): ImageAugmentation {
  return { applied: [step.transform], geometry: [], photometric: [step] };
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
};

/** Reflect-101 index (OpenCV's default border). */
function reflect101(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  let r = Math.abs(i) % period;
  if (r > n - 1) r = period - r;
  return r;
}

/** Bilinear sample with reflect-101 borders at a continuous position. */
function bilinear(img: Uint8Array, h: number, w: number, x: number, y: number): number {
  const x0 = Math.floor(x);
  const y0 = Math.floor(y);
  const fx = x - x0;
  const fy = y - y0;
  const at = (xx: number, yy: number): number => img[reflect101(yy, h) * w + reflect101(xx, w)] as number;
  return (at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx) * (1 - fy) + (at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx) * fy;
}

describe('geometric transforms', () => {
  it('flips exactly (bit-exact against a TypedArray flip), masks included', async () => {
    const h = 37;
    const w = 53;
    const img = noiseImage(h, w, 1);
    const mask = noiseImage(h, w, 2).map((v) => (v > 128 ? 255 : 0));
    const plan = [...drawn([{ type: 'HorizontalFlip', p: 1 }], 1, h, w), ...drawn([{ type: 'VerticalFlip', p: 1 }], 1, h, w)];
    const out = await applyPlan([img, img], h, w, plan, { masks: [mask, mask] });
    const hflip = new Float32Array(h * w);
    const vflip = new Float32Array(h * w);
    const hmask = new Float32Array(h * w);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        hflip[y * w + x] = img[y * w + (w - 1 - x)] as number;
        vflip[y * w + x] = img[(h - 1 - y) * w + x] as number;
        hmask[y * w + x] = (mask[y * w + (w - 1 - x)] as number) > 0 ? 1 : 0;
      }
    }
    expect(out.images.subarray(0, h * w)).toEqual(hflip);
    expect(out.images.subarray(h * w)).toEqual(vflip);
    expect(out.masks?.subarray(0, h * w)).toEqual(hmask);
  });

  it('rotates by 90 degrees exactly as np.rot90 for every factor, and transposes', async () => {
    const n = 31;
    const img = noiseImage(n, n, 3);
    const plan = drawn([{ type: 'RandomRotate90', p: 1 }], 24, n, n, 6);
    const factors = plan.map((r) => (r.geometry[0]?.kind === 'affine' ? (r.geometry[0].params.factor as number) : -1));
    expect(new Set(factors)).toEqual(new Set([0, 1, 2, 3]));
    const transposed = drawn([{ type: 'Transpose', p: 1 }], 1, n, n);
    const out = await applyPlan(new Array(25).fill(img), n, n, [...plan, ...transposed]);
    /** np.rot90(m, k)[i][j], applied k times: out[i][j] = in[j][n-1-i]. */
    const rot = (src: Float32Array): Float32Array => {
      const r = new Float32Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) r[i * n + j] = src[j * n + (n - 1 - i)] as number;
      return r;
    };
    factors.forEach((k, b) => {
      let expected: Float32Array = Float32Array.from(img);
      for (let t = 0; t < k; t++) expected = rot(expected);
      expect(out.images.subarray(b * n * n, (b + 1) * n * n)).toEqual(expected);
    });
    const t = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[i * n + j] = img[j * n + i] as number;
    expect(out.images.subarray(24 * n * n)).toEqual(t);
  });

  it('shift-scale-rotate matches a hand-computed inverse affine with bilinear sampling and reflect-101 borders', async () => {
    const h = 48;
    const w = 64;
    const img = smoothImage(h, w);
    const plan = drawn([{ type: 'ShiftScaleRotate', p: 1, shift_limit: 0.1, scale_limit: 0.2, rotate_limit: 40 }], 3, h, w, 9);
    const out = await applyPlan([img, img, img], h, w, plan);
    plan.forEach((record, b) => {
      const step = record.geometry[0];
      if (step?.kind !== 'affine') throw new Error('expected an affine step');
      const { angle, scale, dx, dy } = step.params as { angle: number; scale: number; dx: number; dy: number };
      // Forward: dst = s R (src - c) + c + t, R the counter-clockwise rotation in image axes.
      const t = (angle * Math.PI) / 180;
      const cx = (w - 1) / 2;
      const cy = (h - 1) / 2;
      let worst = 0;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const u = (x - cx - dx * w) / scale;
          const v = (y - cy - dy * h) / scale;
          const sx = Math.cos(t) * u - Math.sin(t) * v + cx;
          const sy = Math.sin(t) * u + Math.cos(t) * v + cy;
          worst = Math.max(worst, Math.abs((out.images[b * h * w + y * w + x] as number) - bilinear(img, h, w, sx, sy)));
        }
      }
      expect(worst).toBeLessThan(2e-3);
    });
  });

  it('applies each cv2 border mode to a shift (constant, replicate, reflect, wrap, reflect-101)', async () => {
    // Square, so that dy = dx (both drawn from shift_limit) is a whole number of pixels too.
    const h = 16;
    const w = 16;
    const img = noiseImage(h, w, 17);
    const shift = 5;
    const modes = [0, 1, 2, 3, 4];
    const plan = modes.flatMap((border_mode) =>
      drawn([{ type: 'ShiftScaleRotate', p: 1, shift_limit: [shift / w, shift / w], scale_limit: 0, rotate_limit: 0, border_mode }], 1, h, w),
    );
    const out = await applyPlan(new Array(modes.length).fill(img), h, w, plan);
    const source = (mode: number, x: number): number => {
      if (x >= 0 && x < w) return x;
      if (mode === 0) return -1;
      if (mode === 1) return Math.min(w - 1, Math.max(0, x));
      if (mode === 2) return x < 0 ? -x - 1 : 2 * w - x - 1;
      if (mode === 3) return ((x % w) + w) % w;
      return reflect101(x, w);
    };
    modes.forEach((mode, b) => {
      const expected = new Float32Array(h * w);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          // dx = shift / w moves content right (and dy = shift / h down): output (x, y) reads (x - 5, y - 5).
          const sx = source(mode, x - shift);
          const sy = source(mode, y - shift);
          expected[y * w + x] = sx < 0 || sy < 0 ? 0 : (img[sy * w + sx] as number);
        }
      }
      expect(maxAbsDiff(out.images.subarray(b * h * w, (b + 1) * h * w), expected), `border_mode ${mode}`).toBeLessThan(2e-3);
    });
  });

  it('merges a flip with a following shift-scale-rotate exactly (flip first, then the affine with its border rule)', async () => {
    const h = 40;
    const w = 40;
    const img = smoothImage(h, w);
    const flipped = new Uint8Array(h * w);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) flipped[y * w + x] = img[y * w + (w - 1 - x)] as number;
    const plan = drawn([{ type: 'HorizontalFlip', p: 1 }, { type: 'ShiftScaleRotate', p: 1, rotate_limit: 40 }], 2, h, w, 3);
    const out = await applyPlan([img, img], h, w, plan);
    plan.forEach((record, b) => {
      const step = record.geometry[1];
      if (step?.kind !== 'affine') throw new Error('expected an affine step');
      const { angle, scale, dx, dy } = step.params as { angle: number; scale: number; dx: number; dy: number };
      const t = (angle * Math.PI) / 180;
      const c = (w - 1) / 2;
      let worst = 0;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const u = (x - c - dx * w) / scale;
          const v = (y - c - dy * h) / scale;
          const ref = bilinear(flipped, h, w, Math.cos(t) * u - Math.sin(t) * v + c, Math.sin(t) * u + Math.cos(t) * v + c);
          worst = Math.max(worst, Math.abs((out.images[b * h * w + y * w + x] as number) - ref));
        }
      }
      expect(worst).toBeLessThan(2e-3);
    });
  });

  it('crops and resizes like cv2.resize (half-pixel centres, edges replicated) for both crop transforms', async () => {
    const h = 32;
    const w = 32;
    const img = smoothImage(h, w);
    const plan = [
      ...drawn([{ type: 'RandomSizedCrop', p: 1, min_max_height: [12, 24] }], 2, h, w, 4),
      ...drawn([{ type: 'RandomResizedCrop', p: 1, scale: [0.2, 0.6] }], 2, h, w, 5),
    ];
    const out = await applyPlan([img, img, img, img], h, w, plan);
    const clampAt = (xx: number, yy: number): number => img[Math.min(h - 1, Math.max(0, yy)) * w + Math.min(w - 1, Math.max(0, xx))] as number;
    plan.forEach((record, b) => {
      const step = record.geometry[0];
      if (step?.kind !== 'affine') throw new Error('expected an affine step');
      const { x, y, width, height } = step.params as { x: number; y: number; width: number; height: number };
      expect(x >= 0 && y >= 0 && x + width <= w && y + height <= h && width < w).toBe(true);
      let worst = 0;
      for (let v = 0; v < h; v++) {
        for (let u = 0; u < w; u++) {
          const sx = x + ((u + 0.5) * width) / w - 0.5;
          const sy = y + ((v + 0.5) * height) / h - 0.5;
          const x0 = Math.floor(sx);
          const y0 = Math.floor(sy);
          const fx = sx - x0;
          const fy = sy - y0;
          const ref = (clampAt(x0, y0) * (1 - fx) + clampAt(x0 + 1, y0) * fx) * (1 - fy) + (clampAt(x0, y0 + 1) * (1 - fx) + clampAt(x0 + 1, y0 + 1) * fx) * fy;
          worst = Math.max(worst, Math.abs((out.images[b * h * w + v * w + u] as number) - ref));
        }
      }
      expect(worst).toBeLessThan(2e-3);
    });
  });

  it('composes all geometric steps into one resampling: 45 + 45 degrees equals np.rot90 without the blur of two passes', async () => {
    const n = 64;
    const img = noiseImage(n, n, 4);
    const rot45 = { type: 'ShiftScaleRotate', p: 1, shift_limit: 0, scale_limit: 0, rotate_limit: [45, 45] } as TransformInput;
    const fused = await applyPlan([img], n, n, drawn([rot45, rot45], 1, n, n));
    // Two separate passes: rotate 45, round to 8 bits, rotate 45 again.
    const once = await applyPlan([img], n, n, drawn([rot45], 1, n, n));
    const twice = await applyPlan([Uint8Array.from(once.images, (v) => Math.round(v))], n, n, drawn([rot45], 1, n, n));
    const rot90 = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) rot90[i * n + j] = img[j * n + (n - 1 - i)] as number;
    // Compare inside the central disc, which no border rule touches.
    const c = (n - 1) / 2;
    let fusedWorst = 0;
    let twiceMean = 0;
    let count = 0;
    for (let y = 0; y < n; y++) {
      for (let x = 0; x < n; x++) {
        if (Math.hypot(x - c, y - c) > 0.65 * c) continue;
        const k = y * n + x;
        fusedWorst = Math.max(fusedWorst, Math.abs((fused.images[k] as number) - (rot90[k] as number)));
        twiceMean += Math.abs((twice.images[k] as number) - (rot90[k] as number));
        count++;
      }
    }
    expect(fusedWorst).toBeLessThan(0.05);
    expect(twiceMean / count).toBeGreaterThan(20);
  });

  it('elastic, grid and optical distortion are the identity at zero magnitude', async () => {
    const h = 40;
    const w = 56;
    const img = noiseImage(h, w, 6);
    const plan = [
      ...drawn([{ type: 'ElasticTransform', p: 1, alpha: 0, sigma: 6, alpha_affine: 0 }], 1, h, w),
      ...drawn([{ type: 'GridDistortion', p: 1, num_steps: 5, distort_limit: 0 }], 1, h, w),
      ...drawn([{ type: 'OpticalDistortion', p: 1, distort_limit: 0, shift_limit: 0 }], 1, h, w),
    ];
    expect(plan.map((r) => r.geometry.map((g) => g.kind))).toEqual([['elastic'], ['grid'], ['optical']]);
    const out = await applyPlan([img, img, img], h, w, plan);
    for (let b = 0; b < 3; b++) expect(maxAbsDiff(out.images.subarray(b * h * w, (b + 1) * h * w), img)).toBeLessThan(2e-3);
  });

  it('elastic, grid and optical distortion are smooth, nonzero and deterministic per seed', async () => {
    const n = 96;
    // The image is the x coordinate (scaled): the output is then where each pixel sampled from.
    const ramp = new Uint8Array(n * n);
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) ramp[y * n + x] = Math.round((x * 255) / (n - 1));
    const configs: TransformInput[] = [
      { type: 'ElasticTransform', p: 1, alpha: 120, sigma: 6, alpha_affine: 0 },
      { type: 'GridDistortion', p: 1, num_steps: 5, distort_limit: 0.3 },
      { type: 'OpticalDistortion', p: 1, distort_limit: 0.5, shift_limit: 0 },
    ];
    for (const config of configs) {
      const planA = drawn([config], 1, n, n, 21);
      const planB = drawn([config], 1, n, n, 22);
      const [a, a2, b] = await Promise.all([applyPlan([ramp], n, n, planA), applyPlan([ramp], n, n, planA), applyPlan([ramp], n, n, planB)]);
      expect(a.images).toEqual(a2.images);
      expect(maxAbsDiff(a.images, b.images)).toBeGreaterThan(5);
      // Displacement (in pixels) of the x coordinate, away from the borders.
      let moved = 0;
      let roughness = 0;
      let count = 0;
      for (let y = 8; y < n - 8; y++) {
        for (let x = 8; x < n - 9; x++) {
          const d = ((a.images[y * n + x] as number) * (n - 1)) / 255 - x;
          const dRight = ((a.images[y * n + x + 1] as number) * (n - 1)) / 255 - (x + 1);
          moved = Math.max(moved, Math.abs(d));
          roughness += Math.abs(dRight - d);
          count++;
        }
      }
      expect(moved, config.type as string).toBeGreaterThan(1);
      expect(roughness / count, config.type as string).toBeLessThan(0.5);
    }
  });

  it("elastic displacement has Gaussian-smoothed noise's spread and correlation length (alpha 120, sigma 6)", async () => {
    // On a ramp whose level is the x coordinate, output - x is the field's x displacement.
    const n = 256;
    const ramp = Uint8Array.from({ length: n * n }, (_, i) => i % n);
    const alpha = 120;
    const sigma = 6;
    const plan = drawn([{ type: 'ElasticTransform', p: 1, alpha, sigma, alpha_affine: 0 }], 4, n, n, 31);
    const out = await applyPlan([ramp, ramp, ramp, ramp], n, n, plan);
    // Smoothed uniform(-1, 1) noise: std = alpha sqrt(1/3) sum(w^2) (2-D separable kernel, scipy's
    // truncate = 4); correlation at lag d = exp(-d^2 / (4 sigma^2)).
    const radius = Math.floor(4 * sigma + 0.5);
    const w1 = Array.from({ length: 2 * radius + 1 }, (_, i) => Math.exp(-0.5 * ((i - radius) / sigma) ** 2));
    const total = w1.reduce((a, b) => a + b, 0);
    const sumSq = w1.reduce((a, b) => a + (b / total) ** 2, 0);
    const expectedStd = alpha * Math.sqrt(1 / 3) * sumSq;
    const lag = 12;
    let sq = 0;
    let cross = 0;
    let count = 0;
    const margin = 40; // away from the reflected borders and the 0-255 clamp
    for (let b = 0; b < 4; b++) {
      const d = (x: number, y: number) => (out.images[b * n * n + y * n + x] as number) - x;
      for (let y = margin; y < n - margin; y++) {
        for (let x = margin; x < n - margin - lag; x++) {
          sq += d(x, y) ** 2;
          cross += d(x, y) * d(x + lag, y);
          count++;
        }
      }
    }
    const std = Math.sqrt(sq / count);
    expect(std / expectedStd).toBeGreaterThan(0.8);
    expect(std / expectedStd).toBeLessThan(1.2);
    expect(cross / sq).toBeGreaterThan(Math.exp(-1) - 0.12);
    expect(cross / sq).toBeLessThan(Math.exp(-1) + 0.12);
  });

  it('keeps image and mask aligned through the composed geometry (nearest and bilinear masks)', async () => {
    const n = 64;
    const img = new Uint8Array(n * n).fill(10);
    const mask = new Uint8Array(n * n);
    for (let y = 20; y < 44; y++) {
      for (let x = 16; x < 40; x++) {
        img[y * n + x] = 250;
        mask[y * n + x] = 255;
      }
    }
    const config: TransformInput[] = [
      { type: 'HorizontalFlip', p: 0.5 },
      { type: 'OneOf', p: 1, transforms: [{ type: 'ElasticTransform', alpha: 60, sigma: 6, alpha_affine: 3 }, { type: 'GridDistortion' }, { type: 'OpticalDistortion', distort_limit: 0.5, shift_limit: 0.5 }] },
      { type: 'ShiftScaleRotate', p: 1, shift_limit: 0.05, scale_limit: 0.1, rotate_limit: 30, border_mode: 0 },
    ];
    const plan = drawn(config, 8, n, n, 31);
    const batch = new Array(8).fill(img);
    const masks = new Array(8).fill(mask);
    for (const mode of ['bilinear', 'nearest'] as const) {
      const out = await applyPlan(batch, n, n, plan, { masks, maskInterpolation: mode });
      for (let b = 0; b < 8; b++) {
        let inter = 0;
        let union = 0;
        for (let k = 0; k < n * n; k++) {
          const a = (out.images[b * n * n + k] as number) > 130;
          const m = (out.masks?.[b * n * n + k] as number) > 0.5;
          if (a && m) inter++;
          if (a || m) union++;
        }
        expect(union).toBeGreaterThan(200);
        expect(inter / union, `${mode} image ${b}`).toBeGreaterThan(mode === 'bilinear' ? 0.995 : 0.9);
      }
      expect(new Set(out.masks)).toEqual(new Set([0, 1]));
    }
  });
});

describe('photometric transforms', () => {
  /** Every level 0..255 once. */
  const levels = Uint8Array.from({ length: 256 }, (_, i) => i);

  it('applies gamma through the lookup table exactly', async () => {
    const plan = [photometric({ kind: 'pointwise', transform: 'RandomGamma', alpha: 1, beta: 0, brightnessByMax: true, gamma: 0.83 })];
    const out = await applyPlan([levels], 16, 16, plan);
    expect(out.images).toEqual(Float32Array.from(levels, (v) => 255 * Math.pow(v / 255, 0.83)));
    const drawnPlan = drawn([{ type: 'RandomGamma', p: 1, gamma_limit: [80, 120] }], 1, 16, 16, 3);
    const step = drawnPlan[0]?.photometric[0];
    if (step?.kind !== 'pointwise') throw new Error('expected a pointwise step');
    const again = await applyPlan([levels], 16, 16, drawnPlan);
    expect(again.images).toEqual(Float32Array.from(levels, (v) => 255 * Math.pow(v / 255, step.gamma)));
  });

  it('applies brightness and contrast as clip(alpha v + beta 255), or beta times the mean', async () => {
    const plan = drawn([{ type: 'RandomBrightnessContrast', p: 1, brightness_limit: 0.3, contrast_limit: 0.3 }], 4, 16, 16, 8);
    const out = await applyPlan(new Array(4).fill(levels), 16, 16, plan);
    plan.forEach((r, b) => {
      const s = r.photometric[0];
      if (s?.kind !== 'pointwise') throw new Error('expected a pointwise step');
      const expected = Float32Array.from(levels, (v) => Math.min(255, Math.max(0, s.alpha * v + s.beta * 255)));
      expect(maxAbsDiff(out.images.subarray(b * 256, (b + 1) * 256), expected)).toBeLessThan(1e-4);
    });
    const byMean = await applyPlan([levels], 16, 16, [photometric({ kind: 'pointwise', transform: 'RandomBrightness', alpha: 1, beta: 0.1, brightnessByMax: false, gamma: 1 })]);
    expect(maxAbsDiff(byMean.images, Float32Array.from(levels, (v) => Math.min(255, v + 0.1 * 127.5)))).toBeLessThan(1e-3);
  });

  it('blurs like a direct box or line-kernel correlation with reflect-101 borders', async () => {
    const h = 20;
    const w = 24;
    const img = noiseImage(h, w, 12);
    const plan = [
      photometric({ kind: 'convolve', transform: 'Blur', ksize: 5 }),
      photometric({ kind: 'convolve', transform: 'MotionBlur', ksize: 7, line: [0, 2, 6, 5] }),
      photometric({ kind: 'convolve', transform: 'Blur', ksize: 3 }),
    ];
    const out = await applyPlan([img, img, img], h, w, plan);
    const correlate = (kernel: number[], k: number): Float32Array => {
      const r = new Float32Array(h * w);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          let s = 0;
          for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) s += (kernel[i * k + j] as number) * (img[reflect101(y + i - (k >> 1), h) * w + reflect101(x + j - (k >> 1), w)] as number);
          r[y * w + x] = s;
        }
      }
      return r;
    };
    expect(maxAbsDiff(out.images.subarray(0, h * w), correlate(new Array(25).fill(1 / 25), 5))).toBeLessThan(1e-3);
    expect(maxAbsDiff(out.images.subarray(h * w, 2 * h * w), correlate(lineKernel(7, [0, 2, 6, 5]), 7))).toBeLessThan(1e-3);
    expect(maxAbsDiff(out.images.subarray(2 * h * w), correlate(new Array(9).fill(1 / 9), 3))).toBeLessThan(1e-3);
  });

  it('median-blurs exactly, edges replicated', async () => {
    const h = 15;
    const w = 18;
    const img = noiseImage(h, w, 13);
    const out = await applyPlan([img], h, w, [photometric({ kind: 'median', transform: 'MedianBlur', ksize: 5 })]);
    const expected = new Float32Array(h * w);
    const clamp = (v: number, n: number): number => Math.min(n - 1, Math.max(0, v));
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const values: number[] = [];
        for (let i = -2; i <= 2; i++) for (let j = -2; j <= 2; j++) values.push(img[clamp(y + i, h) * w + clamp(x + j, w)] as number);
        values.sort((a, b) => a - b);
        expected[y * w + x] = values[12] as number;
      }
    }
    expect(out.images).toEqual(expected);
  });

  it('CLAHE spreads a low-contrast histogram and stays within 8-bit levels', async () => {
    const n = 64;
    const img = new Uint8Array(n * n);
    const rng = new Random(14);
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) img[y * n + x] = 100 + Math.round((30 * (x + y)) / (2 * n)) + rng.int(0, 8);
    const out = await applyPlan([img], n, n, [photometric({ kind: 'clahe', transform: 'CLAHE', clipLimit: 4, tileGridSize: [4, 4] })]);
    const std = (a: ArrayLike<number>): number => {
      let m = 0;
      for (let i = 0; i < a.length; i++) m += a[i] as number;
      m /= a.length;
      let v = 0;
      for (let i = 0; i < a.length; i++) v += ((a[i] as number) - m) ** 2;
      return Math.sqrt(v / a.length);
    };
    expect(std(out.images)).toBeGreaterThan(2 * std(img));
    expect(out.images.every((v) => v >= 0 && v <= 255 && Number.isInteger(v))).toBe(true);
    // A higher clip limit equalises harder.
    const strong = await applyPlan([img], n, n, [photometric({ kind: 'clahe', transform: 'CLAHE', clipLimit: 40, tileGridSize: [4, 4] })]);
    expect(std(strong.images)).toBeGreaterThan(std(out.images));
  });

  it('adds Gaussian noise with the drawn standard deviation, deterministic per seed', async () => {
    const n = 128;
    const flat = new Uint8Array(n * n).fill(128);
    const plan = drawn([{ type: 'GaussNoise', p: 1, var_limit: [100, 100] }], 2, n, n, 15);
    const [a, again] = await Promise.all([applyPlan([flat, flat], n, n, plan), applyPlan([flat, flat], n, n, plan)]);
    expect(a.images).toEqual(again.images);
    for (let b = 0; b < 2; b++) {
      const d = Array.from(a.images.subarray(b * n * n, (b + 1) * n * n), (v) => v - 128);
      const mean = d.reduce((s, v) => s + v, 0) / d.length;
      const sd = Math.sqrt(d.reduce((s, v) => s + (v - mean) ** 2, 0) / d.length);
      expect(Math.abs(mean)).toBeLessThan(0.3);
      expect(Math.abs(sd - 10)).toBeLessThan(0.3);
    }
    expect(maxAbsDiff(a.images.subarray(0, n * n), a.images.subarray(n * n))).toBeGreaterThan(10);
  });
});

describe('pipeline', () => {
  it('normalises with ImageNet statistics into 3 channels (the first-place preset)', async () => {
    const pipeline = AugmentPipeline.preset('first-place');
    const identity: ImageAugmentation = { applied: [], geometry: [], photometric: [] };
    const levels = Uint8Array.from({ length: 256 }, (_, i) => i);
    const out = await applyPlan([levels], 16, 16, [identity], { pipeline });
    expect(out.channels).toBe(3);
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    for (let c = 0; c < 3; c++) {
      const expected = Float32Array.from(levels, (v) => (v / 255 - (mean[c] as number)) / (std[c] as number));
      expect(maxAbsDiff(out.images.subarray(c * 256, (c + 1) * 256), expected)).toBeLessThan(1e-5);
    }
  });

  it('is deterministic per seed end to end (first and second place presets)', async () => {
    const n = 64;
    const img = smoothImage(n, n);
    const mask = img.map((v) => (v > 180 ? 255 : 0));
    for (const name of ['first-place', 'second-place'] as const) {
      const pipeline = AugmentPipeline.preset(name);
      const run = async (seed: number): Promise<Run> => applyPlan(new Array(8).fill(img), n, n, pipeline.sample(seed, 8, n, n), { pipeline, masks: new Array(8).fill(mask) });
      const [a, b, c] = await Promise.all([run(5), run(5), run(6)]);
      expect(a.images).toEqual(b.images);
      expect(a.masks).toEqual(b.masks);
      expect(a.images).not.toEqual(c.images);
      expect(a.images.every(Number.isFinite)).toBe(true);
    }
  });

  it('accepts float32 images and masks on the 0-255 scale, giving what uint8 gives', async () => {
    const n = 24;
    const img = smoothImage(n, n);
    const mask = img.map((v) => (v > 150 ? 255 : 0));
    const pipeline = new AugmentPipeline([{ type: 'ShiftScaleRotate', p: 1 }, { type: 'RandomGamma', p: 1 }]);
    const plan = pipeline.sample(4, 1, n, n);
    const fromU8 = await pipeline.apply(Tensor.from(img, [1, 1, n, n]), Tensor.from(mask, [1, 1, n, n]), plan);
    const fromF32 = await pipeline.apply(Tensor.from(Float32Array.from(img), [1, 1, n, n]), Tensor.from(Float32Array.from(mask), [1, 1, n, n]), plan);
    expect(fromF32.images.takeData('float32')).toEqual(fromU8.images.takeData('float32'));
    expect(fromF32.masks?.takeData('float32')).toEqual(fromU8.masks?.takeData('float32'));
  });

  it('rejects bad inputs with clear errors', async () => {
    const t = Tensor.from(new Float32Array(16), [1, 4, 4]);
    await expect(RAW.apply(t, undefined, [{ applied: [], geometry: [], photometric: [] }])).rejects.toThrow(/Expected a uint8 \(or float32, 0-255\) Tensor \[B, 1, H, W\] for images but received "a float32 Tensor \[1, 4, 4\]"/);
    const u = Tensor.from(new Uint8Array(16), [1, 1, 4, 4]);
    await expect(RAW.apply(u, undefined, [])).rejects.toThrow(/Expected an array of 1 image records for plan/);
    const bad: ImageAugmentation = { applied: [], geometry: [], photometric: [{ kind: 'median', transform: 'MedianBlur', ksize: 4 }] };
    await expect(RAW.apply(u, undefined, [bad])).rejects.toThrow(/median kernel size must be odd, got 4/);
  });
});
