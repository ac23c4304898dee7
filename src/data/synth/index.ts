/**
 * Synthetic SIIM-shaped data: chest radiographs with pneumothorax ground truth, written as a
 * dataset in the SIIM layout (`synthesize`) or generated one at a time (`generateImage`).
 */
export { SYNTH_FILES, planDataset, synthesize } from './dataset.js';
export type { SynthEntry, SynthManifest, SynthOptions, SynthParameters, SynthReport } from './dataset.js';
export { generateImage, generateMasks, planImage } from './image.js';
export type { SynthImageSpec, SynthPlan, SynthSplit } from './image.js';
export { insideLung, lungLabels, sampleAnatomy } from './anatomy.js';
export type { Anatomy, Exposure, Lung } from './anatomy.js';
export { samplePneumothorax } from './pneumothorax.js';
export type { PneumothoraxRegion } from './pneumothorax.js';
export type { RenderedChest } from './render.js';
