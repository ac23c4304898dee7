/**
 * The augmentation vocabulary: albumentations' transform names and parameter names, as plain
 * JSON-serialisable configs, with their defaults and validation. `parseTransform` turns what a
 * user wrote (our `{ "type": ... }` form, or albumentations' own `A.to_dict()` form with
 * `__class_fullname__`) into a normalised config with every parameter explicit.
 */
import { closestName } from '../../core/edit-distance.js';
import { describeValue, invalidParameterError, is } from '../../core/validate.js';

/** OpenCV border modes, as albumentations' `border_mode` takes them. */
export const BORDER_MODES = { BORDER_CONSTANT: 0, BORDER_REPLICATE: 1, BORDER_REFLECT: 2, BORDER_WRAP: 3, BORDER_REFLECT_101: 4 } as const;
/** 0 constant, 1 replicate, 2 reflect, 3 wrap, 4 reflect-101 (cv2 numbering). */
export type BorderMode = 0 | 1 | 2 | 3 | 4;

/** A (min, max) range; a single number x in a config means albumentations' `to_tuple(x)`. */
export type Range = [number, number];

export interface HorizontalFlipConfig {
  type: 'HorizontalFlip';
  p: number;
}
export interface VerticalFlipConfig {
  type: 'VerticalFlip';
  p: number;
}
export interface TransposeConfig {
  type: 'Transpose';
  p: number;
}
export interface RandomRotate90Config {
  type: 'RandomRotate90';
  p: number;
}
export interface ShiftScaleRotateConfig {
  type: 'ShiftScaleRotate';
  p: number;
  /** Fraction of the size; a number x means (-x, x). */
  shift_limit: Range;
  /** A number x means a scale in (1 - x, 1 + x); stored as that offset range (-x, x). */
  scale_limit: Range;
  /** Degrees, counter-clockwise positive. */
  rotate_limit: Range;
  border_mode: BorderMode;
}
export interface ElasticTransformConfig {
  type: 'ElasticTransform';
  p: number;
  alpha: number;
  sigma: number;
  alpha_affine: number;
  border_mode: BorderMode;
}
export interface GridDistortionConfig {
  type: 'GridDistortion';
  p: number;
  num_steps: number;
  distort_limit: Range;
  border_mode: BorderMode;
}
export interface OpticalDistortionConfig {
  type: 'OpticalDistortion';
  p: number;
  distort_limit: Range;
  shift_limit: Range;
  border_mode: BorderMode;
}
export interface RandomSizedCropConfig {
  type: 'RandomSizedCrop';
  p: number;
  min_max_height: Range;
  /** Output size: must equal the batch size when given (the output keeps the input size). */
  height?: number;
  width?: number;
  w2h_ratio: number;
}
export interface RandomResizedCropConfig {
  type: 'RandomResizedCrop';
  p: number;
  height?: number;
  width?: number;
  scale: Range;
  ratio: Range;
}
export interface ResizeConfig {
  type: 'Resize';
  p: number;
  height: number;
  width: number;
}
export interface RandomBrightnessContrastConfig {
  type: 'RandomBrightnessContrast';
  p: number;
  brightness_limit: Range;
  contrast_limit: Range;
  brightness_by_max: boolean;
}
export interface RandomContrastConfig {
  type: 'RandomContrast';
  p: number;
  limit: Range;
}
export interface RandomBrightnessConfig {
  type: 'RandomBrightness';
  p: number;
  limit: Range;
}
export interface RandomGammaConfig {
  type: 'RandomGamma';
  p: number;
  /** Percent: (80, 120) draws gamma in [0.8, 1.2). */
  gamma_limit: Range;
}
export interface ClaheConfig {
  type: 'CLAHE';
  p: number;
  /** A number x means (1, x). */
  clip_limit: Range;
  tile_grid_size: [number, number];
}
export interface BlurConfig {
  type: 'Blur' | 'MotionBlur' | 'MedianBlur';
  p: number;
  /** Odd kernel sizes in this range; a number x means (3, x). */
  blur_limit: Range;
}
/** Gaussian smoothing (cv2.GaussianBlur, reflect-101 borders), as albumentations' GaussianBlur. */
export interface GaussianBlurConfig {
  type: 'GaussianBlur';
  p: number;
  /** Odd kernel sizes in this range; a number x means (3, x). */
  blur_limit: Range;
  /** Sigma range; 0 derives sigma from the kernel size as OpenCV does (0.3 ((k - 1) / 2 - 1) + 0.8). */
  sigma_limit: Range;
}
/** Colour inversion: 255 - x (albumentations' InvertImg on 8-bit images). */
export interface InvertImgConfig {
  type: 'InvertImg';
  p: number;
}
export interface GaussNoiseConfig {
  type: 'GaussNoise';
  p: number;
  /** Variance on the 0-255 scale; a number x means (0, x). */
  var_limit: Range;
  mean: number;
}
export interface NormalizeConfig {
  type: 'Normalize';
  p: number;
  mean: number[];
  std: number[];
  max_pixel_value: number;
}
export interface ComposeConfig {
  type: 'Compose';
  p: number;
  transforms: TransformConfig[];
}
export interface OneOfConfig {
  type: 'OneOf';
  p: number;
  transforms: TransformConfig[];
}

