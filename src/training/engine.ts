/**
 * `TrainEngine`: the native training step. One call runs forward, the summed losses, backward
 * (accumulated over `accumulation` calls), global-norm clipping and the optimizer step on a
 * thread-pool thread, so the event loop keeps ticking and no tensor crosses into JS in between.
 *
 * ```ts
 * const engine = TrainEngine.create(model, {
 *   optimizer: { algorithm: 'adam', lr: 1e-4, weightDecay: 5e-6 },
 *   loss: [{ kind: 'combo', options: COMBO_WEIGHTS.validation }],
 *   gradClip: 0.1,
 * });
 * const { loss, finite } = await engine.step(images, masks);   // model in train mode
 * if (!finite) throw new Error('non-finite loss');
 * await model.save('last.pt', { optimizer: await engine.optimizerState() });
 * ```
 *
 * The engine owns its optimizer (Adam, AdamW, SGD, RAdam over the model's parameters, groups by
 * `lrRules`, no decay on biases and norms). Parameters of a frozen encoder (`model.freezeEncoder`)
 * get no gradient and are not updated. Memory: `dispose()` frees the optimizer state at once; a
 * garbage-collected engine is freed by its finalizer.
 */
import { ensureRuntime } from '../core/runtime.js';
import { Tensor } from '../core/tensor.js';
import { assertInteger, assertNumber, invalidParameterError, is } from '../core/validate.js';
import type { Model } from '../models/model.js';
import type { NativeGradScalerSpec, NativeGraphStatus, NativeLossTerm, NativeProcessGroupHandle, NativeTrainEngineHandle, NativeTrainEngineSpec, NativeTrainStepResult } from '../native/binding.js';
import { checkLossOptions } from './losses.js';
import type { LossOptions } from './losses.js';
import { checkOptimizerSpec } from './optimizers.js';
import type { OptimizerGroup, OptimizerSpec } from './optimizers.js';

/** The loss kinds the engine sums (the fused combo loss, soft Dice, class-balanced BCE, Lovasz). */
export type LossTermKind = 'combo' | 'soft-dice' | 'balanced-bce' | 'lovasz';
export const LOSS_TERM_KINDS: readonly LossTermKind[] = ['combo', 'soft-dice', 'balanced-bce', 'lovasz'];

/** One term of the segmentation loss: weight * kind(mask logits, masks). */
export interface LossTerm {
  kind: LossTermKind;
  /** Default 1. */
  weight?: number;
  /** The kind's options (see `LossOptions`). */
  options?: LossOptions;
}

export type TrainTask = NonNullable<NativeTrainEngineSpec['task']>;

/**
 * The engine's options: `NativeTrainEngineSpec` (src/native/train.ts, where every field is
 * documented) with this module's optimizer spec and loss terms; `loss` is checked here.
 */
export interface TrainEngineOptions extends Omit<NativeTrainEngineSpec, 'optimizer' | 'loss' | 'scaler'> {
  optimizer: OptimizerSpec;
  /** Summed: sum(weight * term(logits, masks)). Required for the segment task; ignored by classify. */
  loss?: LossTerm[];
  scaler?: GradScalerOptions;
}

/** Where an engine's CUDA graph stands (`TrainEngine.graphStatus()`): `NativeGraphStatus`. */
export type GraphStatus = NativeGraphStatus;

/** The gradient scaler's options (see `TrainEngineOptions.scaler`): `NativeGradScalerSpec`. */
export type GradScalerOptions = NativeGradScalerSpec;

/** What one step reports: the native result as it is (src/native/train.ts documents each field). */
export type StepResult = NativeTrainStepResult;

const OPTION_KEYS = ['optimizer', 'loss', 'accumulation', 'gradClip', 'task', 'labelWeight', 'maskWeight', 'auxWeight', 'scaler', 'cudaGraphs'];
const SCALER_KEYS = ['mode', 'initScale', 'growthFactor', 'backoffFactor', 'growthInterval'];

function checkScaler(value: unknown): NonNullable<NativeTrainEngineSpec['scaler']> {
  if (typeof value !== 'object' || value === null) throw invalidParameterError('options.scaler', 'an object', value);
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!SCALER_KEYS.includes(key)) throw new TypeError(`Unknown gradient scaler option '${key}' (known: ${SCALER_KEYS.join(', ')})`);
  }
  const out: NonNullable<NativeTrainEngineSpec['scaler']> = {};
  if (o.mode !== undefined) {
    if (!is.oneOf(o.mode, ['auto', 'on', 'off'] as const)) throw invalidParameterError('options.scaler.mode', "'auto', 'on' or 'off'", o.mode);
    out.mode = o.mode;
  }
  if (o.initScale !== undefined) {
    assertNumber('options.scaler.initScale', o.initScale, Number.MIN_VALUE, Number.MAX_VALUE);
    out.initScale = o.initScale;
  }
  if (o.growthFactor !== undefined) {
    assertNumber('options.scaler.growthFactor', o.growthFactor, 1 + Number.EPSILON, 1e6);
    out.growthFactor = o.growthFactor;
  }
  if (o.backoffFactor !== undefined) {
    assertNumber('options.scaler.backoffFactor', o.backoffFactor, Number.MIN_VALUE, 1 - Number.EPSILON);
    out.backoffFactor = o.backoffFactor;
  }
  if (o.growthInterval !== undefined) {
    assertInteger('options.scaler.growthInterval', o.growthInterval, 1, 1e9);
    out.growthInterval = o.growthInterval;
  }
  return out;
}

