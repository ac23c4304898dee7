/**
 * Drawing an augmentation plan: every random parameter of every image is drawn here, in
 * TypeScript, from a seeded stream, into a per-image record that a person (or a test) can read.
 * The native side only executes records (`encodePlan` flattens them for native/augment/batch.cpp).
 *
 * Coordinates: pixel centres at integers, x to the right, y down. Geometric steps are stored as
 * backward maps (output pixel -> input position), the form a sampling grid needs.
 */
import { Random } from '../../core/random.js';
import { assertInteger, invalidParameterError } from '../../core/validate.js';
import { AugmentConfigError, oddSizes } from './transforms.js';
import type { BlurConfig, BorderMode, Range, TransformConfig } from './transforms.js';

/** A 2x3 affine backward map: x' = m0 x + m1 y + m2, y' = m3 x + m4 y + m5. */
export type AffineMatrix = [number, number, number, number, number, number];

export type GeometricStep =
  | { kind: 'affine'; transform: string; matrix: AffineMatrix; border: BorderMode; params: Record<string, number> }
  | { kind: 'elastic'; transform: string; alpha: number; sigma: number; seed: number; border: BorderMode }
  | { kind: 'grid'; transform: string; numSteps: number; xSteps: number[]; ySteps: number[]; border: BorderMode }
  | { kind: 'optical'; transform: string; k: number; dx: number; dy: number; border: BorderMode };

export type PhotometricStep =
  | { kind: 'pointwise'; transform: string; alpha: number; beta: number; brightnessByMax: boolean; gamma: number }
  | { kind: 'clahe'; transform: string; clipLimit: number; tileGridSize: [number, number] }
  | { kind: 'convolve'; transform: 'Blur' | 'MotionBlur'; ksize: number; line?: [number, number, number, number] }
  | { kind: 'convolve'; transform: 'GaussianBlur'; ksize: number; sigma: number }
  | { kind: 'median'; transform: 'MedianBlur'; ksize: number }
  | { kind: 'noise'; transform: 'GaussNoise'; mean: number; std: number; seed: number };

/**
 * What happens to one image: its geometric steps (composed natively into one sampling grid) and
 * its photometric steps (applied after the geometry, in order). Plain JSON.
 */
export interface ImageAugmentation {
  /** Names of the transforms applied, in order. */
  applied: string[];
  geometry: GeometricStep[];
  photometric: PhotometricStep[];
}

const IDENTITY: AffineMatrix = [1, 0, 0, 0, 1, 0];

/** Inverse of an affine map. */
export function invertAffine(m: AffineMatrix): AffineMatrix {
  const [a, b, c, d, e, f] = m;
  const det = a * e - b * d;
  if (det === 0 || !Number.isFinite(det)) throw new RangeError('affine map is not invertible');
  return [e / det, -b / det, (b * f - c * e) / det, -d / det, a / det, (c * d - a * f) / det];
}

/** cv2.getRotationMatrix2D: counter-clockwise degrees about (cx, cy), scaled (a forward map). */
export function rotationMatrix(cx: number, cy: number, angle: number, scale: number): AffineMatrix {
  const t = (angle * Math.PI) / 180;
  const alpha = scale * Math.cos(t);
  const beta = scale * Math.sin(t);
  return [alpha, beta, (1 - alpha) * cx - beta * cy, -beta, alpha, beta * cx + (1 - alpha) * cy];
}

/** cv2.getAffineTransform: the forward map sending three source points to three destinations. */
export function affineFromPoints(src: [number, number][], dst: [number, number][]): AffineMatrix {
  const [[x0, y0], [x1, y1], [x2, y2]] = src as [[number, number], [number, number], [number, number]];
  const det = x0 * (y1 - y2) - y0 * (x1 - x2) + (x1 * y2 - x2 * y1);
  if (det === 0) throw new RangeError('affineFromPoints: the source points are collinear');
  const solve = (v0: number, v1: number, v2: number): [number, number, number] => [
    (v0 * (y1 - y2) - y0 * (v1 - v2) + (v1 * y2 - v2 * y1)) / det,
    (x0 * (v1 - v2) - v0 * (x1 - x2) + (x1 * v2 - x2 * v1)) / det,
    (x0 * (y1 * v2 - y2 * v1) - y0 * (x1 * v2 - x2 * v1) + v0 * (x1 * y2 - x2 * y1)) / det,
  ];
  const d = dst as [[number, number], [number, number], [number, number]];
  return [...solve(d[0][0], d[1][0], d[2][0]), ...solve(d[0][1], d[1][1], d[2][1])] as AffineMatrix;
}