/** Every transform config, normalised (all parameters explicit). */
export type TransformConfig =
  | HorizontalFlipConfig
  | VerticalFlipConfig
  | TransposeConfig
  | RandomRotate90Config
  | ShiftScaleRotateConfig
  | ElasticTransformConfig
  | GridDistortionConfig
  | OpticalDistortionConfig
  | RandomSizedCropConfig
  | RandomResizedCropConfig
  | ResizeConfig
  | RandomBrightnessContrastConfig
  | RandomContrastConfig
  | RandomBrightnessConfig
  | RandomGammaConfig
  | ClaheConfig
  | BlurConfig
  | GaussianBlurConfig
  | InvertImgConfig
  | GaussNoiseConfig
  | NormalizeConfig
  | ComposeConfig
  | OneOfConfig;

export type TransformName = TransformConfig['type'];

/** What a user may write: any parameter may be left out (defaults apply) or given as a scalar. */
export type TransformInput = { type: TransformName; [key: string]: unknown } | { __class_fullname__: string; [key: string]: unknown };

/** The mean and std of ImageNet, as albumentations' Normalize defaults to. */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];

type Reader = (raw: Record<string, unknown>, where: string) => TransformConfig;

/** Parameter names accepted per transform (besides `type`, `p`, and albumentations' bookkeeping keys). */
const PARAMETERS: Record<TransformName, readonly string[]> = {
  HorizontalFlip: [],
  VerticalFlip: [],
  Transpose: [],
  RandomRotate90: [],
  ShiftScaleRotate: ['shift_limit', 'scale_limit', 'rotate_limit', 'border_mode', 'interpolation', 'value', 'mask_value'],
  ElasticTransform: ['alpha', 'sigma', 'alpha_affine', 'border_mode', 'interpolation', 'value', 'mask_value', 'approximate'],
  GridDistortion: ['num_steps', 'distort_limit', 'border_mode', 'interpolation', 'value', 'mask_value'],
  OpticalDistortion: ['distort_limit', 'shift_limit', 'border_mode', 'interpolation', 'value', 'mask_value'],
  RandomSizedCrop: ['min_max_height', 'height', 'width', 'w2h_ratio', 'interpolation'],
  RandomResizedCrop: ['height', 'width', 'scale', 'ratio', 'interpolation'],
  Resize: ['height', 'width', 'interpolation'],
  RandomBrightnessContrast: ['brightness_limit', 'contrast_limit', 'brightness_by_max'],
  RandomContrast: ['limit'],
  RandomBrightness: ['limit'],
  RandomGamma: ['gamma_limit', 'eps'],
  CLAHE: ['clip_limit', 'tile_grid_size'],
  Blur: ['blur_limit'],
  MotionBlur: ['blur_limit'],
  MedianBlur: ['blur_limit'],
  GaussianBlur: ['blur_limit', 'sigma_limit'],
  InvertImg: [],
  GaussNoise: ['var_limit', 'mean'],
  Normalize: ['mean', 'std', 'max_pixel_value'],
  Compose: ['transforms', 'bbox_params', 'keypoint_params', 'additional_targets'],
  OneOf: ['transforms'],
};

/** Every transform name, for error messages and documentation. */
export const TRANSFORM_NAMES = Object.keys(PARAMETERS) as TransformName[];

