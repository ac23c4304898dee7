/**
 * The augmentation pipelines of the competition's best solutions (SPEC section 4 and the second
 * place's write-up), as configs in albumentations' vocabulary.
 */
import { IMAGENET_MEAN, IMAGENET_STD } from './transforms.js';
import type { TransformInput } from './transforms.js';

/** Preset names for `AugmentPipeline.preset` and `--preset`. */
export const AUGMENT_PRESETS = ['first-place', 'second-place', '42nd-place', 'unetpp', 'none'] as const;
export type AugmentPreset = (typeof AUGMENT_PRESETS)[number];

/**
 * First place (sneddy): horizontal flip; one of contrast/gamma/brightness; one of elastic, grid
 * and optical distortion; shift-scale-rotate; ImageNet normalisation (3 channels).
 */
export const FIRST_PLACE: TransformInput = {
  type: 'Compose',
  transforms: [
    { type: 'HorizontalFlip', p: 0.5 },
    {
      type: 'OneOf',
      p: 0.3,
      transforms: [
        { type: 'RandomContrast', limit: 0.2 },
        { type: 'RandomGamma', gamma_limit: [80, 120] },
        { type: 'RandomBrightness', limit: 0.2 },
      ],
    },
    {
      type: 'OneOf',
      p: 0.3,
      transforms: [
        { type: 'ElasticTransform', alpha: 120, sigma: 120 * 0.05, alpha_affine: 120 * 0.03 },
        { type: 'GridDistortion' },
        { type: 'OpticalDistortion', distort_limit: 2, shift_limit: 0.5 },
      ],
    },
    { type: 'ShiftScaleRotate', shift_limit: 0.0625, scale_limit: 0.1, rotate_limit: 45, p: 0.5 },
    { type: 'Normalize', mean: IMAGENET_MEAN, std: IMAGENET_STD, max_pixel_value: 255 },
  ],
};

/**
 * Second place: one of gamma (60-120)/brightness-contrast/CLAHE (4x4), one of blur/motion/median
 * blur (kernel 3), horizontal flip, shift-scale-rotate with constant borders on every image,
 * ImageNet normalisation. (Its Resize is the load size here: images are read at the training size.)
 */
export const SECOND_PLACE: TransformInput = {
  type: 'Compose',
  transforms: [
    {
      type: 'OneOf',
      transforms: [
        { type: 'RandomGamma', gamma_limit: [60, 120], p: 0.9 },
        { type: 'RandomBrightnessContrast', brightness_limit: 0.2, contrast_limit: 0.2, p: 0.9 },
        { type: 'CLAHE', clip_limit: 4.0, tile_grid_size: [4, 4], p: 0.9 },
      ],
    },
    {
      type: 'OneOf',
      p: 0.5,
      transforms: [
        { type: 'Blur', blur_limit: 4, p: 1 },
        { type: 'MotionBlur', blur_limit: 4, p: 1 },
        { type: 'MedianBlur', blur_limit: 4, p: 1 },
      ],
    },
    { type: 'HorizontalFlip', p: 0.5 },
    { type: 'ShiftScaleRotate', shift_limit: 0.2, scale_limit: 0.2, rotate_limit: 20, interpolation: 1, border_mode: 0, p: 1 },
    { type: 'Normalize', mean: IMAGENET_MEAN, std: IMAGENET_STD, max_pixel_value: 255, p: 1 },
  ],
};

/**
 * 42nd place: horizontal flip, random crop and resize (the seed's README; its crop range is not
 * stated: RandomResizedCrop over 50-100% of the area, aspect 3/4-4/3, albumentations' defaults
 * otherwise), ImageNet normalisation.
 */
export const FORTY_SECOND_PLACE: TransformInput = {
  type: 'Compose',
  transforms: [
    { type: 'HorizontalFlip', p: 0.5 },
    { type: 'RandomResizedCrop', scale: [0.5, 1.0], p: 0.5 },
    { type: 'Normalize', mean: IMAGENET_MEAN, std: IMAGENET_STD, max_pixel_value: 255 },
  ],
};

/**
 * UNet++ / Keras solution (its data_aug.py): horizontal flip, colour inversion, Gaussian smoothing,
 * rotations, zooms and random gamma, ImageNet normalisation. The seed states the operations, not
 * their probabilities or ranges: these (p 0.5 flip, 0.2 inversion, 0.2 smoothing, +-15 degrees,
 * +-10% zoom, gamma 80-120) are chosen here.
 */
export const UNETPP: TransformInput = {
  type: 'Compose',
  transforms: [
    { type: 'HorizontalFlip', p: 0.5 },
    { type: 'InvertImg', p: 0.2 },
    { type: 'GaussianBlur', blur_limit: [3, 5], p: 0.2 },
    { type: 'ShiftScaleRotate', shift_limit: 0, scale_limit: 0.1, rotate_limit: 15, p: 0.5 },
    { type: 'RandomGamma', gamma_limit: [80, 120], p: 0.5 },
    { type: 'Normalize', mean: IMAGENET_MEAN, std: IMAGENET_STD, max_pixel_value: 255 },
  ],
};

/** No augmentation, ImageNet normalisation only (validation and inference). */
export const NO_AUGMENTATION: TransformInput = {
  type: 'Compose',
  transforms: [{ type: 'Normalize', mean: IMAGENET_MEAN, std: IMAGENET_STD, max_pixel_value: 255 }],
};

export const PRESETS: Record<AugmentPreset, TransformInput> = {
  'first-place': FIRST_PLACE,
  'second-place': SECOND_PLACE,
  '42nd-place': FORTY_SECOND_PLACE,
  unetpp: UNETPP,
  none: NO_AUGMENTATION,
};