/** Python's round(): halves to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The backward map of "crop (x0, y0, cw, ch), resize to width x height" (cv2 half-pixel centres). */
function cropResize(x0: number, y0: number, cw: number, ch: number, width: number, height: number): AffineMatrix {
  const sx = cw / width;
  const sy = ch / height;
  return [sx, 0, x0 + 0.5 * sx - 0.5, 0, sy, y0 + 0.5 * sy - 0.5];
}

/** Rasterises a 1-pixel line (8-connected Bresenham, like cv2.line) into a normalised kernel. */
export function lineKernel(ksize: number, line: [number, number, number, number]): number[] {
  const kernel = new Array<number>(ksize * ksize).fill(0);
  let [x, y] = line;
  const [, , x1, y1] = line;
  const dx = Math.abs(x1 - x);
  const dy = -Math.abs(y1 - y);
  const sx = x < x1 ? 1 : -1;
  const sy = y < y1 ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    kernel[y * ksize + x] = 1;
    if (x === x1 && y === y1) break;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y += sy;
    }
  }
  const sum = kernel.reduce((a, b) => a + b, 0);
  return kernel.map((v) => v / sum);
}

interface Frame {
  height: number;
  width: number;
}

function requireSquare(frame: Frame, name: string): void {
  if (frame.height !== frame.width) throw new AugmentConfigError(`${name} needs square images, got ${frame.width}x${frame.height}`);
}

function checkOutputSize(name: string, config: { height?: number; width?: number }, frame: Frame): void {
  if ((config.height !== undefined && config.height !== frame.height) || (config.width !== undefined && config.width !== frame.width)) {
    throw new AugmentConfigError(
      `${name} to ${config.width ?? frame.width}x${config.height ?? frame.height} differs from the batch size ${frame.width}x${frame.height}: ` +
        'augmentation keeps the input size, so load images at the training size instead',
    );
  }
}

function uniform(rng: Random, r: Range): number {
  return r[0] === r[1] ? r[0] : rng.uniform(r[0], r[1]);
}

function affine(out: ImageAugmentation, transform: string, matrix: AffineMatrix, border: BorderMode, params: Record<string, number>): void {
  out.geometry.push({ kind: 'affine', transform, matrix, border, params });
}

function randomResizedCrop(rng: Random, scale: Range, ratio: Range, frame: Frame): [number, number, number, number] {
  const { width: W, height: H } = frame;
  const area = W * H;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = uniform(rng, scale) * area;
    const aspect = Math.exp(uniform(rng, [Math.log(ratio[0]), Math.log(ratio[1])]));
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= W && h > 0 && h <= H) return [rng.int(0, W - w), rng.int(0, H - h), w, h];
  }
  const inRatio = W / H;
  let w = W;
  let h = H;
  if (inRatio < ratio[0]) h = roundHalfEven(W / ratio[0]);
  else if (inRatio > ratio[1]) w = roundHalfEven(H * ratio[1]);
  return [Math.floor((W - w) / 2), Math.floor((H - h) / 2), w, h];
}

