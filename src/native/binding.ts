/**
 * The TypeScript side of the N-API boundary: the exact shape of what `native/binding.cc` exports,
 * and the loader that finds the compiled addon. Nothing else in the package touches the addon
 * object directly; keep this file and binding.cc in step.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join } from 'node:path';
import { packageRoot, packageVersion } from '../core/package-info.js';
import type { NativeStoreBinding } from './store.js';

/** Element type names shared with the native side. */
export type NativeDType = 'uint8' | 'int8' | 'int16' | 'int32' | 'int64' | 'float16' | 'bfloat16' | 'float32' | 'float64' | 'bool';

/** The wrapped at::Tensor. Getters and methods throw once the tensor is disposed. */
export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: NativeDType;
  readonly device: string;
  readonly nbytes: number;
  readonly disposed: boolean;
  dispose(): void;
  toTypedArraySync(dtype?: NativeDType): NativeTypedArray;
  toTypedArray(dtype?: NativeDType): Promise<NativeTypedArray>;
  /** The elements, then disposes the tensor; zero-copy when it solely owns contiguous CPU storage. */
  takeTypedArray(dtype?: NativeDType): NativeTypedArray;
  to(device: string, dtype?: NativeDType): Promise<NativeTensor>;
  item(): Promise<number>;
}

export type NativeTypedArray = Uint8Array | Int8Array | Int16Array | Int32Array | BigInt64Array | Float32Array | Float64Array;

export interface NativeCudaDevice {
  index: number;
  name: string;
  totalMemory: number;
  computeCapability: string;
  multiProcessors: number;
}

export interface NativeCudnnOptions {
  benchmark: boolean;
  deterministic: boolean;
  allowTf32: boolean;
}

/** Bytes held by the CUDA caching allocator for one device. */
export interface NativeCudaMemoryStats {
  allocated: number;
  peakAllocated: number;
  reserved: number;
  peakReserved: number;
}

export interface NativeRuntimeInfo {
  torchVersion: string;
  builtWithCuda: boolean;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  cudnnAvailable: boolean;
  cudnnVersion: number;
  cudaDevices: NativeCudaDevice[];
  intraOpThreads: number;
  interOpThreads: number;
  mkldnn: boolean;
  openmp: boolean;
  parallelInfo: string;
  buildConfig: string;
}

export interface NativeSmokeResult {
  losses: number[];
  msPerStep: number;
  gradientsFinite: boolean;
  gradientNorm: number;
  parameters: number;
  device: string;
}

export interface NativeCounters {
  /** Native tasks waiting for a thread-pool slot. */
  queued: number;
  /** Native tasks executing now. */
  running: number;
  /** Tensor wrappers neither disposed nor finalized. */
  liveTensors: number;
  /** CPU tensor bytes currently reported to V8 as external memory. */
  externalBytes: number;
  /** Bytes of large CPU blocks in use by tensors (the caching allocator). */
  cpuLiveBytes: number;
  /** Bytes of large CPU blocks kept for reuse. */
  cpuCachedBytes: number;
  cpuCacheLimitBytes: number;
  cpuCacheHits: number;
  cpuCacheMisses: number;
}

/** Everything the addon exports. */
// ---- models ----

/** What `createModel` builds (see native/models/model_api.h, ModelSpec). */
export interface NativeModelSpec {
  architecture: string;
  encoder: string;
  encoderPath?: string;
  decoderChannels?: number[];
  classes?: number;
  inChannels?: number;
  classificationHead?: boolean;
  channelsLast?: boolean;
  /** "fp32" | "bf16" | "fp16" (resolved; no "auto"). */
  precision?: string;
  /** Stored verbatim in checkpoints and exports. */
  json?: string;
}

export interface NativeEncoderInfo {
  channels: number[];
  strides: number[];
  requiredDivisor: number;
}

export interface NativeParameterCounts {
  total: number;
  encoder: number;
  decoder: number;
  trainable: number;
}

export interface NativeStateDictReport {
  loaded: number;
  missing: string[];
  unexpected: string[];
}