const IGNORED_KEYS = new Set(['type', '__class_fullname__', 'p', 'always_apply', '__version__']);

/** Thrown for an invalid augmentation config; the message names the path of the bad value. */
export class AugmentConfigError extends TypeError {
  constructor(message: string) {
    super(message);
    this.name = 'AugmentConfigError';
  }
}

function fail(where: string, expected: string, actual: unknown): never {
  throw new AugmentConfigError(`Expected ${expected} for ${where} but received ${describeValue(actual)}`);
}

function num(raw: Record<string, unknown>, key: string, where: string, fallback: number, min = -Infinity, max = Infinity): number {
  const v = raw[key] ?? fallback;
  if (!is.number(v) || v < min || v > max) {
    fail(`${where}.${key}`, min === -Infinity && max === Infinity ? 'a finite number' : `a number between ${min} and ${max}`, v);
  }
  return v;
}

function int(raw: Record<string, unknown>, key: string, where: string, fallback: number, min: number): number {
  const v = raw[key] ?? fallback;
  if (!is.integer(v) || v < min) fail(`${where}.${key}`, `an integer >= ${min}`, v);
  return v;
}

/**
 * A range parameter: a [min, max] pair, or a number expanded as albumentations' to_tuple does:
 * `symmetric` gives (-x, x), otherwise (low, x).
 */
function range(raw: Record<string, unknown>, key: string, where: string, fallback: number | Range, scalar: 'symmetric' | { low: number }): Range {
  const v = raw[key] ?? fallback;
  let out: Range;
  if (is.number(v)) out = scalar === 'symmetric' ? [-Math.abs(v), Math.abs(v)] : [scalar.low, v];
  else if (Array.isArray(v) && v.length === 2 && is.number(v[0]) && is.number(v[1])) out = [v[0], v[1]];
  else fail(`${where}.${key}`, 'a number or a [min, max] pair', v);
  if (out[0] > out[1]) fail(`${where}.${key}`, 'a [min, max] pair with min <= max', v);
  return out;
}

function border(raw: Record<string, unknown>, where: string): BorderMode {
  const v = raw.border_mode ?? 4;
  if (!is.integer(v) || v < 0 || v > 4) fail(`${where}.border_mode`, 'a cv2 border mode 0-4 (constant, replicate, reflect, wrap, reflect-101)', v);
  return v as BorderMode;
}

function optionalSize(raw: Record<string, unknown>, key: string, where: string): number | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (!is.positiveInteger(v)) fail(`${where}.${key}`, 'a positive integer', v);
  return v;
}

/** Parameters we accept for compatibility but whose only supported value is the default. */
function onlyDefault(raw: Record<string, unknown>, where: string, key: string, allowed: readonly unknown[], why: string): void {
  if (raw[key] === undefined || raw[key] === null) return;
  if (!allowed.some((a) => JSON.stringify(a) === JSON.stringify(raw[key]))) {
    throw new AugmentConfigError(`${where}.${key} = ${describeValue(raw[key])} is not supported: ${why}`);
  }
}

function geometricCompat(raw: Record<string, unknown>, where: string): void {
  onlyDefault(raw, where, 'interpolation', [1], 'images are always interpolated bilinearly (cv2.INTER_LINEAR = 1)');
  onlyDefault(raw, where, 'value', [0, [0]], 'constant borders are filled with 0');
  onlyDefault(raw, where, 'mask_value', [0, [0]], 'constant mask borders are filled with 0');
}

function numberList(raw: Record<string, unknown>, key: string, where: string, fallback: number[]): number[] {
  const v = raw[key] ?? fallback;
  const list = is.number(v) ? [v] : v;
  if (!Array.isArray(list) || (list.length !== 1 && list.length !== 3) || !list.every((x) => is.number(x))) {
    fail(`${where}.${key}`, 'a number or an array of 1 or 3 numbers', v);
  }
  return [...(list as number[])];
}