function checkOptions(options: unknown): NativeTrainEngineSpec {
  if (typeof options !== 'object' || options === null) throw invalidParameterError('options', 'an object', options);
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!OPTION_KEYS.includes(key)) throw new TypeError(`Unknown TrainEngine option '${key}' (known: ${OPTION_KEYS.join(', ')})`);
  }
  const task = o.task ?? 'segment';
  if (!is.oneOf(task, ['segment', 'classify'] as const)) throw invalidParameterError('options.task', "'segment' or 'classify'", task);
  const optimizer = checkOptimizerSpec(o.optimizer);
  const loss: NativeLossTerm[] = [];
  if (o.loss !== undefined) {
    if (!Array.isArray(o.loss)) throw invalidParameterError('options.loss', 'an array of loss terms', o.loss);
    o.loss.forEach((term: unknown, k) => {
      if (typeof term !== 'object' || term === null) throw invalidParameterError(`options.loss[${k}]`, 'an object { kind, weight?, options? }', term);
      const t = term as Record<string, unknown>;
      for (const key of Object.keys(t)) {
        if (!['kind', 'weight', 'options'].includes(key)) throw new TypeError(`Unknown loss term key '${key}' in options.loss[${k}] (known: kind, weight, options)`);
      }
      if (!is.oneOf(t.kind, LOSS_TERM_KINDS)) throw invalidParameterError(`options.loss[${k}].kind`, `one of ${LOSS_TERM_KINDS.join(', ')}`, t.kind);
      const weight = t.weight ?? 1;
      assertNumber(`options.loss[${k}].weight`, weight, 0);
      loss.push({ kind: t.kind, weight, options: checkLossOptions(t.options) });
    });
  }
  if (task === 'segment' && loss.length === 0) throw invalidParameterError('options.loss', 'at least one loss term for the segment task', o.loss);
  const spec: NativeTrainEngineSpec = { optimizer, loss, task };
  if (o.accumulation !== undefined) {
    assertInteger('options.accumulation', o.accumulation, 1, 4096);
    spec.accumulation = o.accumulation;
  }
  if (o.gradClip !== undefined) {
    assertNumber('options.gradClip', o.gradClip, 0);
    spec.gradClip = o.gradClip;
  }
  if (o.scaler !== undefined) spec.scaler = checkScaler(o.scaler);
  if (o.cudaGraphs !== undefined) {
    if (!is.oneOf(o.cudaGraphs, ['auto', 'on', 'off'] as const)) throw invalidParameterError('options.cudaGraphs', "'auto', 'on' or 'off'", o.cudaGraphs);
    spec.cudaGraphs = o.cudaGraphs;
  }
  for (const key of ['labelWeight', 'maskWeight', 'auxWeight'] as const) {
    const value = o[key];
    if (value !== undefined) {
      assertNumber(`options.${key}`, value, 0);
      spec[key] = value;
    }
  }
  return spec;
}

export class TrainEngine {
  #handle: NativeTrainEngineHandle | undefined;
  /** The model this engine trains. */
  readonly model: Model;
  readonly options: Readonly<TrainEngineOptions>;
  readonly accumulation: number;

  private constructor(handle: NativeTrainEngineHandle, model: Model, options: TrainEngineOptions) {
    this.#handle = handle;
    this.model = model;
    this.options = options;
    this.accumulation = options.accumulation ?? 1;
  }

  /**
   * An engine over `model`'s parameters (synchronous: it only builds the optimizer's groups).
   * Throws, naming the option, on a bad spec, and when a classification loss is asked of a model
   * without a classification head.
   */
  static create(model: Model, options: TrainEngineOptions): TrainEngine {
    if (typeof model !== 'object' || model === null || typeof (model as Model).describe !== 'function') {
      throw invalidParameterError('model', 'a Model', model);
    }
    const spec = checkOptions(options);
    const handle = ensureRuntime().createTrainEngine(model.native, spec);
    return new TrainEngine(handle, model, { ...options });
  }