export interface NativeGradientReport {
  loss: number;
  gradientNorm: number;
  finite: boolean;
  trainableTensors: number;
  tensorsWithGradient: number;
  tensorsWithNonzeroGradient: number;
}

export type NativeNamedTensors = [string, NativeTensor][];

/** The wrapped pn::Model (a TorchScript module built natively). Throws once disposed. */
export interface NativeModel {
  readonly disposed: boolean;
  readonly training: boolean;
  readonly encoderFrozen: boolean;
  readonly device: string;
  readonly specJson: string;
  readonly encoderInfo: NativeEncoderInfo;
  dispose(): void;
  forward(input: NativeTensor): Promise<{ mask: NativeTensor; label?: NativeTensor }>;
  encode(input: NativeTensor): Promise<NativeTensor[]>;
  train(on: boolean): void;
  freezeEncoder(frozen: boolean): void;
  /** Sets the resolved precision and the spec JSON saved with the model. */
  setPrecision(precision: string, specJson: string): void;
  parameterCounts(): NativeParameterCounts;
  to(device: string): Promise<void>;
  stateDict(): Promise<NativeNamedTensors>;
  loadStateDict(tensors: NativeNamedTensors, prefix: string, strict: boolean): Promise<NativeStateDictReport>;
  saveCheckpoint(path: string, metadataJson: string, optimizer?: NativeNamedTensors): Promise<void>;
  exportTorchScript(path: string): Promise<void>;
  gradientStep(input: NativeTensor, lr: number, statistics?: boolean): Promise<NativeGradientReport>;
  setInferenceOptimization(enabled: boolean): void;
}

export interface NativeLoadedModel {
  model: NativeModel;
  kind: 'checkpoint' | 'export';
  metadataJson: string;
  optimizer: NativeNamedTensors;
}

export interface NativeSafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

// ---- augmentation ----

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

// ---- losses and optimizers ----

/** Loss names of `lossForwardBackward` (native/losses/loss_api.h). */
export type NativeLossKind = 'combo' | 'combo-reference' | 'soft-dice' | 'balanced-bce' | 'lovasz';

/** Options of every loss kind; each kind reads its own (defaults in loss_api.h). */
export interface NativeLossOptions {
  bceWeight?: number;
  diceWeight?: number;
  focalWeight?: number;
  perImageDice?: boolean;
  smooth?: number;
  alpha?: number;
  positiveMargin?: number;
  negativeMargin?: number;
  symmetric?: boolean;
}

export interface NativeLossResult {
  loss: number;
  grad: NativeTensor;
}

/** What `createOptimizer` builds (native/optim/optim_api.h, OptimizerSpec). */
export interface NativeOptimizerSpec {
  algorithm: 'adam' | 'adamw' | 'sgd' | 'radam';
  lr?: number;
  weightDecay?: number;
  decayBiasesAndNorms?: boolean;
  beta1?: number;
  beta2?: number;
  eps?: number;
  amsgrad?: boolean;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  /** [name prefix, lr] pairs; the first match wins. */
  lrRules?: [string, number][];
}

export interface NativeOptimizerGroup {
  name: string;
  lr: number;
  initialLr: number;
  weightDecay: number;
  parameters: string[];
}

/** An opaque, type-tagged handle to a native optimizer. */
export interface NativeOptimizerHandle {
  readonly __brand: 'NativeOptimizerHandle';
}

// The prepared image store's reader: src/native/store.ts (native/binding_store.cc).
export interface NativeBinding extends NativeStoreBinding {}