/** Draws the parameters of one (non-container) transform that is applied, into `out`. */
function drawTransform(config: Exclude<TransformConfig, { type: 'Compose' | 'OneOf' | 'Normalize' }>, rng: Random, frame: Frame, out: ImageAugmentation): void {
  const { width: W, height: H } = frame;
  const cx = (W - 1) / 2;
  const cy = (H - 1) / 2;
  out.applied.push(config.type);
  switch (config.type) {
    case 'HorizontalFlip':
      return affine(out, config.type, [-1, 0, W - 1, 0, 1, 0], 4, {});
    case 'VerticalFlip':
      return affine(out, config.type, [1, 0, 0, 0, -1, H - 1], 4, {});
    case 'Transpose':
      requireSquare(frame, config.type);
      return affine(out, config.type, [0, 1, 0, 1, 0, 0], 4, {});
    case 'RandomRotate90': {
      // np.rot90(img, factor): counter-clockwise quarter turns.
      const factor = rng.int(0, 3);
      if (factor % 2 === 1) requireSquare(frame, config.type);
      const maps: AffineMatrix[] = [IDENTITY, [0, -1, W - 1, 1, 0, 0], [-1, 0, W - 1, 0, -1, H - 1], [0, 1, 0, -1, 0, H - 1]];
      return affine(out, config.type, [...(maps[factor] as AffineMatrix)], 4, { factor });
    }
    case 'ShiftScaleRotate': {
      const angle = uniform(rng, config.rotate_limit);
      const scale = 1 + uniform(rng, config.scale_limit);
      const dx = uniform(rng, config.shift_limit);
      const dy = uniform(rng, config.shift_limit);
      // About the pixel-grid centre, so that 90 degrees is exactly np.rot90.
      const forward = rotationMatrix(cx, cy, angle, scale);
      forward[2] += dx * W;
      forward[5] += dy * H;
      return affine(out, config.type, invertAffine(forward), config.border_mode, { angle, scale, dx, dy });
    }
    case 'ElasticTransform': {
      // albumentations: a random affine of three points around the centre, then the displacement.
      const c0 = Math.floor(H / 2);
      const c1 = Math.floor(W / 2);
      const s = Math.floor(Math.min(H, W) / 3);
      const src: [number, number][] = [
        [c0 + s, c1 + s],
        [c0 + s, c1 - s],
        [c0 - s, c1 - s],
      ];
      const a = config.alpha_affine;
      const dst = src.map(([x, y]) => [x + (a > 0 ? rng.uniform(-a, a) : 0), y + (a > 0 ? rng.uniform(-a, a) : 0)] as [number, number]);
      if (a > 0) affine(out, config.type, invertAffine(affineFromPoints(src, dst)), config.border_mode, {});
      out.geometry.push({ kind: 'elastic', transform: config.type, alpha: config.alpha, sigma: config.sigma, seed: rng.nextUint32(), border: config.border_mode });
      return;
    }
    case 'GridDistortion': {
      const draw = (): number[] => Array.from({ length: config.num_steps + 1 }, () => 1 + uniform(rng, config.distort_limit));
      const xSteps = draw();
      const ySteps = draw();
      out.geometry.push({ kind: 'grid', transform: config.type, numSteps: config.num_steps, xSteps, ySteps, border: config.border_mode });
      return;
    }
    case 'OpticalDistortion': {
      const k = uniform(rng, config.distort_limit);
      const dx = roundHalfEven(uniform(rng, config.shift_limit));
      const dy = roundHalfEven(uniform(rng, config.shift_limit));
      out.geometry.push({ kind: 'optical', transform: config.type, k, dx, dy, border: config.border_mode });
      return;
    }
    case 'RandomSizedCrop': {
      checkOutputSize(config.type, config, frame);
      const ch = Math.min(rng.int(config.min_max_height[0], config.min_max_height[1]), H);
      const cw = Math.min(Math.max(1, Math.trunc(ch * config.w2h_ratio)), W);
      const hStart = rng.next();
      const wStart = rng.next();
      const y0 = Math.trunc((H - ch) * hStart);
      const x0 = Math.trunc((W - cw) * wStart);
      return affine(out, config.type, cropResize(x0, y0, cw, ch, W, H), 1, { x: x0, y: y0, width: cw, height: ch });
    }
    case 'RandomResizedCrop': {
      checkOutputSize(config.type, config, frame);
      const [x0, y0, cw, ch] = randomResizedCrop(rng, config.scale, config.ratio, frame);
      return affine(out, config.type, cropResize(x0, y0, cw, ch, W, H), 1, { x: x0, y: y0, width: cw, height: ch });
    }
    case 'Resize':
      checkOutputSize(config.type, config, frame);
      return;
    case 'RandomBrightnessContrast': {
      const alpha = 1 + uniform(rng, config.contrast_limit);
      const beta = uniform(rng, config.brightness_limit);
      out.photometric.push({ kind: 'pointwise', transform: config.type, alpha, beta, brightnessByMax: config.brightness_by_max, gamma: 1 });
      return;
    }
    case 'RandomContrast':
      out.photometric.push({ kind: 'pointwise', transform: config.type, alpha: 1 + uniform(rng, config.limit), beta: 0, brightnessByMax: true, gamma: 1 });
      return;
    case 'RandomBrightness':
      out.photometric.push({ kind: 'pointwise', transform: config.type, alpha: 1, beta: uniform(rng, config.limit), brightnessByMax: true, gamma: 1 });
      return;
    case 'RandomGamma':
      out.photometric.push({ kind: 'pointwise', transform: config.type, alpha: 1, beta: 0, brightnessByMax: true, gamma: uniform(rng, config.gamma_limit) / 100 });
      return;
    case 'CLAHE':
      out.photometric.push({ kind: 'clahe', transform: config.type, clipLimit: uniform(rng, config.clip_limit), tileGridSize: [...config.tile_grid_size] });
      return;
    case 'Blur':
    case 'MotionBlur':
    case 'MedianBlur':
      return drawBlur(config, rng, out);
    case 'GaussianBlur': {
      const ksize = rng.pick(oddSizes(config.blur_limit));
      const sigma = uniform(rng, config.sigma_limit);
      out.photometric.push({ kind: 'convolve', transform: 'GaussianBlur', ksize, sigma });
      return;
    }
    case 'InvertImg':
      // 255 - x: the pointwise map alpha x + beta * 255 with alpha -1, beta 1.
      out.photometric.push({ kind: 'pointwise', transform: config.type, alpha: -1, beta: 1, brightnessByMax: true, gamma: 1 });
      return;
    case 'GaussNoise': {
      const variance = uniform(rng, config.var_limit);
      out.photometric.push({ kind: 'noise', transform: config.type, mean: config.mean, std: Math.sqrt(variance), seed: rng.nextUint32() });
      return;
    }
  }
}

