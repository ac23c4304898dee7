/**
 * `Model`: a segmentation network from the zoo, built natively as a TorchScript module (so that
 * checkpoints and exports run in Python's `torch.jit.load` as well as here).
 *
 * ```ts
 * const model = await Model.create({ backbone: 'unet_se50', seed: 42 });
 * const { mask } = await model.forward(batch);        // N x 1 x H x W logits
 * await model.save('fold0.pt', { metadata: { epoch: 3 } });
 * const again = await Model.load('fold0.pt');
 * ```
 *
 * Memory: `dispose()` (or `using`) frees the weights at once; a garbage-collected model is freed
 * by its finalizer.
 */
import { existsSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { replaceAtomic } from '../core/atomic-write.js';
import { Tensor } from '../core/tensor.js';
import { ensureRuntime, manualSeed } from '../core/runtime.js';
import { assertInteger, invalidParameterError, is } from '../core/validate.js';
import type { NativeEncoderInfo, NativeGradientReport, NativeModel, NativeNamedTensors, NativeParameterCounts, NativeStateDictReport } from '../native/binding.js';
import { ARCHITECTURES, architecture as architectureEntry, backbone as backboneEntry, encoder as encoderEntry, registry } from './registry.js';
import type { Architecture } from './registry.js';
import { readSafetensorsHeader, writeSafetensors } from './safetensors.js';
import { checkPrecisionSetting, cpuBf16Support, cudaIndex, resolvePrecision } from './precision.js';
import type { Precision, PrecisionSetting } from './precision.js';
import { readTorchFile } from './torch-file.js';
import { resolveEncoderWeights } from './weights.js';
import type { FetchWeightsOptions, FetchedWeights } from './weights.js';

/** What to build: a registry backbone, or an architecture over an encoder. */
export interface ModelOptions {
  /** A registry backbone name (`unet_se50`, `albunet34`, `tiny_unet_r18`, ...). */
  backbone?: string;
  /** The architecture when no backbone is given (or to override the backbone's). */
  architecture?: Architecture;
  /** A native encoder name (`resnet34`, `efficientnet-b4`, ...) or a TorchScript encoder file. */
  encoder?: string;
  /** Decoder widths (default: the architecture's). */
  decoderChannels?: number[];
  /** Output channels of the mask head (default 1). */
  classes?: number;
  /** Input channels (default 3). */
  inChannels?: number;
  /** Adds global pool -> linear -> one logit on the deepest encoder feature. */
  classificationHead?: boolean;
  /** "cpu" (default), "cuda" or "cuda:N". */
  device?: string;
  /**
   * Channels-last (NHWC) weights and inputs. Default true: on CPU, oneDNN's convolutions train
   * up to about 1.3x faster this way (most for EfficientNet's depthwise convolutions; `npm run
   * bench -- layout`), and on CUDA it is the layout tensor cores want. Outputs are returned
   * contiguous.
   */
  channelsLast?: boolean;
  /**
   * Forward precision: `fp32` (default), `bf16`, `fp16` (CUDA only) or `auto` (bf16 on CUDA
   * sm_80+, fp16 on older GPUs, bf16 on CPUs with AMX, else fp32). See `precision.ts`.
   */
  precision?: PrecisionSetting;
  /** @deprecated Use `precision: 'auto'` (what `autocast: true` now means). */
  autocast?: boolean;
  /** Seeds LibTorch's generator before the weights are initialised (reproducible models). */
  seed?: number;
  /**
   * Pretrained encoder weights: `"imagenet"` (the upstream file the seeds used, see
   * models/registry.json; downloaded once into the cache, verified) or the path of a state dict
   * in the encoder's upstream naming (`torch.save` zip or legacy format, or `.safetensors`).
   * Loaded strictly: a missing or unexpected tensor is an error listing them (the upstream
   * classifier head is ignored and reported). Default: none (random initialisation).
   */
  encoderWeights?: string | null;
  /** Progress and cache options for `encoderWeights: "imagenet"` downloads. */
  weightsFetch?: FetchWeightsOptions;
}

/** The architecture description stored in checkpoints and exports (`pneumo/spec.json`). */
export interface ModelSpec {
  backbone: string | null;
  architecture: Architecture;
  /** A native encoder name, or "torchscript". */
  encoder: string;
  /** Where the TorchScript encoder came from (informational once saved: its weights are inside). */
  encoderPath: string | null;
  decoderChannels: number[] | null;
  classes: number;
  inChannels: number;
  classificationHead: boolean;
  channelsLast: boolean;
  /** The resolved forward precision (`auto` is resolved when the model is created). */
  precision: Precision;
  /** The encoder weights the model started from (`imagenet` or a file path); null: random init. */
  encoderWeights?: string | null;
}

/** What `loadEncoderWeights` did. */
export interface EncoderWeightsReport {
  /** The file read (or "(tensors)" for a Map). */
  source: string;
  /** Tensors copied into the encoder. */
  loaded: number;
  /** Upstream tensors the encoder does not use (the source model's classifier head), ignored. */
  ignored: string[];
  /** Encoder buffers the file lacks and that keep their initial value (BatchNorm `num_batches_tracked` of older files). */
  defaulted: string[];
  /** A name prefix removed from every incoming name ("module." of DataParallel, "encoder."). */
  strippedPrefix: string | null;
  /** Tensors adapted to the input channels (first convolution summed over RGB for 1 channel). */
  adapted: string[];
  /** Set when `imagenet` (or another registry name) was resolved through the cache. */
  fetched: FetchedWeights | null;
}

export interface ModelOutput {
  /** N x classes x H x W logits. */
  mask: Tensor;
  /** N x 1 classification logits (only with `classificationHead`). */
  label?: Tensor;
}

/** What `predict` returns: probabilities, not logits. */
export interface Prediction {
  /** float32 sigmoid probabilities, N x classes x H x W, on the model's device. */
  mask: Tensor;
  /** float32 sigmoid of the classification logit, N x 1 (only with `classificationHead`). */
  label?: Tensor;
}

export interface PredictOptions {
  /**
   * Horizontal-flip TTA as one batched forward over [x, flip(x)]: the mask is
   * (p(x) + flip(p(flip(x)))) / 2, the label the mean of the two probabilities (default false).
   */
  tta?: boolean;
  /**
   * On a CUDA model (LibTorch 2.4+ CUDA build), run through a CUDA graph of the whole forward for
   * this input shape: captured on the second call at a shape, replayed after (at most 2 graphs
   * per model, least recently used dropped). Default true; false always runs eagerly.
   */
  cudaGraph?: boolean;
}

/** A model's predict CUDA graphs (`Model.graphStatus()`). */
export interface ModelGraphStatus {
  /** Graphs held now. */
  graphs: number;
  captures: number;
  replays: number;
  eagerCalls: number;
  /** Why the last call ran eagerly ('' when it replayed a graph). */
  reason: string;
}

export type ParameterCounts = NativeParameterCounts;
export type EncoderInfo = NativeEncoderInfo;
export type StateDictReport = NativeStateDictReport;
export type GradientReport = NativeGradientReport;

export interface SaveOptions {
  /** Training metadata (epoch, scores, config...), stored as JSON. */
  metadata?: Record<string, unknown>;
  /** Optimizer state for resume, by name (the trainer's "optimizer/..." tensors). */
  optimizer?: Map<string, Tensor>;
}

export interface LoadOptions {
  /** Where to put the weights (map_location); default "cpu". */
  device?: string;
  /** Run in this precision instead of the one the checkpoint was saved with (`auto` allowed). */
  precision?: PrecisionSetting;
}

/** Checkpoints written before `precision` existed stored `autocast` (CUDA fp16). */
function normaliseLoadedSpec(spec: ModelSpec & { autocast?: boolean }): ModelSpec {
  if (spec.precision === undefined) spec.precision = spec.autocast === true ? 'fp16' : 'fp32';
  delete spec.autocast;
  return spec;
}

/** Resolves a precision setting for `device` from the hardware (CUDA capability, CPU flags). */
export async function resolveDevicePrecision(setting: PrecisionSetting, device: string): Promise<Precision> {
  const capabilities = cudaIndex(device) === null ? [] : (await ensureRuntime().runtimeInfo()).cudaDevices.map((d) => d.computeCapability);
  return resolvePrecision(setting, device, { cudaCapabilities: capabilities, cpu: cpuBf16Support() });
}

export interface LoadedCheckpoint {
  model: Model;
  kind: 'checkpoint' | 'export';
  metadata: Record<string, unknown>;
  optimizer: Map<string, Tensor>;
}

export interface LoadStateDictOptions {
  /** Prepended to every incoming name ("encoder." loads a bare torchvision/timm encoder state dict). */
  prefix?: string;
  /** Fail on any missing or unexpected name (default false: they are reported). */
  strict?: boolean;
}

function checkDevice(device: unknown): string {
  if (!is.string(device) || !/^(cpu|cuda(:\d+)?)$/.test(device)) throw invalidParameterError('device', '"cpu", "cuda" or "cuda:N"', device);
  return device;
}

function isTorchScriptPath(encoder: string): boolean {
  return /[/\\]/.test(encoder) || ['.pt', '.pth', '.ts', '.torchscript', '.zip'].includes(extname(encoder));
}

/** Resolves options (backbone name or explicit parts) to a full spec; throws naming the bad field. */
export function resolveSpec(options: ModelOptions): ModelSpec {
  if (typeof options !== 'object' || options === null) throw invalidParameterError('options', 'an object', options);
  const base = options.backbone === undefined ? undefined : backboneEntry(options.backbone);
  const arch = options.architecture ?? base?.architecture;
  if (arch === undefined) throw invalidParameterError('options.backbone or options.architecture', 'a backbone name or an architecture', undefined);
  if (!is.oneOf(arch, ARCHITECTURES)) throw invalidParameterError('options.architecture', `one of ${ARCHITECTURES.join(', ')}`, arch);
  const encoderName = options.encoder ?? base?.encoder;
  if (!is.string(encoderName)) throw invalidParameterError('options.encoder', 'an encoder name or a TorchScript file', encoderName);
  let encoder = encoderName;
  let encoderPath: string | null = null;
  if (!registry().encoders.has(encoderName)) {
    if (!isTorchScriptPath(encoderName)) {
      throw invalidParameterError('options.encoder', `one of ${[...registry().encoders.keys()].join(', ')} or a TorchScript file path`, encoderName);
    }
    if (!existsSync(encoderName)) throw new Error(`TorchScript encoder file ${encoderName} does not exist`);
    encoder = 'torchscript';
    encoderPath = resolve(encoderName);
  }
  if (arch === 'deeplabv3' && registry().encoders.get(encoder)?.family === 'efficientnet') {
    throw invalidParameterError('options.encoder', 'a ResNet-family encoder for deeplabv3 (resnet*, se_resnext*; EfficientNet has no dilated variant)', encoder);
  }
  const decoderChannels = options.decoderChannels ?? (options.architecture === undefined ? base?.decoderChannels : undefined) ?? null;
  if (decoderChannels !== null) {
    const expected = architectureEntry(arch).decoderChannels.length;
    if (!Array.isArray(decoderChannels) || decoderChannels.length !== expected || !decoderChannels.every((w) => Number.isInteger(w) && w > 0)) {
      throw invalidParameterError('options.decoderChannels', `an array of ${expected} positive integers`, decoderChannels);
    }
    if (arch === 'albunet') throw invalidParameterError('options.decoderChannels', 'nothing (AlbuNet has fixed widths)', decoderChannels);
  }
  const classes = options.classes ?? 1;
  assertInteger('options.classes', classes, 1, 1024);
  const inChannels = options.inChannels ?? 3;
  assertInteger('options.inChannels', inChannels, 1, 64);
  return {
    backbone: options.backbone ?? null,
    architecture: arch,
    encoder,
    encoderPath,
    decoderChannels,
    classes,
    inChannels,
    classificationHead: options.classificationHead ?? false,
    channelsLast: options.channelsLast ?? true,
    precision: 'fp32',
    encoderWeights: checkEncoderWeights(options.encoderWeights, encoder),
  };
}

function checkEncoderWeights(weights: unknown, encoder: string): string | null {
  if (weights === undefined || weights === null) return null;
  if (!is.string(weights) || weights === '') throw invalidParameterError('options.encoderWeights', '"imagenet" or a state dict file path', weights);
  if (encoder === 'torchscript') {
    throw invalidParameterError('options.encoderWeights', 'nothing with a TorchScript encoder (the file carries its own weights)', weights);
  }
  return weights;
}

/** Reads a state dict file: `.safetensors`, or a `torch.save` file (zip or legacy format). */
export async function readWeightsFile(path: string): Promise<NativeNamedTensors> {
  if (!existsSync(path)) throw new Error(`State dict file ${path} does not exist`);
  if (extname(path) === '.safetensors') {
    const header = readSafetensorsHeader(path);
    return ensureRuntime().readSafetensors(path, header.dataOffset, header.entries);
  }
  return readTorchFile(path);
}

function listSome(names: string[], max = 12): string {
  return names.length <= max ? names.join(', ') : `${names.slice(0, max).join(', ')}, ... (${names.length} in all)`;
}

function toNamed(map: Map<string, Tensor>): NativeNamedTensors {
  return [...map].map(([name, t]) => [name, t.native]);
}

function fromNamed(list: NativeNamedTensors): Map<string, Tensor> {
  return new Map(list.map(([name, t]) => [name, new Tensor(t)]));
}

export class Model {
  #native: NativeModel;
  readonly spec: ModelSpec;
  /** What `Model.create({ encoderWeights })` loaded (null otherwise). */
  encoderWeightsReport: EncoderWeightsReport | null = null;

  /** @internal Use `Model.create` or `Model.load`. */
  constructor(native: NativeModel, spec: ModelSpec) {
    this.#native = native;
    this.spec = spec;
  }

  /** Builds a model (weights initialised as the Python sources do; seed with `options.seed`). */
  static async create(options: ModelOptions): Promise<Model> {
    const spec = resolveSpec(options);
    const device = checkDevice(options.device ?? 'cpu');
    const setting = checkPrecisionSetting('options.precision', options.precision ?? (options.autocast === true ? 'auto' : 'fp32'));
    spec.precision = await resolveDevicePrecision(setting, device);
    // Fetch (or find) pretrained weights before building anything, so a failure costs nothing.
    const weights = spec.encoderWeights ? await resolveEncoderWeights(spec.encoder, spec.encoderWeights, options.weightsFetch) : null;
    if (options.seed !== undefined) manualSeed(options.seed);
    const native = await ensureRuntime().createModel(
      {
        architecture: spec.architecture,
        encoder: spec.encoder,
        encoderPath: spec.encoderPath ?? '',
        decoderChannels: spec.decoderChannels ?? [],
        classes: spec.classes,
        inChannels: spec.inChannels,
        classificationHead: spec.classificationHead,
        channelsLast: spec.channelsLast,
        precision: spec.precision,
        json: JSON.stringify(spec),
      },
      device,
    );
    const model = new Model(native, spec);
    if (weights) {
      try {
        const report = await model.loadEncoderWeights(weights.path);
        model.encoderWeightsReport = { ...report, fetched: weights.fetched };
      } catch (err) {
        model.dispose();
        throw err;
      }
    }
    return model;
  }

  /** Loads a checkpoint or an export (see docs/models.md) onto `device`. */
  static async load(path: string, options: LoadOptions = {}): Promise<Model> {
    return (await Model.loadCheckpoint(path, options)).model;
  }

  /** Loads a checkpoint with its training metadata and optimizer state. */
  static async loadCheckpoint(path: string, options: LoadOptions = {}): Promise<LoadedCheckpoint> {
    if (!is.string(path)) throw invalidParameterError('path', 'a file path', path);
    if (!existsSync(path)) throw new Error(`Model file ${path} does not exist`);
    const loaded = await ensureRuntime().loadModel(path, checkDevice(options.device ?? 'cpu'));
    const spec = normaliseLoadedSpec(JSON.parse(loaded.model.specJson) as ModelSpec & { autocast?: boolean });
    if (options.precision !== undefined) {
      const setting = checkPrecisionSetting('options.precision', options.precision);
      spec.precision = await resolveDevicePrecision(setting, loaded.model.device);
      loaded.model.setPrecision(spec.precision, JSON.stringify(spec));
    }
    return {
      model: new Model(loaded.model, spec),
      kind: loaded.kind,
      metadata: JSON.parse(loaded.metadataJson || '{}') as Record<string, unknown>,
      optimizer: fromNamed(loaded.optimizer),
    };
  }

  /** @internal The native handle (issue 5's trainer); throws if disposed. */
  get native(): NativeModel {
    if (this.#native.disposed) throw new Error('Model has been disposed');
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native.disposed;
  }

  get device(): string {
    return this.native.device;
  }

  get training(): boolean {
    return this.native.training;
  }

  get encoderFrozen(): boolean {
    return this.native.encoderFrozen;
  }

  /** Feature channels and strides of the encoder, and the input size divisor. */
  get encoderInfo(): EncoderInfo {
    return this.native.encoderInfo;
  }

  /** Runs the network: with autograd in training mode, without (and frozen, conv-BN folded) in eval mode. */
  async forward(input: Tensor): Promise<ModelOutput> {
    this.#checkInput(input);
    const out = await this.native.forward(input.native);
    return out.label ? { mask: new Tensor(out.mask), label: new Tensor(out.label) } : { mask: new Tensor(out.mask) };
  }

  /**
   * Eval-mode prediction without autograd: sigmoid probabilities from the frozen, conv-BN-folded
   * inference module, whatever the model's mode (a model in training mode stays in it). With
   * `tta: true`, horizontal-flip TTA as one forward over a batch of 2N.
   */
  async predict(input: Tensor, options: PredictOptions = {}): Promise<Prediction> {
    this.#checkInput(input);
    if (typeof options !== 'object' || options === null) throw invalidParameterError('options', 'an object', options);
    const tta = options.tta ?? false;
    if (!is.bool(tta)) throw invalidParameterError('options.tta', 'a boolean', tta);
    const cudaGraph = options.cudaGraph ?? true;
    if (!is.bool(cudaGraph)) throw invalidParameterError('options.cudaGraph', 'a boolean', cudaGraph);
    const out = await ensureRuntime().modelPredict(this.native, input.native, tta, cudaGraph);
    return out.label ? { mask: new Tensor(out.mask), label: new Tensor(out.label) } : { mask: new Tensor(out.mask) };
  }

  /** Where this model's predict CUDA graphs stand (waits for a running call on the model). */
  graphStatus(): ModelGraphStatus {
    return ensureRuntime().modelGraphStatus(this.native);
  }

  /**
   * SWA's BatchNorm pass (torch.optim.swa_utils.update_bn): resets every BatchNorm's running
   * statistics and recomputes them as the plain average, over `batches` (N x C x H x W inputs, at
   * least 2 images each), of the batch mean and unbiased batch variance (PyTorch's momentum=None);
   * leaves the model in eval mode. Runs in training mode without autograd (dropout active, as
   * update_bn). Do not run anything else on the model meanwhile. On an error (or no batch) the
   * previous statistics and mode are restored. Returns the number of batches used.
   */
  async recomputeBatchNorm(batches: AsyncIterable<Tensor> | Iterable<Tensor>): Promise<number> {
    const iterable = batches as Partial<AsyncIterable<Tensor> & Iterable<Tensor>> | null;
    if (iterable === null || typeof iterable !== 'object' || (typeof iterable[Symbol.asyncIterator] !== 'function' && typeof iterable[Symbol.iterator] !== 'function')) {
      throw invalidParameterError('batches', 'an iterable or async iterable of Tensors', batches);
    }
    const runtime = ensureRuntime();
    const session = await runtime.batchNormRecomputeBegin(this.native);
    let count = 0;
    try {
      for await (const batch of batches) {
        this.#checkInput(batch, `batches[${count}]`);
        count = await runtime.batchNormRecomputeAdd(session, batch.native);
      }
      if (count === 0) throw invalidParameterError('batches', 'at least one batch', 'none');
    } catch (err) {
      await runtime.batchNormRecomputeAbort(session);
      throw err;
    }
    await runtime.batchNormRecomputeFinish(session);
    return count;
  }

  #checkInput(input: unknown, name = 'input'): asserts input is Tensor {
    if (!(input instanceof Tensor)) throw invalidParameterError(name, 'a Tensor', input);
    const shape = input.shape;
    const divisor = this.encoderInfo.requiredDivisor;
    if (shape.length !== 4) throw invalidParameterError(name, 'a 4-D batch (N x C x H x W)', `shape [${shape.join(', ')}]`);
    if (shape[2]! % divisor !== 0 || shape[3]! % divisor !== 0 || shape[2]! === 0 || shape[3]! === 0) {
      throw new RangeError(
        `Expected ${name} height and width that are positive multiples of ${divisor} for ${this.describe()} but received ${shape[2]}x${shape[3]}`,
      );
    }
  }

  /** The encoder's 5 feature maps (strides 2, 4, 8, 16, 32) for `input`. */
  async encode(input: Tensor): Promise<Tensor[]> {
    if (!(input instanceof Tensor)) throw invalidParameterError('input', 'a Tensor', input);
    return (await this.native.encode(input.native)).map((t) => new Tensor(t));
  }

  /** Training mode (BatchNorm batch statistics, dropout, drop-connect). */
  train(on = true): this {
    this.native.train(on);
    return this;
  }

  /** Eval mode. */
  eval(): this {
    return this.train(false);
  }

  /** Stops (or restarts) gradients for every encoder parameter; BatchNorm follows train/eval. */
  freezeEncoder(frozen = true): this {
    this.native.freezeEncoder(frozen);
    return this;
  }

  parameterCount(): ParameterCounts {
    return this.native.parameterCounts();
  }

  async to(device: string): Promise<this> {
    await this.native.to(checkDevice(device));
    return this;
  }

  /** Named parameters and buffers ("encoder.layer1.0.conv1.weight", ...), sharing the model's memory. */
  async stateDict(): Promise<Map<string, Tensor>> {
    return fromNamed(await this.native.stateDict());
  }

  /**
   * Loads weights from a Map of tensors, a `.safetensors` file or a Python `torch.save` file of a
   * dict of tensors (`.pt`/`.pth`, zip or legacy format, optionally under "state_dict"/"model"),
   * by name (`prefix` prepended). For an encoder's upstream weights, `loadEncoderWeights` is strict.
   */
  async loadStateDict(source: Map<string, Tensor> | string, options: LoadStateDictOptions = {}): Promise<StateDictReport> {
    const prefix = options.prefix ?? '';
    if (!is.string(prefix)) throw invalidParameterError('options.prefix', 'a string', prefix);
    let named: NativeNamedTensors;
    if (typeof source === 'string') {
      named = await readWeightsFile(source);
    } else if (source instanceof Map) {
      named = toNamed(source);
    } else {
      throw invalidParameterError('source', 'a Map of tensors or a file path', source);
    }
    return this.native.loadStateDict(named, prefix, options.strict ?? false);
  }

  /**
   * Loads pretrained weights into the encoder from a state dict in the encoder's upstream naming
   * (torchvision, Cadene pretrainedmodels, lukemelas efficientnet_pytorch; a file or a Map),
   * strictly: every encoder tensor must be there (BatchNorm `num_batches_tracked`, which older
   * files lack, excepted) and every incoming tensor must belong to the encoder, except the
   * upstream classifier head (registry `classifier`), which is ignored and reported. A common
   * `module.` or `encoder.` prefix is removed. With 1 input channel, an RGB first convolution is
   * summed over its input channels. Nothing is copied unless everything matches.
   */
  async loadEncoderWeights(source: string | Map<string, Tensor>): Promise<EncoderWeightsReport> {
    if (this.spec.encoder === 'torchscript') throw new Error(`${this.describe()} has a TorchScript encoder, which carries its own weights`);
    const where = typeof source === 'string' ? source : '(tensors)';
    let incoming: NativeNamedTensors;
    if (typeof source === 'string') incoming = await readWeightsFile(source);
    else if (source instanceof Map) incoming = toNamed(source);
    else throw invalidParameterError('source', 'a Map of tensors or a file path', source);
    const fail = (reason: string): never => {
      throw new Error(`Encoder weights ${where} do not fit ${this.spec.encoder} (${this.describe()}): ${reason}`);
    };
    if (incoming.length === 0) fail('the file holds no tensors');
    let strippedPrefix: string | null = null;
    for (const prefix of ['module.', 'encoder.']) {
      if (incoming.every(([name]) => name.startsWith(prefix))) {
        incoming = incoming.map(([name, t]) => [name.slice(prefix.length), t]);
        strippedPrefix = (strippedPrefix ?? '') + prefix;
      }
    }
    const whole = incoming.filter(([name]) => /^(decoder|segmentation_head|classification_head)\./.test(name));
    if (whole.length > 0) fail(`it holds a whole model's weights (${listSome(whole.map(([n]) => n), 3)}): load it with loadStateDict (model.weights in a config)`);
    const own = new Map<string, number[]>();
    for (const [name, t] of await this.native.stateDict()) {
      if (name.startsWith('encoder.')) own.set(name.slice('encoder.'.length), new Tensor(t).shape);
    }
    const classifier = new Set(encoderEntry(this.spec.encoder).classifier);
    const ignored: string[] = [];
    const unexpected: string[] = [];
    const mismatched: string[] = [];
    const adapted: string[] = [];
    const keep: NativeNamedTensors = [];
    const seen = new Set<string>();
    for (const [name, native] of incoming) {
      const target = own.get(name);
      if (!target) {
        (classifier.has(name) ? ignored : unexpected).push(name);
        continue;
      }
      seen.add(name);
      const t = new Tensor(native);
      const shape = t.shape;
      if (shape.join() === target.join()) {
        keep.push([name, native]);
      } else if (shape.length === 4 && target.length === 4 && shape[1] === 3 && target[1] === 1 && shape[0] === target[0] && shape[2] === target[2] && shape[3] === target[3]) {
        keep.push([name, (await t.sum(1, true)).native]); // RGB filters onto one grey channel
        adapted.push(name);
      } else {
        mismatched.push(`${name} [${shape.join(', ')}] for [${target.join(', ')}]`);
      }
    }
    const missing = [...own.keys()].filter((name) => !seen.has(name));
    const defaulted = missing.filter((name) => name.endsWith('.num_batches_tracked'));
    const absent = missing.filter((name) => !name.endsWith('.num_batches_tracked'));
    const problems: string[] = [];
    if (mismatched.length) problems.push(`shapes differ: ${listSome(mismatched)}`);
    if (absent.length) problems.push(`missing: ${listSome(absent)}`);
    if (unexpected.length) problems.push(`unexpected: ${listSome(unexpected)}`);
    if (problems.length) fail(`${problems.join('; ')}${ignored.length ? ` (ignored as the upstream classifier: ${ignored.join(', ')})` : ''}`);
    const report = await this.native.loadStateDict(keep, 'encoder.', false);
    if (report.loaded !== keep.length) fail(`only ${report.loaded} of ${keep.length} tensors were loaded`);
    return { source: where, loaded: report.loaded, ignored, defaulted, strippedPrefix, adapted, fetched: null };
  }

  /**
   * Writes the weights as `.safetensors`, or otherwise as a `torch.save` dict that Python's
   * torch.load reads, atomically (`core/atomic-write`).
   * @throws FileWriteError naming `path` (full disk, read-only folder, ...)
   */
  async saveStateDict(path: string): Promise<void> {
    if (!is.string(path)) throw invalidParameterError('path', 'a file path', path);
    if (extname(path) === '.safetensors') {
      await writeSafetensors(path, await this.stateDict(), { format: 'pt' });
    } else {
      const named = await this.native.stateDict();
      await replaceAtomic(path, (tmp) => ensureRuntime().writeStateDict(tmp, named));
    }
  }

  /**
   * Writes a checkpoint (weights, spec, metadata, optimizer state) atomically: a temporary file
   * in the same folder, every write checked, flushed, renamed onto `path` (`core/atomic-write`).
   * The archive's zip CRC-32s are checked when it is loaded.
   * @throws FileWriteError naming `path` (full disk, read-only folder, ...): nothing is left at
   *   `path` but what was there before, and the model stays usable
   */
  async save(path: string, options: SaveOptions = {}): Promise<void> {
    if (!is.string(path)) throw invalidParameterError('path', 'a file path', path);
    const optimizer = options.optimizer ? toNamed(options.optimizer) : [];
    const metadata = JSON.stringify(options.metadata ?? {});
    await replaceAtomic(path, (tmp) => this.native.saveCheckpoint(tmp, metadata, optimizer));
  }

  /** Writes the model in eval mode as TorchScript (runs in Python's torch.jit.load and in `Model.load`), atomically. */
  async exportTorchScript(path: string): Promise<void> {
    if (!is.string(path)) throw invalidParameterError('path', 'a file path', path);
    await replaceAtomic(path, (tmp) => this.native.exportTorchScript(tmp));
  }

  /**
   * A diagnostic training step: forward, backward on mean(output^2), and (lr > 0) a plain SGD
   * update. For tests, benchmarks and smoke checks; real training uses the trainer's losses and
   * optimizers. `statistics: false` skips the per-tensor gradient checks (only the loss is read).
   */
  async gradientStep(input: Tensor, options: { lr?: number; statistics?: boolean } = {}): Promise<GradientReport> {
    if (!(input instanceof Tensor)) throw invalidParameterError('input', 'a Tensor', input);
    const lr = options.lr ?? 0;
    if (!is.number(lr) || lr < 0) throw invalidParameterError('options.lr', 'a non-negative number', lr);
    return this.native.gradientStep(input.native, lr, options.statistics ?? true);
  }

  /** Eval-mode forward through a frozen, conv-BN-folded copy (default on; rebuilt after changes). */
  setInferenceOptimization(enabled: boolean): this {
    this.native.setInferenceOptimization(enabled);
    return this;
  }

  /** "unet on resnet18" */
  describe(): string {
    return `${this.spec.backbone ?? this.spec.architecture} (${this.spec.architecture} on ${this.spec.encoder})`;
  }

  dispose(): void {
    this.#native.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