export interface NativeBinding {
  version: string;
  napiVersion: number;
  fromTypedArray(data: ArrayBufferView, shape: number[], dtype: NativeDType, device: string): NativeTensor;
  filled(fill: 'zeros' | 'ones' | 'rand' | 'randn', shape: number[], dtype: NativeDType, device: string): Promise<NativeTensor>;
  binary(op: 'add' | 'sub' | 'mul' | 'div' | 'matmul', a: NativeTensor, b: NativeTensor): Promise<NativeTensor>;
  reduce(op: 'sum' | 'mean' | 'max' | 'min', a: NativeTensor, dims: number[], keepDim: boolean): Promise<NativeTensor>;
  reshape(a: NativeTensor, shape: number[]): NativeTensor;
  clone(a: NativeTensor): Promise<NativeTensor>;
  normalizeU8(images: NativeTensor, mean: number, std: number): Promise<NativeTensor>;
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  manualSeed(seed: number | bigint): void;
  setCudnnOptions(benchmark?: boolean, deterministic?: boolean, allowTf32?: boolean): NativeCudnnOptions;
  cudaMemoryStats(device: number, resetPeak: boolean): NativeCudaMemoryStats;
  runtimeInfo(): Promise<NativeRuntimeInfo>;
  smokeTrain(batch: number, size: number, steps: number, device: string, seed: number): Promise<NativeSmokeResult>;
  counters(): NativeCounters;
  setCpuCacheLimit(bytes: number): void;
  /** Whether the addon was built with libjpeg-turbo. */
  hasTurboJpeg: boolean;
  // ---- datapath ----
  /** Whether the addon was built with libpng (gray PNGs decoded natively by readImageFiles). */
  hasLibPng?: boolean;
  // ---- end datapath ----
  /** Decodes JPEG streams / resizes raw 8-bit pixels into one [B,1,size,size] tensor. */
  decodeImageBatch(
    sources: ({ data: Uint8Array; jpeg: true } | { data: Uint8Array; jpeg: false; width: number; height: number })[],
    size: number,
    normalize: boolean,
    mean: number,
    std: number,
    /** A boolean, or a flag set: 1 accept damaged JPEG, 2 threshold masks at 128 (datapath). */
    acceptDamagedJpeg?: boolean | number,
  ): Promise<NativeTensor>;
  /** Decodes sources[k] into row rows[k] of `into` (a [B,1,size,size] batch of the options' dtype). */
  decodeImageBatchInto(
    into: NativeTensor,
    rows: number[],
    sources: ({ data: Uint8Array; jpeg: true } | { data: Uint8Array; jpeg: false; width: number; height: number })[],
    size: number,
    normalize: boolean,
    mean: number,
    std: number,
    /** A boolean, or a flag set: 1 accept damaged JPEG, 2 threshold masks at 128 (datapath). */
    acceptDamagedJpeg?: boolean | number,
  ): Promise<void>;
  /**
   * Reads JPEG files and SIIM-like JPEG DICOMs natively into one [B,1,size,size] tensor; the
   * indices of every other file (zero rows) come back in `fallback` for the full reader.
   */
  readImageFiles(
    paths: string[],
    size: number,
    normalize: boolean,
    mean: number,
    std: number,
    /** A boolean, or a flag set: 1 accept damaged JPEG, 2 threshold masks at 128 (datapath). */
    acceptDamagedJpeg?: boolean | number,
    into?: NativeTensor,
  ): Promise<{ images?: NativeTensor; fallback: number[] }>;
  emptyCpuCache(): void;
  // ---- models ----
  createModel(spec: NativeModelSpec, device: string): Promise<NativeModel>;
  loadModel(path: string, device: string): Promise<NativeLoadedModel>;
  readStateDict(path: string): Promise<NativeNamedTensors>;
  writeStateDict(path: string, tensors: NativeNamedTensors): Promise<void>;
  readSafetensors(path: string, dataOffset: number, entries: NativeSafetensorsEntry[]): Promise<NativeNamedTensors>;
  // ---- augmentation ----
  /** Augments a uint8 (or float32 0-255) batch [B,1,H,W] (+ masks) following an encoded plan (src/training/augment/plan.ts). */
  augmentBatch(images: NativeTensor, masks: NativeTensor | null, plan: Float64Array, options: NativeAugmentOptions): Promise<NativeAugmentResult>;
  // ---- losses and optimizers ----
  lossForwardBackward(kind: NativeLossKind, logits: NativeTensor, target: NativeTensor, options?: NativeLossOptions): Promise<NativeLossResult>;
  createOptimizer(parameters: [string, NativeTensor][], spec: NativeOptimizerSpec): NativeOptimizerHandle;
  optimizerDispose(optimizer: NativeOptimizerHandle): void;
  optimizerStep(optimizer: NativeOptimizerHandle): Promise<void>;
  optimizerZeroGrad(optimizer: NativeOptimizerHandle): void;
  optimizerGradNorm(optimizer: NativeOptimizerHandle): Promise<number>;
  optimizerClipGradNorm(optimizer: NativeOptimizerHandle, maxNorm: number): Promise<number>;
  optimizerGroups(optimizer: NativeOptimizerHandle): NativeOptimizerGroup[];
  optimizerSetLr(optimizer: NativeOptimizerHandle, group: number, lr: number): void;
  optimizerScaleLr(optimizer: NativeOptimizerHandle, factor: number): void;
  optimizerStateDict(optimizer: NativeOptimizerHandle): Promise<[string, NativeTensor][]>;
  optimizerLoadStateDict(optimizer: NativeOptimizerHandle, state: [string, NativeTensor][]): Promise<void>;
  makeParameter(value: NativeTensor): NativeTensor;
  setGradient(parameter: NativeTensor, gradient: NativeTensor, accumulate: boolean): void;
  gradientOf(parameter: NativeTensor): NativeTensor | undefined;
}