function drawBlur(config: BlurConfig, rng: Random, out: ImageAugmentation): void {
  const ksize = rng.pick(oddSizes(config.blur_limit));
  if (config.type === 'Blur') {
    out.photometric.push({ kind: 'convolve', transform: 'Blur', ksize });
  } else if (config.type === 'MedianBlur') {
    out.photometric.push({ kind: 'median', transform: 'MedianBlur', ksize });
  } else {
    // albumentations: a random line through the kernel (two distinct rows when vertical).
    const xs = rng.int(0, ksize - 1);
    const xe = rng.int(0, ksize - 1);
    let ys: number;
    let ye: number;
    if (xs === xe) {
      ys = rng.int(0, ksize - 1);
      ye = rng.int(0, ksize - 2);
      if (ye >= ys) ye += 1;
    } else {
      ys = rng.int(0, ksize - 1);
      ye = rng.int(0, ksize - 1);
    }
    out.photometric.push({ kind: 'convolve', transform: 'MotionBlur', ksize, line: [xs, ys, xe, ye] });
  }
}

/** Walks a (normalised) config for one image; `forced` skips the probability draw (OneOf's pick). */
export function drawImage(config: TransformConfig, rng: Random, frame: Frame, out: ImageAugmentation, forced = false): void {
  if (!forced && config.p < 1 && !(rng.next() < config.p)) return;
  switch (config.type) {
    case 'Compose':
      for (const child of config.transforms) drawImage(child, rng, frame, out);
      return;
    case 'OneOf': {
      // Children's p are the weights of the pick, as in albumentations.
      const total = config.transforms.reduce((s, t) => s + t.p, 0);
      if (total <= 0) return;
      let u = rng.next() * total;
      for (const child of config.transforms) {
        u -= child.p;
        if (u < 0) return drawImage(child, rng, frame, out, true);
      }
      return drawImage(config.transforms[config.transforms.length - 1] as TransformConfig, rng, frame, out, true);
    }
    case 'Normalize':
      return;
    default:
      return drawTransform(config, rng, frame, out);
  }
}

/**
 * Draws one record per image: image i uses its own stream forked from `rng` in order, so the plan
 * depends only on the stream's state, the batch size and the image size.
 */
