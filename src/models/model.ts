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
import { ARCHITECTURES, architecture as architectureEntry, backbone as backboneEntry, registry } from './registry.js';
import type { Architecture } from './registry.js';
import { readSafetensorsHeader, writeSafetensors } from './safetensors.js';

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
  /** Mixed precision (autocast) on CUDA; ignored on CPU. */
  autocast?: boolean;
  /** Seeds LibTorch's generator before the weights are initialised (reproducible models). */
  seed?: number;
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
  autocast: boolean;
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
    autocast: options.autocast ?? false,
  };
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

  /** @internal Use `Model.create` or `Model.load`. */
  constructor(native: NativeModel, spec: ModelSpec) {
    this.#native = native;
    this.spec = spec;
  }

  /** Builds a model (weights initialised as the Python sources do; seed with `options.seed`). */
  static async create(options: ModelOptions): Promise<Model> {
    const spec = resolveSpec(options);
    const device = checkDevice(options.device ?? 'cpu');
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
        autocast: spec.autocast,
        json: JSON.stringify(spec),
      },
      device,
    );
    return new Model(native, spec);
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
    const spec = JSON.parse(loaded.model.specJson) as ModelSpec;
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
    const out = await ensureRuntime().modelPredict(this.native, input.native, tta);
    return out.label ? { mask: new Tensor(out.mask), label: new Tensor(out.label) } : { mask: new Tensor(out.mask) };
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
   * dict of tensors (`.pt`/`.pth`, optionally under "state_dict"/"model").
   */
  async loadStateDict(source: Map<string, Tensor> | string, options: LoadStateDictOptions = {}): Promise<StateDictReport> {
    const prefix = options.prefix ?? '';
    if (!is.string(prefix)) throw invalidParameterError('options.prefix', 'a string', prefix);
    let named: NativeNamedTensors;
    if (typeof source === 'string') {
      if (!existsSync(source)) throw new Error(`State dict file ${source} does not exist`);
      if (extname(source) === '.safetensors') {
        const header = readSafetensorsHeader(source);
        named = await ensureRuntime().readSafetensors(source, header.dataOffset, header.entries);
      } else {
        named = await ensureRuntime().readStateDict(source);
      }
    } else if (source instanceof Map) {
      named = toNamed(source);
    } else {
      throw invalidParameterError('source', 'a Map of tensors or a file path', source);
    }
    return this.native.loadStateDict(named, prefix, options.strict ?? false);
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
