/**
 * Weight averaging (SPEC 4-5): the first place's top-K checkpoint averaging and the second place's
 * SWA. Average the state dicts natively, load the result, then recompute the BatchNorm statistics
 * over training batches with `model.recomputeBatchNorm(batches)`.
 *
 * ```ts
 * const dicts = await Promise.all(paths.map(async (p) => (await Model.load(p)).stateDict()));
 * await model.loadStateDict(await averageStateDicts(dicts));
 * await model.recomputeBatchNorm(trainBatches);   // leaves the model in eval mode
 * ```
 */
import { ensureRuntime } from '../core/runtime.js';
import { Tensor } from '../core/tensor.js';
import { invalidParameterError, is } from '../core/validate.js';

/**
 * The weighted average of state dicts with the same names and shapes: floating tensors become
 * sum(w_k t_k) with the weights normalised to sum 1 (accumulated in float64, returned in each
 * tensor's dtype); integer tensors (BatchNorm's num_batches_tracked) are copied from the first.
 * Without `weights`, an equal average. The inputs are not modified; the result holds new tensors.
 */
export async function averageStateDicts(dicts: Map<string, Tensor>[], weights?: number[]): Promise<Map<string, Tensor>> {
  if (!Array.isArray(dicts) || dicts.length === 0) throw invalidParameterError('dicts', 'a non-empty array of state dicts (Map of name -> Tensor)', dicts);
  dicts.forEach((d, k) => {
    if (!(d instanceof Map)) throw invalidParameterError(`dicts[${k}]`, 'a Map of name -> Tensor', d);
    for (const [name, t] of d) {
      if (!is.string(name) || !(t instanceof Tensor)) throw invalidParameterError(`dicts[${k}]`, 'a Map of name -> Tensor', d);
    }
  });
  if (weights !== undefined) {
    if (!Array.isArray(weights) || weights.length !== dicts.length) {
      throw invalidParameterError('weights', `an array of ${dicts.length} numbers (one per state dict)`, weights);
    }
    weights.forEach((w, k) => {
      if (!is.number(w) || w < 0) throw invalidParameterError(`weights[${k}]`, 'a finite number >= 0', w);
    });
    if (!(weights.reduce((a, b) => a + b, 0) > 0)) throw invalidParameterError('weights', 'weights with a positive sum', weights);
  }
  const out = await ensureRuntime().averageStateDicts(
    dicts.map((d) => [...d].map(([name, t]) => [name, t.native] as [string, typeof t.native])),
    weights ?? [],
  );
  return new Map(out.map(([name, t]) => [name, new Tensor(t)]));
}
