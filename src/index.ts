/**
 * pneumo-native: pneumothorax segmentation (SIIM-ACR) on LibTorch, from Node.
 *
 * The package root exports the typed public API. Native pieces (tensors, models, training) run
 * on the LibTorch addon; the data layer (DICOM, RLE, labels, folds, metrics) is TypeScript.
 */
export { packageVersion } from './core/package-info.js';
/** LibTorch tensors owned by JS: `Tensor.from(typedArray, shape)`, async ops, `dispose()`. */
export { Tensor, DTYPES } from './core/tensor.js';
export type { DType, ReadableDType, TensorData, TensorOptions, TypedArrayFor } from './core/tensor.js';
/** The native runtime: threads, seeding, memory counters, the `info` report, the smoke pass. */
export {
  counters,
  defaultDevice,
  detectBlas,
  emptyCpuCache,
  getThreads,
  manualSeed,
  runtimeReport,
  setCpuCacheLimit,
  setCudnnOptions,
  cudaMemoryStats,
  setThreads,
  smokeTrain,
} from './core/runtime.js';
export type { BlasInfo, RuntimeReport, SmokeOptions } from './core/runtime.js';
export { NativeLoadError } from './native/binding.js';
export type { NativeCounters, NativeSmokeResult } from './native/binding.js';
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
/** Image batches as tensors, decoded natively: `batch.readImageBatch(paths, { size, normalize })`. */
export * as batch from './data/batch.js';
/** Images as training reads them: `images.loadImage(path, size)`, and the one image entry point `images.readImageInput` / `readImageFile` (`ImageInputError`). */
export * as images from './data/image-source.js';
/** Decode SIIM DICOMs to train/mask/test PNGs at one size: `prepare.prepare(options)`. */
export * as prepare from './data/prepare.js';
/** Synthetic SIIM-shaped data: `synth.synthesize(options)`, `synth.generateImage(spec)`. */
export * as synth from './data/synth/index.js';
/** Segmentation losses, native: `losses.lossForwardBackward('combo', logits, target, losses.COMBO_WEIGHTS.validation)`. */
export * as losses from './training/losses.js';
/** Optimizers over named tensors (Adam, AdamW, SGD, RAdam; groups, clipping, state): `optim.Optimizer.create(params, spec)`. */
export * as optim from './training/optimizers.js';
/** Learning-rate schedules with PyTorch semantics, serialisable: `schedules.CosineAnnealing`, `schedules.ReduceLROnPlateau`. */
export * as schedules from './training/schedules.js';
/** The model zoo: `models.Model.create({ backbone: 'unet_se50' })`, `models.Model.load(path)`, the registry, safetensors. */
export * as models from './models/index.js';
/** Augmentation: albumentations-style pipelines drawn in TS, applied natively per batch: `augment.AugmentPipeline.preset('first-place')`. */
export * as augment from './training/augment/index.js';
/** Epoch sampling: the first place's sliding sample rate, positive-only, balanced batches: `sampler.EpochSampler`. */
export * as sampler from './training/sampler.js';
/** PNG grids of augmented images with their masks: `preview.renderAugmentPreview(samples, options)`. */
export * as preview from './training/preview.js';
/** Experiment configs: `config.loadConfig(path, overrides)`, the schema, the first/second place recipes. */
export * as config from './training/config.js';
/** The native training step (forward + losses + backward + clip + optimizer step in one native call): `TrainEngine.create(model, options)`. */
export * as engine from './training/engine.js';
export { TrainEngine } from './training/engine.js';
export type { GraphStatus, LossTerm, LossTermKind, StepResult, TrainEngineOptions, TrainTask } from './training/engine.js';
/** Weight averaging (top-K averaging, SWA): `averageStateDicts(dicts, weights)`, then `model.recomputeBatchNorm(batches)`. */
export * as swa from './training/swa.js';
export { averageStateDicts } from './training/swa.js';
/** Data-parallel training over PyTorch's c10d: `distributed.ProcessGroup.init(env)` (torchrun's variables), epoch and validation sharding, the local launchers. */
export * as distributed from './distributed/index.js';
export * as launch from './distributed/launch.js';
/** Inference: the triplet rule, region filtering, non_empty_ratio, the native triplet search (`inference.summariseMaps`, `inference.scoreTriplets`). */
export * as inference from './inference/index.js';
/** Serving: `Segmenter.load(path, options)` (micro-batched, abortable predictions for other Node services) and the HTTP `SegmentServer`. */
export { Segmenter, DEFAULT_SERVE_TRIPLET, maskToPng } from './serve/segmenter.js';
export type { SegmenterOptions, ResolvedSegmenterOptions, SegmentOptions, SegmentResult, SegmentTimings, SegmenterStats, BatchEvent } from './serve/segmenter.js';
export { SegmenterError } from './serve/errors.js';
export type { SegmenterErrorCode } from './serve/errors.js';
export type { SegmenterInput, RawImage, InputFormat } from './serve/input.js';
export { SegmentServer } from './serve/server.js';
/** The Segmenter's request batching as a class of its own, for anything that batches single requests: `new MicroBatcher({ run, maxBatchSize, maxWaitMs })`. */
export { MicroBatcher, MicroBatcherError } from './core/micro-batcher.js';
export type { BatchItem, MicroBatch, MicroBatcherErrorCode, MicroBatcherErrors, MicroBatcherOptions, MicroBatcherStats } from './core/micro-batcher.js';
export type { SegmentServerOptions } from './serve/server.js';
/** The training loop of `pneumo-native train`: `trainer.trainExperiment(config, { resume, onEvent })`, `trainer.trainFold`. */
export * as trainer from './training/trainer.js';
/** Training batches read and augmented ahead of the step: `trainingData.BatchLoader`, `trainingData.openPreparedDataset`. */
export * as trainingData from './training/loader.js';
