/**
 * One synthetic image from `(seed, split, index)`: each image has its own PRNG streams, derived
 * from those three numbers, so images can be generated in any order, in parallel, or again on
 * resume, with identical results. Separate streams drive the anatomy, the pneumothorax and the
 * textures, so the ground truth can be recomputed without rendering (`generateMasks`).
 */
import { Random, deriveSeed } from '../../core/random.js';
import type { Seed } from '../../core/random.js';
import { lungLabels, sampleAnatomy } from './anatomy.js';
import type { Anatomy } from './anatomy.js';
import { rasterizePneumothorax, samplePneumothorax } from './pneumothorax.js';
import type { PneumothoraxRegion } from './pneumothorax.js';
import { renderChest } from './render.js';
import type { RenderedChest } from './render.js';

/** Which part of the dataset an image belongs to. */
export type SynthSplit = 'train' | 'test';

/** What identifies one synthetic image. */
export interface SynthImageSpec {
  seed: Seed;
  split: SynthSplit;
  index: number;
  /** Whether the image has pneumothorax (decided by the dataset plan). */
  positive: boolean;
  /** Width and height in pixels. */
  size: number;
}

/** The image's anatomy and pneumothorax regions (no pixels). */
export interface SynthPlan {
  anatomy: Anatomy;
  regions: PneumothoraxRegion[];
}

const SPLIT_CODE: Record<SynthSplit, number> = { train: 0, test: 1 };

/** The PRNG stream `stream` of an image. */
export function imageRandom(spec: Pick<SynthImageSpec, 'seed' | 'split' | 'index'>, stream: number): Random {
  return new Random(deriveSeed(spec.seed, SPLIT_CODE[spec.split], spec.index, stream));
}

/** Samples the anatomy and, for a positive image, its pneumothorax regions. */
export function planImage(spec: SynthImageSpec): SynthPlan {
  const anatomy = sampleAnatomy(imageRandom(spec, 0));
  const regions = spec.positive ? samplePneumothorax(imageRandom(spec, 1)) : [];
  return { anatomy, regions };
}

/** Renders the image and its ground truth. */
export function generateImage(spec: SynthImageSpec): RenderedChest & SynthPlan {
  const plan = planImage(spec);
  const rendered = renderChest(plan.anatomy, plan.regions, spec.size, imageRandom(spec, 2));
  return { ...rendered, ...plan };
}

/** The ground-truth masks only (one per region), without rendering the image. */
export function generateMasks(spec: SynthImageSpec): Uint8Array[] {
  const plan = planImage(spec);
  if (plan.regions.length === 0) return [];
  const labels = lungLabels(plan.anatomy, spec.size);
  return rasterizePneumothorax(plan.anatomy, plan.regions, labels, spec.size).masks;
}