export function samplePlan(config: TransformConfig, rng: Random, batchSize: number, height: number, width: number): ImageAugmentation[] {
  if (!(rng instanceof Random)) throw invalidParameterError('rng', 'a Random', rng);
  assertInteger('batchSize', batchSize, 0);
  assertInteger('height', height, 1);
  assertInteger('width', width, 1);
  const frame = { height, width };
  return Array.from({ length: batchSize }, () => {
    const out: ImageAugmentation = { applied: [], geometry: [], photometric: [] };
    drawImage(config, rng.fork(), frame, out);
    return out;
  });
}

/** OpenCV's fixed kernels for sigma <= 0 and ksize <= 9 (cv2.getGaussianKernel's small-kernel table). */
const SMALL_GAUSSIAN: Record<number, number[]> = {
  1: [1],
  3: [0.25, 0.5, 0.25],
  5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
  7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
  9: [0.015625, 0.05078125, 0.1171875, 0.19921875, 0.234375, 0.19921875, 0.1171875, 0.05078125, 0.015625],
};

/** cv2.getGaussianKernel(ksize, sigma): sigma <= 0 takes the fixed small kernels up to 9, else 0.3 ((ksize - 1) / 2 - 1) + 0.8. */
export function gaussianKernel1d(ksize: number, sigma: number): number[] {
  if (!(sigma > 0) && SMALL_GAUSSIAN[ksize]) return [...SMALL_GAUSSIAN[ksize]!];
  const s = sigma > 0 ? sigma : 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8;
  const c = (ksize - 1) / 2;
  const g = Array.from({ length: ksize }, (_, i) => Math.exp(-((i - c) ** 2) / (2 * s * s)));
  const sum = g.reduce((a, b) => a + b, 0);
  return g.map((v) => v / sum);
}

/** The separable Gaussian as a ksize x ksize correlation kernel, row-major. */
export function gaussianKernel2d(ksize: number, sigma: number): number[] {
  const g = gaussianKernel1d(ksize, sigma);
  return g.flatMap((a) => g.map((b) => a * b));
}

const GEOMETRIC_KIND = { affine: 0, elastic: 1, grid: 2, optical: 3 } as const;
const PHOTOMETRIC_KIND = { pointwise: 0, clahe: 1, convolve: 2, median: 3, noise: 4 } as const;
/** Layout version shared with native/augment/batch.cpp (decodePlan). */
export const PLAN_VERSION = 1;

/**
 * Flattens records into the Float64Array native/augment/batch.cpp decodes:
 * `[version, B]`, then per image `[nGeometric, nPhotometric]` followed by each geometric step as
 * `[kind, border, n, ...n params]` and each photometric step as `[kind, n, ...n params]`.
 */
export function encodePlan(plan: readonly ImageAugmentation[]): Float64Array {
  const out: number[] = [PLAN_VERSION, plan.length];
  for (const image of plan) {
    out.push(image.geometry.length, image.photometric.length);
    for (const g of image.geometry) {
      let params: number[];
      switch (g.kind) {
        case 'affine': params = [...g.matrix]; break;
        case 'elastic': params = [g.alpha, g.sigma, g.seed]; break;
        case 'grid': params = [g.numSteps, ...g.xSteps, ...g.ySteps]; break;
        case 'optical': params = [g.k, g.dx, g.dy]; break;
      }
      out.push(GEOMETRIC_KIND[g.kind], g.border, params.length, ...params);
    }
    for (const s of image.photometric) {
      let params: number[];
      switch (s.kind) {
        case 'pointwise': params = [s.alpha, s.beta, s.brightnessByMax ? 1 : 0, s.gamma]; break;
        case 'clahe': params = [s.clipLimit, s.tileGridSize[0], s.tileGridSize[1]]; break;
        case 'convolve':
          params = [s.ksize, ...(s.transform === 'GaussianBlur' ? gaussianKernel2d(s.ksize, s.sigma) : s.line ? lineKernel(s.ksize, s.line) : new Array<number>(s.ksize * s.ksize).fill(1 / (s.ksize * s.ksize)))];
          break;
        case 'median': params = [s.ksize]; break;
        case 'noise': params = [s.mean, s.std, s.seed]; break;
      }
      out.push(PHOTOMETRIC_KIND[s.kind], params.length, ...params);
    }
  }
  return Float64Array.from(out);
}
