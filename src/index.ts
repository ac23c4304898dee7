/**
 * pneumo-native: pneumothorax segmentation (SIIM-ACR) on LibTorch, from Node.
 *
 * The package root exports the typed public API. Native pieces (tensors, models, training) run
 * on the LibTorch addon; the data layer (DICOM, RLE, labels, folds, metrics) is TypeScript.
 */
export { packageVersion } from './core/package-info.js';
