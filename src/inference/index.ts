/**
 * Inference: the map store, blending, stacking, submission and checkpoint averaging, with the
 * scoring layer (`src/scoring/`: the triplet rule, region filtering, non_empty_ratio, the native
 * triplet search, resizing) that training and serving share.
 */
export * from '../scoring/triplet.js';
export * from '../scoring/postprocess.js';
export * from '../scoring/thresholds.js';
export { resizeBilinear, resizeMask } from '../scoring/resize.js';
export * from './maps.js';
export * from './search.js';
export * from './heatmap.js';
export * from './submit.js';
export * from './blend.js';
export * from './infer.js';
export * from './stacking.js';
export * from '../training/checkpoint-averaging.js';
