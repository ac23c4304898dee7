/**
 * Augmentation: albumentations-style pipelines drawn in TypeScript and applied natively per batch.
 * @module
 */
export { AugmentPipeline } from './pipeline.js';
export type { AugmentApplyOptions, AugmentedBatch } from './pipeline.js';
export { affineFromPoints, encodePlan, invertAffine, lineKernel, rotationMatrix, samplePlan, PLAN_VERSION } from './plan.js';
export type { AffineMatrix, GeometricStep, ImageAugmentation, PhotometricStep } from './plan.js';
export { AUGMENT_PRESETS, FIRST_PLACE, NO_AUGMENTATION, PRESETS, SECOND_PLACE } from './presets.js';
export type { AugmentPreset } from './presets.js';
export { AugmentConfigError, BORDER_MODES, IMAGENET_MEAN, IMAGENET_STD, TRANSFORM_NAMES, oddSizes, parseTransform } from './transforms.js';
export { closestName } from '../../core/edit-distance.js';
export type { BorderMode, ComposeConfig, NormalizeConfig, OneOfConfig, Range, TransformConfig, TransformInput, TransformName } from './transforms.js';