// ---- training engine, prediction, SWA (native/train/train_api.h) ----

/** One term of the engine's segmentation loss: weight * kind(mask logits, masks). */
export interface NativeLossTerm {
  kind: NativeLossKind;
  weight?: number;
  options?: NativeLossOptions;
}

/** What `createTrainEngine` builds (native/train/train_api.h, TrainEngineSpec). */
export interface NativeTrainEngineSpec {
  optimizer: NativeOptimizerSpec;
  loss: NativeLossTerm[];
  accumulation?: number;
  gradClip?: number;
  task?: 'segment' | 'classify';
  /** Default 1 for classify, 0 (no label loss) for segment. */
  labelWeight?: number;
  /** bisenet: weight of the loss on each auxiliary head's output (default 0.4). */
  auxWeight?: number;
  maskWeight?: number;
  scaler?: NativeGradScalerSpec;
  /** Whole-step CUDA graphs (native/train/graphs.cpp); default 'auto'. */
  cudaGraphs?: 'auto' | 'on' | 'off';
}

/** See native/train/train_api.h, ModelGraphStatus. */
export interface NativeModelGraphStatus {
  graphs: number;
  captures: number;
  replays: number;
  eagerCalls: number;
  reason: string;
}

/** See native/train/train_api.h, TrainEngineGraphStatus. */
export interface NativeGraphStatus {
  mode: 'auto' | 'on' | 'off';
  active: boolean;
  captures: number;
  replays: number;
  eagerSteps: number;
  reason: string;
}

/** See native/train/train_api.h, GradScalerSpec. */
export interface NativeGradScalerSpec {
  mode?: 'auto' | 'on' | 'off';
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
}

export interface NativeTrainStepResult {
  loss: number;
  gradNorm: number;
  finite: boolean;
  stepped: boolean;
  lossScale: number;
  overflow: boolean;
  graphed: boolean;
}

/** An opaque, type-tagged handle to a native training engine. */
export interface NativeTrainEngineHandle {
  readonly __brand: 'NativeTrainEngineHandle';
}

/** An opaque, type-tagged handle to a BatchNorm recompute in progress. */
export interface NativeBatchNormHandle {
  readonly __brand: 'NativeBatchNormHandle';
}

