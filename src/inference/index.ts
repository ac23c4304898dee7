/**
 * Inference: post-processing (the triplet rule, region filtering, non_empty_ratio), the native
 * triplet search, and (as they land) the map store, blending, stacking and submission.
 */
export * from './postprocess.js';
export * from './thresholds.js';
export * from './maps.js';
export * from './resize.js';
export * from './search.js';
export * from './heatmap.js';
export * from './submit.js';
export * from './blend.js';
export * from './infer.js';
export * from './stacking.js';
export * from './swa.js';