const READERS: Record<TransformName, Reader> = {
  HorizontalFlip: (r, w) => ({ type: 'HorizontalFlip', p: num(r, 'p', w, 0.5, 0, 1) }),
  VerticalFlip: (r, w) => ({ type: 'VerticalFlip', p: num(r, 'p', w, 0.5, 0, 1) }),
  Transpose: (r, w) => ({ type: 'Transpose', p: num(r, 'p', w, 0.5, 0, 1) }),
  RandomRotate90: (r, w) => ({ type: 'RandomRotate90', p: num(r, 'p', w, 0.5, 0, 1) }),
  ShiftScaleRotate: (r, w) => {
    geometricCompat(r, w);
    return {
      type: 'ShiftScaleRotate',
      p: num(r, 'p', w, 0.5, 0, 1),
      shift_limit: range(r, 'shift_limit', w, 0.0625, 'symmetric'),
      scale_limit: range(r, 'scale_limit', w, 0.1, 'symmetric'),
      rotate_limit: range(r, 'rotate_limit', w, 45, 'symmetric'),
      border_mode: border(r, w),
    };
  },
  ElasticTransform: (r, w) => {
    geometricCompat(r, w);
    onlyDefault(r, w, 'approximate', [false], 'the displacement is always smoothed with the exact Gaussian filter');
    return {
      type: 'ElasticTransform',
      p: num(r, 'p', w, 0.5, 0, 1),
      alpha: num(r, 'alpha', w, 1),
      sigma: num(r, 'sigma', w, 50, 0),
      alpha_affine: num(r, 'alpha_affine', w, 50, 0),
      border_mode: border(r, w),
    };
  },
  GridDistortion: (r, w) => {
    geometricCompat(r, w);
    return {
      type: 'GridDistortion',
      p: num(r, 'p', w, 0.5, 0, 1),
      num_steps: int(r, 'num_steps', w, 5, 1),
      distort_limit: range(r, 'distort_limit', w, 0.3, 'symmetric'),
      border_mode: border(r, w),
    };
  },
  OpticalDistortion: (r, w) => {
    geometricCompat(r, w);
    return {
      type: 'OpticalDistortion',
      p: num(r, 'p', w, 0.5, 0, 1),
      distort_limit: range(r, 'distort_limit', w, 0.05, 'symmetric'),
      shift_limit: range(r, 'shift_limit', w, 0.05, 'symmetric'),
      border_mode: border(r, w),
    };
  },
  RandomSizedCrop: (r, w) => {
    onlyDefault(r, w, 'interpolation', [1], 'crops are resized bilinearly (cv2.INTER_LINEAR = 1)');
    if (r.min_max_height === undefined) fail(`${w}.min_max_height`, 'a [min, max] pair of crop heights', undefined);
    const config: RandomSizedCropConfig = {
      type: 'RandomSizedCrop',
      p: num(r, 'p', w, 1, 0, 1),
      min_max_height: range(r, 'min_max_height', w, [1, 1], { low: 1 }),
      w2h_ratio: num(r, 'w2h_ratio', w, 1, Number.MIN_VALUE),
    };
    const height = optionalSize(r, 'height', w);
    const width = optionalSize(r, 'width', w);
    if (height !== undefined) config.height = height;
    if (width !== undefined) config.width = width;
    if (config.min_max_height[0] < 1 || !Number.isInteger(config.min_max_height[0]) || !Number.isInteger(config.min_max_height[1])) {
      fail(`${w}.min_max_height`, 'a pair of positive integers', r.min_max_height);
    }
    return config;
  },
  RandomResizedCrop: (r, w) => {
    onlyDefault(r, w, 'interpolation', [1], 'crops are resized bilinearly (cv2.INTER_LINEAR = 1)');
    const config: RandomResizedCropConfig = {
      type: 'RandomResizedCrop',
      p: num(r, 'p', w, 1, 0, 1),
      scale: range(r, 'scale', w, [0.08, 1], { low: 0.08 }),
      ratio: range(r, 'ratio', w, [3 / 4, 4 / 3], { low: 3 / 4 }),
    };
    if (config.scale[0] <= 0 || config.scale[1] > 1) fail(`${w}.scale`, 'an area fraction range within (0, 1]', r.scale);
    if (config.ratio[0] <= 0) fail(`${w}.ratio`, 'a positive aspect-ratio range', r.ratio);
    const height = optionalSize(r, 'height', w);
    const width = optionalSize(r, 'width', w);
    if (height !== undefined) config.height = height;
    if (width !== undefined) config.width = width;
    return config;
  },
  Resize: (r, w) => {
    onlyDefault(r, w, 'interpolation', [1], 'images are resized bilinearly (cv2.INTER_LINEAR = 1)');
    const height = optionalSize(r, 'height', w);
    const width = optionalSize(r, 'width', w);
    if (height === undefined || width === undefined) fail(`${w}.height/width`, 'positive integers', r.height ?? r.width);
    return { type: 'Resize', p: num(r, 'p', w, 1, 0, 1), height, width };
  },
  RandomBrightnessContrast: (r, w) => {
    const byMax = r.brightness_by_max ?? true;
    if (!is.bool(byMax)) fail(`${w}.brightness_by_max`, 'a boolean', byMax);
    return {
      type: 'RandomBrightnessContrast',
      p: num(r, 'p', w, 0.5, 0, 1),
      brightness_limit: range(r, 'brightness_limit', w, 0.2, 'symmetric'),
      contrast_limit: range(r, 'contrast_limit', w, 0.2, 'symmetric'),
      brightness_by_max: byMax,
    };
  },
  RandomContrast: (r, w) => ({ type: 'RandomContrast', p: num(r, 'p', w, 0.5, 0, 1), limit: range(r, 'limit', w, 0.2, 'symmetric') }),
  RandomBrightness: (r, w) => ({ type: 'RandomBrightness', p: num(r, 'p', w, 0.5, 0, 1), limit: range(r, 'limit', w, 0.2, 'symmetric') }),
  RandomGamma: (r, w) => {
    const v = r.gamma_limit ?? [80, 120];
    if (!Array.isArray(v)) fail(`${w}.gamma_limit`, 'a [min, max] pair in percent such as [80, 120]', v);
    const limit = range(r, 'gamma_limit', w, [80, 120], 'symmetric');
    if (limit[0] <= 0) fail(`${w}.gamma_limit`, 'percentages > 0', v);
    return { type: 'RandomGamma', p: num(r, 'p', w, 0.5, 0, 1), gamma_limit: limit };
  },
  CLAHE: (r, w) => {
    const tiles = r.tile_grid_size ?? [8, 8];
    if (!Array.isArray(tiles) || tiles.length !== 2 || !tiles.every((t) => is.positiveInteger(t))) fail(`${w}.tile_grid_size`, 'a pair of positive integers', tiles);
    const clip = range(r, 'clip_limit', w, 4, { low: 1 });
    if (clip[0] < 0) fail(`${w}.clip_limit`, 'non-negative clip limits', r.clip_limit);
    return { type: 'CLAHE', p: num(r, 'p', w, 0.5, 0, 1), clip_limit: clip, tile_grid_size: [tiles[0] as number, tiles[1] as number] };
  },
  Blur: (r, w) => blurReader('Blur', r, w),
  MotionBlur: (r, w) => blurReader('MotionBlur', r, w),
  MedianBlur: (r, w) => blurReader('MedianBlur', r, w),
  GaussianBlur: (r, w) => {
    const limit = range(r, 'blur_limit', w, [3, 7], { low: 3 });
    if (limit[1] < 3 || limit[0] < 1) fail(`${w}.blur_limit`, 'kernel sizes >= 3 (a number x means 3..x)', r.blur_limit);
    if (oddSizes(limit).length === 0) fail(`${w}.blur_limit`, 'a range containing an odd kernel size', r.blur_limit);
    const sigma = range(r, 'sigma_limit', w, 0, { low: 0 });
    if (sigma[0] < 0) fail(`${w}.sigma_limit`, 'non-negative sigmas', r.sigma_limit);
    return { type: 'GaussianBlur', p: num(r, 'p', w, 0.5, 0, 1), blur_limit: limit, sigma_limit: sigma };
  },
  InvertImg: (r, w) => ({ type: 'InvertImg', p: num(r, 'p', w, 0.5, 0, 1) }),
  GaussNoise: (r, w) => {
    const limit = range(r, 'var_limit', w, [10, 50], { low: 0 });
    if (limit[0] < 0) fail(`${w}.var_limit`, 'non-negative variances', r.var_limit);
    return { type: 'GaussNoise', p: num(r, 'p', w, 0.5, 0, 1), var_limit: limit, mean: num(r, 'mean', w, 0) };
  },
  Normalize: (r, w) => {
    const mean = numberList(r, 'mean', w, IMAGENET_MEAN);
    const std = numberList(r, 'std', w, IMAGENET_STD);
    if (std.some((s) => s === 0)) fail(`${w}.std`, 'nonzero standard deviations', r.std);
    if (mean.length !== std.length && mean.length !== 1 && std.length !== 1) fail(`${w}.std`, `${mean.length} values like mean`, r.std);
    return { type: 'Normalize', p: num(r, 'p', w, 1, 0, 1), mean, std, max_pixel_value: num(r, 'max_pixel_value', w, 255, Number.MIN_VALUE) };
  },
  Compose: (r, w) => ({ type: 'Compose', p: num(r, 'p', w, 1, 0, 1), transforms: children(r, w) }),
  OneOf: (r, w) => {
    const transforms = children(r, w);
    if (transforms.length === 0) fail(`${w}.transforms`, 'at least one transform', r.transforms);
    return { type: 'OneOf', p: num(r, 'p', w, 0.5, 0, 1), transforms };
  },
};