/** The training exports (merged into NativeBinding). */
export interface NativeBinding {
  /** Eval-mode sigmoid probabilities, optionally with flip TTA as one batched forward. */
  modelPredict(model: NativeModel, input: NativeTensor, tta: boolean, cudaGraph?: boolean): Promise<{ mask: NativeTensor; label?: NativeTensor }>;
  /** The model's predict CUDA graphs (native/train/train_api.h, ModelGraphStatus). */
  modelGraphStatus(model: NativeModel): NativeModelGraphStatus;
  createTrainEngine(model: NativeModel, spec: NativeTrainEngineSpec): NativeTrainEngineHandle;
  trainEngineDispose(engine: NativeTrainEngineHandle): void;
  trainEngineStep(engine: NativeTrainEngineHandle, images: NativeTensor, masks: NativeTensor, labels?: NativeTensor): Promise<NativeTrainStepResult>;
  trainEngineGraphStatus(engine: NativeTrainEngineHandle): NativeGraphStatus;
  trainEngineGroups(engine: NativeTrainEngineHandle): NativeOptimizerGroup[];
  trainEngineSetLr(engine: NativeTrainEngineHandle, group: number, lr: number): void;
  trainEngineScaleLr(engine: NativeTrainEngineHandle, factor: number): void;
  trainEngineOptimizerState(engine: NativeTrainEngineHandle): Promise<NativeNamedTensors>;
  trainEngineLoadOptimizerState(engine: NativeTrainEngineHandle, state: NativeNamedTensors): Promise<void>;
  trainEnginePending(engine: NativeTrainEngineHandle): number;
  averageStateDicts(dicts: NativeNamedTensors[], weights?: number[]): Promise<NativeNamedTensors>;
  batchNormRecomputeBegin(model: NativeModel): Promise<NativeBatchNormHandle>;
  batchNormRecomputeAdd(session: NativeBatchNormHandle, batch: NativeTensor): Promise<number>;
  /** Returns the number of BatchNorm layers updated. */
  batchNormRecomputeFinish(session: NativeBatchNormHandle): Promise<number>;
  batchNormRecomputeAbort(session: NativeBatchNormHandle): Promise<void>;
}

// ---- end training engine, prediction, SWA ----

/** Thrown when the compiled addon cannot be loaded; the message names the cause and the fix. */
export class NativeLoadError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'NativeLoadError';
  }
}

/** What the loader's message says about LibTorch on this machine now. */
export interface LibTorchStatus {
  found: boolean;
  /** `LibTorch 1.13.1 (debian libtorch-dev) at /usr/lib/.../cmake/Torch`, or why none was found. */
  description: string;
}

/**
 * Runs the package's LibTorch discovery (scripts/libtorch.mjs, the same one the build uses) in a
 * child process: only on the error path, so the seconds Python's torch may take to import are spent
 * only when the addon did not load.
 */
export function discoverLibTorch(): LibTorchStatus {
  let script: string;
  try {
    script = join(packageRoot(), 'scripts', 'libtorch.mjs');
  } catch {
    return { found: false, description: 'not checked (package root not found)' };
  }
  if (!existsSync(script)) return { found: false, description: `not checked (${script} is missing)` };
  const r = spawnSync(process.execPath, [script, '--json'], { encoding: 'utf8', timeout: 120_000 });
  if (r.status === 0) {
    try {
      const t = JSON.parse(r.stdout) as { source: string; cmakeDir: string; version?: string };
      return { found: true, description: `found, LibTorch ${t.version ?? '(version unknown)'} (${t.source}) at ${t.cmakeDir}` };
    } catch {
      // fall through
    }
  }
  const first = (r.stderr || r.error?.message || '').trim().split('\n')[0] || `discovery exited with ${r.status}`;
  return { found: false, description: `not found: ${first.replace(/^pneumo-native: /, '')}` };
}

/**
 * The command that builds the addon where it is: `npm run build:native` in a clone of this
 * repository, `npx pneumo-native build` where it is installed as a dependency.
 */
export function buildCommand(root: string): string {
  return existsSync(join(root, 'src', 'index.ts')) && existsSync(join(root, 'tsconfig.json')) ? 'npm run build:native' : 'npx pneumo-native build';
}

