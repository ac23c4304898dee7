/**
 * The first place's mask binarisation rule as a value (SPEC section 4): a `(top, area, bottom)`
 * triplet, the validation grid it was searched over, and the check every entry point applies.
 * Training (validation), inference (search, submission) and serving all speak this one type.
 */
import { assertNumber, invalidParameterError } from '../core/validate.js';

/** A (top, area, bottom) triplet of the first place's mask binarisation (SPEC section 4). */
export type Triplet = [top: number, area: number, bottom: number];

/** The first place's validation grid (SPEC section 4). */
export const DEFAULT_TRIPLETS: Triplet[] = [
  [0.75, 1000, 0.3],
  [0.75, 1000, 0.4],
  [0.75, 2000, 0.3],
  [0.75, 2000, 0.4],
  [0.6, 2000, 0.3],
  [0.6, 2000, 0.4],
  [0.6, 3000, 0.3],
  [0.6, 3000, 0.4],
];

/** Throws unless `triplet` is `[top, area, bottom]` with thresholds in [0, 1] and area >= 0. */
export function assertTriplet(name: string, triplet: unknown): asserts triplet is Triplet {
  if (!Array.isArray(triplet) || triplet.length !== 3) throw invalidParameterError(name, 'a [top, area, bottom] triplet', triplet);
  assertNumber(`${name} top`, triplet[0], 0, 1);
  assertNumber(`${name} area`, triplet[1], 0, Number.MAX_SAFE_INTEGER);
  assertNumber(`${name} bottom`, triplet[2], 0, 1);
}
