/**
 * Optimizers over named tensors: Adam, AdamW, SGD (momentum, Nesterov) from LibTorch and RAdam
 * (as torch.optim.RAdam), with parameter groups by name prefix (separate encoder/decoder learning
 * rates), weight decay off for 1-D parameters (biases, norms), global-norm gradient clipping and a
 * state dict of named tensors ("optimizer/<param>/exp_avg", ...) for checkpoints.
 *
 * The trainer owns its optimizer natively (native/optim/optim.h); this class drives the same code
 * from JS over tensors made trainable with `makeParameter`. Gradient accumulation: add gradients
 * (backward, or `setGradient(p, g, true)`) N times, then `clipGradNorm`, `step`, `zeroGrad`.
 */
import type { NativeOptimizerGroup, NativeOptimizerHandle, NativeOptimizerSpec } from '../native/binding.js';
import { ensureRuntime } from '../core/runtime.js';
import { Tensor } from '../core/tensor.js';
import { assertInteger, assertNumber, invalidParameterError, is } from '../core/validate.js';

export type OptimizerAlgorithm = NativeOptimizerSpec['algorithm'];
export const OPTIMIZER_ALGORITHMS: readonly OptimizerAlgorithm[] = ['adam', 'adamw', 'sgd', 'radam'];

/** The optimizer's options: one declaration, `NativeOptimizerSpec` (src/native/train.ts). */
export type OptimizerSpec = NativeOptimizerSpec;

/** A parameter group: parameters sharing a learning rate and a weight decay. */
export type OptimizerGroup = NativeOptimizerGroup;

const NUMBER_KEYS = ['lr', 'weightDecay', 'beta1', 'beta2', 'eps', 'momentum', 'dampening'] as const satisfies readonly (keyof OptimizerSpec)[];
const BOOLEAN_KEYS = ['decayBiasesAndNorms', 'amsgrad', 'nesterov'] as const satisfies readonly (keyof OptimizerSpec)[];
/** Every option is checked: adding one to NativeOptimizerSpec without a key list entry fails to compile. */
type UncheckedKey = Exclude<keyof OptimizerSpec, 'algorithm' | 'lrRules' | (typeof NUMBER_KEYS)[number] | (typeof BOOLEAN_KEYS)[number]>;
const allKeysChecked: [UncheckedKey] extends [never] ? true : never = true;
void allKeysChecked;

function checkSpec(spec: unknown): NativeOptimizerSpec {
  if (typeof spec !== 'object' || spec === null) throw invalidParameterError('spec', 'an object', spec);
  const s = spec as Record<string, unknown>;
  const known = ['algorithm', 'lrRules', ...NUMBER_KEYS, ...BOOLEAN_KEYS];
  for (const key of Object.keys(s)) {
    if (!known.includes(key)) throw new TypeError(`Unknown optimizer option '${key}' (known: ${known.join(', ')})`);
  }
  if (!is.oneOf(s.algorithm, OPTIMIZER_ALGORITHMS)) throw invalidParameterError('spec.algorithm', `one of ${OPTIMIZER_ALGORITHMS.join(', ')}`, s.algorithm);
  const out: NativeOptimizerSpec = { algorithm: s.algorithm };
  for (const key of NUMBER_KEYS) {
    const value = s[key];
    if (value !== undefined) {
      assertNumber(`spec.${key}`, value, 0);
      out[key] = value;
    }
  }
  for (const key of BOOLEAN_KEYS) {
    const value = s[key];
    if (value !== undefined) {
      if (!is.bool(value)) throw invalidParameterError(`spec.${key}`, 'a boolean', value);
      out[key] = value;
    }
  }
  if (s.lrRules !== undefined) {
    const rules = s.lrRules;
    if (!Array.isArray(rules) || !rules.every((r) => Array.isArray(r) && r.length === 2 && is.string(r[0]) && is.number(r[1]) && r[1] >= 0)) {
      throw invalidParameterError('spec.lrRules', 'an array of [prefix, lr >= 0] pairs', rules);
    }
    out.lrRules = rules.map((r) => [r[0], r[1]] as [string, number]);
  }
  return out;
}

export class Optimizer {
  #handle: NativeOptimizerHandle | undefined;
  readonly spec: Readonly<OptimizerSpec>;

  private constructor(handle: NativeOptimizerHandle, spec: OptimizerSpec) {
    this.#handle = handle;
    this.spec = spec;
  }