/** The lines naming LibTorch's state and the fix (the build command, LIBTORCH / Torch_DIR). */
function fixLines(root: string, torch: LibTorchStatus, what = 'build it'): string[] {
  const cmd = buildCommand(root);
  const alt = cmd === 'npx pneumo-native build' ? ' (or `npm rebuild pneumo-native`)' : '';
  if (torch.found) {
    return [
      `LibTorch: ${torch.description}.`,
      `Fix: ${what} with \`${cmd}\`${alt}. To use another LibTorch, set LIBTORCH=<an unzipped libtorch/ folder> or Torch_DIR=<the folder holding TorchConfig.cmake> first.`,
    ];
  }
  return [
    `LibTorch: ${torch.description}.`,
    'Fix: install LibTorch (Debian/Ubuntu, as root: `apt-get update && apt-get install -y --no-install-recommends libtorch-dev libopenblas0-pthread`),',
    'or set LIBTORCH=<an unzipped libtorch/ folder> or Torch_DIR=<the folder holding TorchConfig.cmake>,',
    `then ${what} with \`${cmd}\`${alt}.`,
  ];
}

/**
 * Explains a failure to load the addon: which of the known causes it is, whether LibTorch is found
 * now (and where), and the exact command to run. Exported for tests (which inject `libtorch`);
 * `loadBinding` throws what this returns.
 */
export function explainLoadError(err: unknown, root: string, libtorch: () => LibTorchStatus = discoverLibTorch): NativeLoadError {
  const detail = err instanceof Error ? err.message : String(err);
  const lines = ['pneumo-native could not load its native addon.'];
  if (/No native build was found/i.test(detail)) {
    lines.push(
      `Cause: no compiled addon in ${join(root, 'build', 'Release')} or ${join(root, 'prebuilds')} (installed with --ignore-scripts, or its install script was skipped or failed: pnpm and npm's allowScripts skip dependencies' build scripts unless allowed).`,
      ...fixLines(root, libtorch()),
    );
  } else if (/Cannot find module/i.test(detail) && process.env.PNEUMO_NATIVE_BINARY) {
    lines.push(`Cause: $PNEUMO_NATIVE_BINARY=${process.env.PNEUMO_NATIVE_BINARY} does not exist.`, 'Fix: build it (PNEUMO_BUILD_DIR=<folder> npm run build:native) or unset the variable.');
  } else if (/lib(torch|c10|torch_cpu|gomp)[^:]*\.so[^:]*: cannot open shared object file/i.test(detail)) {
    const lib = /(lib[\w.+-]*\.so[\w.]*)/.exec(detail)?.[1] ?? 'a LibTorch library';
    lines.push(`Cause: the LibTorch the addon was built against is gone (moved, upgraded or uninstalled): ${lib} cannot be opened.`, ...fixLines(root, libtorch(), 'rebuild it against the LibTorch you have now'));
  } else if (/undefined symbol/i.test(detail)) {
    lines.push('Cause: the addon was built against a different LibTorch than the one installed now.', ...fixLines(root, libtorch(), 'rebuild it'));
  } else if (/NODE_MODULE_VERSION|did not self-register|napi/i.test(detail)) {
    lines.push(`Cause: the addon was built for another Node.js (this is Node ${process.versions.node}).`, `Fix: rebuild it with \`${buildCommand(root)}\`.`);
  } else if (/wrong ELF class|invalid ELF header|cannot open shared object/i.test(detail)) {
    lines.push('Cause: the binary is not for this platform or a library it needs is missing.', ...fixLines(root, libtorch(), 'rebuild it'));
  } else {
    lines.push(`Cause: ${detail.split('\n')[0]}`, ...fixLines(root, libtorch()));
  }
  lines.push(`Details: ${detail.split('\n')[0]}`);
  return new NativeLoadError(lines.join('\n'), err);
}

let cached: NativeBinding | undefined;

/**
 * Loads the addon once (from `build/Release` or `prebuilds/` via node-gyp-build, or the file named
 * by $PNEUMO_NATIVE_BINARY), checks that it matches this package version, and returns it. Throws
 * NativeLoadError with the fix otherwise.
 */
