/**
 * pneumo-native: pneumothorax segmentation (SIIM-ACR) on LibTorch, from Node.
 *
 * The package root exports the typed public API. Native pieces (tensors, models, training) run
 * on the LibTorch addon; the data layer (DICOM, RLE, labels, folds, metrics) is TypeScript.
 */
export { packageVersion } from './core/package-info.js';
/** Seeded PRNG (xoshiro128**) with shuffle, randInt, normal and per-item seed derivation. */
export * as random from './core/random.js';
/** The SIIM RLE codec: `rle.encode(mask, w, h)`, `rle.decode(text, w, h, id?)`, unions, runs. */
export * as rle from './data/rle.js';
/** Train label files, sample submissions and the atomic submission writer. */
export * as labels from './data/labels.js';
/** Stratified folds (`fname,fold,exist_labels`) and `FoldSplit`. */
export * as folds from './data/folds.js';
/** The competition metric: `metrics.meanDice`, `metrics.evaluate`, `metrics.diceScore`. */
export * as metrics from './data/metrics.js';
/** DICOM: `dicom.read(pathOrBuffer, { size })`, `readHeader`, `findDicoms`, `writeDicom`, `DicomError`. */
export * as dicom from './data/dicom.js';
/** Training input from .dcm or prepared .png/.jpg: `images.loadImage(path, size)`. */
export * as images from './data/image-source.js';
/** Decode SIIM DICOMs to train/mask/test PNGs at one size: `prepare.prepare(options)`. */
export * as prepare from './data/prepare.js';
/** Synthetic SIIM-shaped data: `synth.synthesize(options)`, `synth.generateImage(spec)`. */
export * as synth from './data/synth/index.js';