function blurReader(type: BlurConfig['type'], r: Record<string, unknown>, w: string): BlurConfig {
  const limit = range(r, 'blur_limit', w, 7, { low: 3 });
  if (limit[1] < 3 || limit[0] < 1) fail(`${w}.blur_limit`, 'kernel sizes >= 3 (a number x means 3..x)', r.blur_limit);
  if (oddSizes(limit).length === 0) fail(`${w}.blur_limit`, 'a range containing an odd kernel size', r.blur_limit);
  return { type, p: num(r, 'p', w, 0.5, 0, 1), blur_limit: limit };
}

/** The odd kernel sizes in a blur_limit range (albumentations draws from these). */
export function oddSizes(limit: Range): number[] {
  const out: number[] = [];
  for (let k = Math.ceil(limit[0]); k <= limit[1]; k++) if (k % 2 === 1) out.push(k);
  return out;
}

function children(raw: Record<string, unknown>, where: string): TransformConfig[] {
  const list = raw.transforms;
  if (!Array.isArray(list)) fail(`${where}.transforms`, 'an array of transforms', list);
  return list.map((item, i) => parseTransformAt(item, `${where}.transforms[${i}]`));
}

function transformName(raw: Record<string, unknown>, where: string): TransformName {
  let name: unknown = raw.type;
  if (name === undefined && is.string(raw.__class_fullname__)) name = raw.__class_fullname__.split('.').pop();
  if (!is.string(name)) fail(`${where}.type`, 'a transform name', name);
  if (!(TRANSFORM_NAMES as string[]).includes(name)) {
    const closest = closestName(name, TRANSFORM_NAMES);
    throw new AugmentConfigError(`Unknown transform "${name}" at ${where}${closest ? `: did you mean "${closest}"?` : ''} (known: ${TRANSFORM_NAMES.join(', ')})`);
  }
  return name as TransformName;
}