  private get handle(): NativeTrainEngineHandle {
    if (this.#handle === undefined) throw new Error('TrainEngine has been disposed');
    return this.#handle;
  }

  /**
   * One training call in train mode (the model is switched to it): forward, loss, backward and,
   * every `accumulation` calls, clip + optimizer step + zero grad, all in one native task.
   * `images` N x C x H x W (float), `masks` N x classes x H x W (0/1 or soft), `labels` N or N x 1
   * (classify task, or labelWeight > 0). A non-finite loss applies nothing and returns
   * `finite: false`.
   */
  async step(images: Tensor, masks: Tensor, labels?: Tensor): Promise<StepResult> {
    if (!(images instanceof Tensor)) throw invalidParameterError('images', 'a Tensor', images);
    if (!(masks instanceof Tensor)) throw invalidParameterError('masks', 'a Tensor', masks);
    if (labels !== undefined && !(labels instanceof Tensor)) throw invalidParameterError('labels', 'a Tensor or undefined', labels);
    const is4 = images.shape;
    const ms = masks.shape;
    if (is4.length !== 4) throw invalidParameterError('images', 'a 4-D batch (N x C x H x W)', `shape [${is4.join(', ')}]`);
    if (ms.length !== 4 || ms[0] !== is4[0] || ms[2] !== is4[2] || ms[3] !== is4[3]) {
      throw new RangeError(`Expected masks of shape [${is4[0]}, classes, ${is4[2]}, ${is4[3]}] (the images' batch and size) but received [${ms.join(', ')}]`);
    }
    return ensureRuntime().trainEngineStep(this.handle, images.native, masks.native, labels?.native);
  }

  /** The CUDA graph's state: mode, whether a graph is live, counters and why the last step ran eagerly (waits for a running step). */
  graphStatus(): GraphStatus {
    return ensureRuntime().trainEngineGraphStatus(this.handle);
  }

  /** The optimizer's parameter groups with their current learning rates. */
  get groups(): OptimizerGroup[] {
    return ensureRuntime().trainEngineGroups(this.handle);
  }

  /** Sets a group's learning rate (applied before the next step; never waits for a running step). */
  setLr(group: number, lr: number): void {
    assertInteger('group', group, 0);
    assertNumber('lr', lr, 0);
    ensureRuntime().trainEngineSetLr(this.handle, group, lr);
  }

  /** Sets every group's learning rate to its initial one times `factor` (how schedules drive the engine). */
  scaleLr(factor: number): void {
    assertNumber('factor', factor, 0);
    ensureRuntime().trainEngineScaleLr(this.handle, factor);
  }

  /**
   * Makes this engine's steps data-parallel over a process group (`distributed.ProcessGroup`):
   * c10d's Reducer all-reduces and averages the gradients in buckets of `bucketMb` MiB while
   * backward runs (calls that only accumulate skip it), the ranks agree on a non-finite loss, and
   * with `broadcastBuffers` rank 0's BatchNorm statistics are broadcast before each forward
   * (DistributedDataParallel's defaults: 25 MiB, true). Every rank must call `step` in lockstep.
   * With `syncBatchNorm` (default false) the training forward's BatchNorm layers normalise with
   * the statistics of the global batch, all ranks together (torch.nn.SyncBatchNorm); the model
   * itself keeps ordinary BatchNorm (checkpoints, exports, eval). Returns the BatchNorm layers
   * synchronised (0 without `syncBatchNorm`).
   */
  attachDistributed(group: { readonly native: NativeProcessGroupHandle }, options: { bucketMb?: number; broadcastBuffers?: boolean; syncBatchNorm?: boolean } = {}): number {
    const bucketMb = options.bucketMb ?? 25;
    assertNumber('options.bucketMb', bucketMb, 0.001);
    return ensureRuntime().attachDistributed(this.handle, group.native, bucketMb, options.broadcastBuffers ?? true, options.syncBatchNorm ?? false);
  }

  /** Calls since the last optimizer step (0 .. accumulation - 1). */
  get pending(): number {
    return ensureRuntime().trainEnginePending(this.handle);
  }

  /** The optimizer state as named tensors (copies, "optimizer/..." names): pass to `model.save({ optimizer })`. */
  async optimizerState(): Promise<Map<string, Tensor>> {
    const entries = await ensureRuntime().trainEngineOptimizerState(this.handle);
    return new Map(entries.map(([name, t]) => [name, new Tensor(t)]));
  }

  /** Restores `optimizerState()` (e.g. `Model.loadCheckpoint(path).optimizer`); drops accumulated gradients. */
  async loadOptimizerState(state: Map<string, Tensor>): Promise<void> {
    if (!(state instanceof Map)) throw invalidParameterError('state', 'a Map of name -> Tensor', state);
    for (const [name, t] of state) {
      if (!is.string(name) || !(t instanceof Tensor)) throw invalidParameterError('state', 'a Map of name -> Tensor', state);
    }
    await ensureRuntime().trainEngineLoadOptimizerState(this.handle, [...state].map(([name, t]) => [name, t.native]));
  }

  /** Frees the optimizer state now (the model stays). */
  dispose(): void {
    if (this.#handle !== undefined) ensureRuntime().trainEngineDispose(this.#handle);
    this.#handle = undefined;
  }

  get disposed(): boolean {
    return this.#handle === undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
