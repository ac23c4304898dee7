/**
 * Segmentation losses (SPEC sections 4-6), evaluated natively: the first place's fused combo loss
 * (BCE + Dice + Focal), the second place's soft Dice, class-balanced BCE and the symmetric Lovasz
 * hinge. The trainer calls them from native code; `lossForwardBackward` runs one forward and
 * backward from JS (tests, benchmarks, tools).
 */
import type { NativeLossKind, NativeLossOptions } from '../native/binding.js';
import { ensureRuntime } from '../core/runtime.js';
import { Tensor } from '../core/tensor.js';
import { assertNumber, invalidParameterError, is } from '../core/validate.js';

/** Loss names: `combo-reference` is the combo loss as a plain ATen composition (the unfused baseline). */
export type LossKind = NativeLossKind;

export const LOSS_KINDS: readonly LossKind[] = ['combo', 'combo-reference', 'soft-dice', 'balanced-bce', 'lovasz'];

/** Options of every loss kind; each kind reads its own. One declaration: `NativeLossOptions` (src/native/train.ts). */
export type LossOptions = NativeLossOptions;

/** The first place's combo-loss weights (bce, dice, focal) by use. */
export const COMBO_WEIGHTS = {
  /** Best on validation. */
  validation: { bceWeight: 3, diceWeight: 1, focalWeight: 4 },
  /** Best public score. */
  public: { bceWeight: 1, diceWeight: 1, focalWeight: 1 },
  /** The ResNet50 UNet. */
  resnet50: { bceWeight: 2, diceWeight: 1, focalWeight: 2 },
} as const satisfies Record<string, LossOptions>;

export interface LossResult {
  loss: number;
  /** dLoss/dlogits, the logits' shape (float32; float64 for float64 logits). Dispose it when done. */
  grad: Tensor;
}

const NUMBER_OPTIONS = ['bceWeight', 'diceWeight', 'focalWeight', 'smooth', 'alpha', 'positiveMargin', 'negativeMargin'] as const;
const BOOLEAN_OPTIONS = ['perImageDice', 'symmetric'] as const;

function checkOptions(options: unknown): NativeLossOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw invalidParameterError('options', 'an object', options);
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!(NUMBER_OPTIONS as readonly string[]).includes(key) && !(BOOLEAN_OPTIONS as readonly string[]).includes(key)) {
      throw new TypeError(`Unknown loss option '${key}' (known: ${[...NUMBER_OPTIONS, ...BOOLEAN_OPTIONS].join(', ')})`);
    }
  }
  const out: NativeLossOptions = {};
  for (const key of NUMBER_OPTIONS) {
    const value = o[key];
    if (value !== undefined) {
      assertNumber(`options.${key}`, value);
      out[key] = value;
    }
  }
  if (o.smooth !== undefined) assertNumber('options.smooth', o.smooth, 0);
  if (o.alpha !== undefined) assertNumber('options.alpha', o.alpha, 0, 1);
  for (const key of BOOLEAN_OPTIONS) {
    const value = o[key];
    if (value !== undefined) {
      if (!is.bool(value)) throw invalidParameterError(`options.${key}`, 'a boolean', value);
      out[key] = value;
    }
  }
  return out;
}

/**
 * Evaluates loss `kind` of `logits` ([B, ...] raw scores) against `target` (same shape, 0/1 or soft
 * labels, any dtype) and its gradient with respect to the logits. Neither input is modified.
 */
export async function lossForwardBackward(kind: LossKind, logits: Tensor, target: Tensor, options?: LossOptions): Promise<LossResult> {
  if (!is.oneOf(kind, LOSS_KINDS)) throw invalidParameterError('kind', `one of ${LOSS_KINDS.join(', ')}`, kind);
  if (!(logits instanceof Tensor)) throw invalidParameterError('logits', 'a Tensor', logits);
  if (!(target instanceof Tensor)) throw invalidParameterError('target', 'a Tensor', target);
  const native = checkOptions(options);
  const ls = logits.shape;
  const ts = target.shape;
  if (ls.length < 1 || ls.length !== ts.length || ls.some((d, i) => d !== ts[i])) {
    throw new RangeError(`target shape [${ts.join(', ')}] does not match logits shape [${ls.join(', ')}]`);
  }
  const result = await ensureRuntime().lossForwardBackward(kind, logits.native, target.native, native);
  return { loss: result.loss, grad: new Tensor(result.grad) };
}

/** @internal Validates loss options (shared with TrainEngine). */
export { checkOptions as checkLossOptions };