function parseTransformAt(value: unknown, where: string): TransformConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(where, 'a transform object', value);
  const raw = value as Record<string, unknown>;
  const name = transformName(raw, where);
  const allowed = PARAMETERS[name];
  for (const key of Object.keys(raw)) {
    if (IGNORED_KEYS.has(key) || allowed.includes(key)) continue;
    const closest = closestName(key, [...allowed, 'p']);
    throw new AugmentConfigError(`Unknown parameter "${key}" for ${name} at ${where}${closest ? `: did you mean "${closest}"?` : ''}`);
  }
  if (raw.always_apply === true) return READERS[name]({ ...raw, p: 1 }, where);
  return READERS[name](raw, where);
}

/**
 * Validates and normalises one transform config (recursively for Compose and OneOf). Accepts
 * `{ "type": "ShiftScaleRotate", ... }` or albumentations' serialised form; an albumentations
 * `A.to_dict()` document (`{ "__version__", "transform": {...} }`) is unwrapped.
 *
 * @throws AugmentConfigError naming the path of the bad value and, for a misspelt transform or
 * parameter, the closest valid name
 */
export function parseTransform(value: unknown): TransformConfig {
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && 'transform' in value && !('type' in value)) {
    return parseTransformAt((value as { transform: unknown }).transform, 'transform');
  }
  if (Array.isArray(value)) return READERS.Compose({ transforms: value }, 'pipeline');
  if (typeof value !== 'object' || value === null) throw invalidParameterError('pipeline', 'a transform object or an array of transforms', value);
  return parseTransformAt(value, 'pipeline');
}