  /**
   * Builds an optimizer over `parameters` ([name, tensor] pairs; the tensors are updated in place,
   * so make them with `makeParameter`). Groups follow `spec.lrRules` and dimensionality.
   */
  static create(parameters: [string, Tensor][], spec: OptimizerSpec): Optimizer {
    if (!Array.isArray(parameters) || parameters.length === 0) throw invalidParameterError('parameters', 'a non-empty array of [name, Tensor] pairs', parameters);
    for (const entry of parameters) {
      if (!Array.isArray(entry) || entry.length !== 2 || !is.string(entry[0]) || !(entry[1] instanceof Tensor)) {
        throw invalidParameterError('parameters', 'an array of [name, Tensor] pairs', parameters);
      }
    }
    const native = checkSpec(spec);
    const handle = ensureRuntime().createOptimizer(parameters.map(([name, t]) => [name, t.native]), native);
    return new Optimizer(handle, { ...spec });
  }

  private get handle(): NativeOptimizerHandle {
    if (this.#handle === undefined) throw new Error('Optimizer has been disposed');
    return this.#handle;
  }

  /** One update from the accumulated gradients (parameters without a gradient are skipped). */
  async step(): Promise<void> {
    await ensureRuntime().optimizerStep(this.handle);
  }

  /** Zeroes every gradient. */
  zeroGrad(): void {
    ensureRuntime().optimizerZeroGrad(this.handle);
  }

  /** The global L2 norm of all gradients. */
  async gradNorm(): Promise<number> {
    return ensureRuntime().optimizerGradNorm(this.handle);
  }

  /** Scales gradients so their global norm is at most `maxNorm` (torch's clip_grad_norm_); returns the norm before. */
  async clipGradNorm(maxNorm: number): Promise<number> {
    assertNumber('maxNorm', maxNorm);
    if (!(maxNorm > 0)) throw invalidParameterError('maxNorm', 'a number > 0', maxNorm);
    return ensureRuntime().optimizerClipGradNorm(this.handle, maxNorm);
  }

  /** The parameter groups with their current learning rates. */
  groups(): OptimizerGroup[] {
    return ensureRuntime().optimizerGroups(this.handle);
  }

  setLr(group: number, lr: number): void {
    assertInteger('group', group, 0);
    assertNumber('lr', lr, 0);
    ensureRuntime().optimizerSetLr(this.handle, group, lr);
  }

  /** Sets every group's learning rate to its initial one times `factor` (how schedules drive groups). */
  scaleLr(factor: number): void {
    assertNumber('factor', factor, 0);
    ensureRuntime().optimizerScaleLr(this.handle, factor);
  }

  /** The state as named tensors (copies): "optimizer/<param>/<field>" and "optimizer/group/<i>/lr". */
  async stateDict(): Promise<[string, Tensor][]> {
    const entries = await ensureRuntime().optimizerStateDict(this.handle);
    return entries.map(([name, t]) => [name, new Tensor(t)]);
  }

  /** Restores a `stateDict()` (same parameter names and shapes). */
  async loadStateDict(state: [string, Tensor][]): Promise<void> {
    if (!Array.isArray(state) || !state.every((e) => Array.isArray(e) && e.length === 2 && is.string(e[0]) && e[1] instanceof Tensor)) {
      throw invalidParameterError('state', 'an array of [name, Tensor] pairs', state);
    }
    await ensureRuntime().optimizerLoadStateDict(this.handle, state.map(([name, t]) => [name, t.native]));
  }

  /** Frees the native optimizer state now (the parameters stay). */
  dispose(): void {
    if (this.#handle !== undefined) ensureRuntime().optimizerDispose(this.#handle);
    this.#handle = undefined;
  }

  get disposed(): boolean {
    return this.#handle === undefined;
  }
}

/** A trainable copy of `value` (a leaf tensor that requires a gradient). */
export function makeParameter(value: Tensor): Tensor {
  if (!(value instanceof Tensor)) throw invalidParameterError('value', 'a Tensor', value);
  return new Tensor(ensureRuntime().makeParameter(value.native));
}

/** Sets the gradient of `parameter` to a copy of `gradient`, or adds it when `accumulate`. */
export function setGradient(parameter: Tensor, gradient: Tensor, accumulate = false): void {
  if (!(parameter instanceof Tensor)) throw invalidParameterError('parameter', 'a Tensor', parameter);
  if (!(gradient instanceof Tensor)) throw invalidParameterError('gradient', 'a Tensor', gradient);
  ensureRuntime().setGradient(parameter.native, gradient.native, accumulate);
}

/** A copy of the gradient of `parameter`, or undefined when it has none. */
export function gradientOf(parameter: Tensor): Tensor | undefined {
  if (!(parameter instanceof Tensor)) throw invalidParameterError('parameter', 'a Tensor', parameter);
  const g = ensureRuntime().gradientOf(parameter.native);
  return g === undefined ? undefined : new Tensor(g);
}

/** @internal Validates an optimizer spec (shared with TrainEngine). */
export { checkSpec as checkOptimizerSpec };