export function loadBinding(root: string = packageRoot()): NativeBinding {
  if (cached && root === packageRoot()) return cached;
  const require = createRequire(import.meta.url);
  let binding: NativeBinding;
  try {
    const explicit = process.env.PNEUMO_NATIVE_BINARY;
    if (explicit && root === packageRoot()) {
      binding = require(isAbsolute(explicit) ? explicit : join(root, explicit)) as NativeBinding;
    } else {
      const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
      binding = nodeGypBuild(root) as NativeBinding;
    }
  } catch (err) {
    throw explainLoadError(err, root);
  }
  const expected = packageVersion();
  if (binding.version !== expected) {
    throw new NativeLoadError(
      [
        'pneumo-native could not load its native addon.',
        `Cause: the compiled addon is version ${binding.version} but the package is ${expected} (a stale build).`,
        `Fix: rebuild it with \`${buildCommand(root)}\`.`,
      ].join('\n'),
    );
  }
  if (root === packageRoot()) cached = binding;
  return binding;
}

// ---- inference: threshold search (native/inference/thresholds_api.h) ----

/** Per-map cumulative counts over threshold levels: `above[m * levels + k]` = #(p > level k). */
export interface NativeMapSummaries {
  levels: number;
  above: Int32Array;
  /** #(p > level k and truth); present when summarised with truth. */
  truthAbove?: Int32Array;
  truthArea?: Int32Array;
}

/** The threshold-search exports (merged into NativeBinding). */
export interface NativeBinding {
  /**
   * Summarises `count` maps of `pixels` each: uint8 maps over 256 levels (level k: v > k), float32
   * maps over the sorted distinct `thresholds`. `threads` <= 0 uses every core.
   */
  summariseMaps(maps: Uint8Array | Float32Array, count: number, pixels: number, truth: Uint8Array | null, thresholds: Float64Array | null, threads: number): Promise<NativeMapSummaries>;
  /** Scores triplets given as level indices: per triplet [mean, meanEmpty, meanNonEmpty, positives] (NaN for no images). */
  scoreTriplets(
    above: Int32Array,
    truthAbove: Int32Array,
    truthArea: Int32Array,
    count: number,
    levels: number,
    tops: Int32Array,
    areas: Float64Array,
    bottoms: Int32Array,
    scale: number,
  ): Promise<Float64Array>;
}

// ---- end inference: threshold search ----

// ---- distributed training (c10d) ----

/** An opaque, type-tagged handle to a c10d process group (TCPStore + Gloo/NCCL). */
export interface NativeProcessGroupHandle {
  readonly __brand: 'NativeProcessGroupHandle';
}

export interface NativeProcessGroupSpec {
  backend: string;
  masterAddr: string;
  masterPort: number;
  rank: number;
  worldSize: number;
  timeoutSeconds: number;
}

/** The distributed-training exports (merged into NativeBinding). */
export interface NativeBinding {
  distributedInfo(): { available: boolean; reason: string; backends: string[] };
  /** Joins the group; resolves once every rank has connected (rejects after the timeout). */
  createProcessGroup(spec: NativeProcessGroupSpec): Promise<NativeProcessGroupHandle>;
  processGroupBarrier(group: NativeProcessGroupHandle): Promise<void>;
  processGroupAllGatherBytes(group: NativeProcessGroupHandle, bytes: Uint8Array): Promise<Uint8Array[]>;
  processGroupAllReduceSum(group: NativeProcessGroupHandle, values: Float64Array): Promise<Float64Array>;
  processGroupBroadcastModel(group: NativeProcessGroupHandle, model: NativeModel, root: number): Promise<void>;
  /** Returns the BatchNorm layers synchronised (0 without `syncBatchNorm`). */
  attachDistributed(engine: NativeTrainEngineHandle, group: NativeProcessGroupHandle, bucketMb: number, broadcastBuffers: boolean, syncBatchNorm: boolean): number;
  destroyProcessGroup(group: NativeProcessGroupHandle): void;
}

// ---- end distributed training ----
