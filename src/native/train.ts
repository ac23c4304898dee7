/**
 * The training slice of the N-API boundary: native/binding/train.cc over native/losses/loss_api.h,
 * native/optim/optim_api.h and the engine of native/train/train_api.h. Each option set has one
 * type here: NativeLossOptions, NativeOptimizerSpec, NativeTrainEngineSpec (with NativeLossTerm and
 * NativeGradScalerSpec); src/training re-uses them.
 */
import type { NativeModel } from './model.js';
import type { NativeNamedTensors, NativeTensor } from './tensor.js';

/** Loss names of `lossForwardBackward` (native/losses/loss_api.h). */
export type NativeLossKind = 'combo' | 'combo-reference' | 'soft-dice' | 'balanced-bce' | 'lovasz';

/**
 * Options of every loss kind; each kind reads its own (defaults in loss_api.h). The one TypeScript
 * declaration of this option set (src/training's `LossOptions` is this type); parsed natively by
 * lossOptionsArg in native/binding/train.cc into pn::LossOptions.
 */
export interface NativeLossOptions {
  /** combo: weight of the BCE term (default 1). */
  bceWeight?: number;
  /** combo: weight of the Dice term (default 1). */
  diceWeight?: number;
  /** combo: weight of the focal term (default 1). */
  focalWeight?: number;
  /** combo: Dice per image then averaged, instead of over the whole batch (default false). */
  perImageDice?: boolean;
  /** soft-dice: smoothing added to numerator and denominator (default 0.01). */
  smooth?: number;
  /** balanced-bce: weight of the positive pixels' mean BCE (default 0.25). */
  alpha?: number;
  /** lovasz: hinge margin of positive pixels (default 5). */
  positiveMargin?: number;
  /** lovasz: hinge margin of negative pixels (default 1). */
  negativeMargin?: number;
  /** lovasz: average with the loss of the flipped problem (default true). */
  symmetric?: boolean;
}

export interface NativeLossResult {
  loss: number;
  grad: NativeTensor;
}

/**
 * What `createOptimizer` builds and the engine's optimizer: the one TypeScript declaration of the
 * optimizer's options (src/training's `OptimizerSpec` is this type); parsed natively by
 * optimizerSpecArg in native/binding/train.cc into pn::OptimizerSpec (native/optim/optim_api.h).
 */
export interface NativeOptimizerSpec {
  algorithm: 'adam' | 'adamw' | 'sgd' | 'radam';
  /** Learning rate of parameters no `lrRules` entry matches (default 1e-3). */
  lr?: number;
  /** L2 penalty (adam, sgd, radam) or decoupled decay (adamw); default 0. */
  weightDecay?: number;
  /** Also decay 1-D parameters (biases, norm weights); default false. */
  decayBiasesAndNorms?: boolean;
  beta1?: number;
  beta2?: number;
  eps?: number;
  amsgrad?: boolean;
  /** sgd only. */
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  /** [name prefix, lr] pairs, e.g. [['encoder.', 1e-5], ['decoder.', 1e-4]]; the first match wins. */
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

/** One term of the engine's segmentation loss: weight * kind(mask logits, masks). */
export interface NativeLossTerm {
  kind: NativeLossKind;
  weight?: number;
  options?: NativeLossOptions;
}

/**
 * What `createTrainEngine` builds (native/train/train_api.h, TrainEngineSpec); parsed natively by
 * engineSpecArg in native/binding/train.cc. src/training's `TrainEngineOptions` is this type with
 * its own (narrower) loss terms.
 */
export interface NativeTrainEngineSpec {
  optimizer: NativeOptimizerSpec;
  /** Summed: sum(weight * term(logits, masks)). Required for the segment task; ignored by classify. */
  loss: NativeLossTerm[];
  /** Optimizer step every N calls (default 1); each call's loss is divided by N before backward. */
  accumulation?: number;
  /** Global-norm gradient clip before each optimizer step (0 or undefined: off). */
  gradClip?: number;
  /**
   * 'segment' (default): the loss terms on the mask logits. 'classify' (SPEC 5, second place):
   * labelWeight * (BCE + focal) on the classification logit against `labels`, plus
   * maskWeight * BCE on the mask logits. Both need a model with `classificationHead`.
   */
  task?: 'segment' | 'classify';
  /** classify: weight of the label loss (default 1). segment: adds labelWeight * BCE on the label logit when > 0 (default 0). */
  labelWeight?: number;
  /**
   * Models with auxiliary heads (bisenet, daunet): weight of the mask loss on each auxiliary
   * output (segment: the loss terms; classify: maskWeight x BCE). Default 0.4, the 42nd place's.
   */
  auxWeight?: number;
  /** classify: weight of the mask BCE (default 1). */
  maskWeight?: number;
  /**
   * Dynamic loss scaling for fp16 (torch.cuda.amp.GradScaler's rule). `mode` 'auto' (default)
   * turns it on exactly when the model's precision is fp16 on CUDA; 'on' forces it (any
   * precision, e.g. to test it on a CPU); 'off' is refused with fp16. Defaults: initScale 65536,
   * growthFactor 2, backoffFactor 0.5, growthInterval 2000. Its state is part of
   * `optimizerState()` ("scaler/scale", "scaler/growth_tracker").
   */
  scaler?: NativeGradScalerSpec;
  /**
   * Whole-step CUDA graphs (native/train/graphs.cpp). 'auto' (default): on a CUDA model the step
   * (forward, loss, backward, clip, fused optimizer update) is captured after 3 eager steps at the
   * same batch shape and then replayed; a different shape runs eagerly (3 in a row recapture), and
   * steps that cannot be captured (CPU, gradient accumulation, data-parallel, RAdam, LibTorch
   * before 2.4) run eagerly with the reason in `graphStatus()`. 'on': the same, but a step that
   * cannot be captured throws, naming the reason. 'off': always eager.
   */
  cudaGraphs?: 'auto' | 'on' | 'off';
}

/** Where an engine's CUDA graph stands (native/train/train_api.h, TrainEngineGraphStatus; `TrainEngine.graphStatus()`). */
export interface NativeGraphStatus {
  mode: 'auto' | 'on' | 'off';
  /** A captured graph is live: the next step at its batch shape replays it. */
  active: boolean;
  captures: number;
  replays: number;
  eagerSteps: number;
  /** Why the last step ran eagerly ('' when it replayed the graph). */
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

/** What one engine step reports (`TrainEngine.step`'s `StepResult`). */
export interface NativeTrainStepResult {
  /** This call's loss (before the division by `accumulation`). */
  loss: number;
  /** Global gradient norm before clipping; NaN when the optimizer did not step. */
  gradNorm: number;
  /** false: the loss (or the gradient norm) was not finite; nothing was applied and gradients were zeroed. */
  finite: boolean;
  /** Whether the optimizer stepped on this call (every `accumulation` calls). */
  stepped: boolean;
  /** The loss scale after this call (0 when the gradient scaler is off). */
  lossScale: number;
  /** The scaler found non-finite gradients: the step was skipped and the scale halved (not a divergence). */
  overflow: boolean;
  /** This call ran as a replay of the engine's CUDA graph (see `cudaGraphs`). */
  graphed: boolean;
}

/** An opaque, type-tagged handle to a native training engine. */
export interface NativeTrainEngineHandle {
  readonly __brand: 'NativeTrainEngineHandle';
}

/** The training exports: losses, the standalone optimizer, the training engine. */
export interface TrainBinding {
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
}
