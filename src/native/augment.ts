/**
 * The augmentation slice of the N-API boundary: native/binding/augment.cc over
 * native/augment/augment_api.h.
 */
import type { NativeTensor } from './tensor.js';

/** Options of `augmentBatch` besides the plan (see native/augment/augment_api.h). */
export interface NativeAugmentOptions {
  /** Masks: bilinear then a 0.5 threshold (true) or nearest neighbour (false). */
  maskBilinear: boolean;
  /** datapath: CPU tensors resampled by the ATen path other devices run, not the fused CPU kernel (tests). */
  atenPath?: boolean;
  /** (x / maxPixelValue - mean[c]) / std[c]; otherwise the output keeps the 0-255 scale. */
  normalize: boolean;
  maxPixelValue: number;
  mean: number[];
  std: number[];
  /** Output channels: 1, or 3 (the gray image repeated). */
  channels: 1 | 3;
}

export interface NativeAugmentResult {
  /** float32 [B, channels, H, W]. */
  images: NativeTensor;
  /** float32 [B, 1, H, W] of 0/1, when masks were given. */
  masks?: NativeTensor;
}

/** The augmentation export. */
export interface AugmentBinding {
  /** Augments a uint8 (or float32 0-255) batch [B,1,H,W] (+ masks) following an encoded plan (src/training/augment/plan.ts). */
  augmentBatch(images: NativeTensor, masks: NativeTensor | null, plan: Float64Array, options: NativeAugmentOptions): Promise<NativeAugmentResult>;
}
