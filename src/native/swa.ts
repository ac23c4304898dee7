/**
 * The SWA slice of the N-API boundary: native/binding/swa.cc over native/train/train_api.h (SWA).
 */
import type { NativeModel } from './model.js';
import type { NativeNamedTensors, NativeTensor } from './tensor.js';

/** An opaque, type-tagged handle to a BatchNorm recompute in progress. */
export interface NativeBatchNormHandle {
  readonly __brand: 'NativeBatchNormHandle';
}

/** The SWA exports: state-dict averaging and the BatchNorm recompute. */
export interface SwaBinding {
  averageStateDicts(dicts: NativeNamedTensors[], weights?: number[]): Promise<NativeNamedTensors>;
  batchNormRecomputeBegin(model: NativeModel): Promise<NativeBatchNormHandle>;
  batchNormRecomputeAdd(session: NativeBatchNormHandle, batch: NativeTensor): Promise<number>;
  /** Returns the number of BatchNorm layers updated. */
  batchNormRecomputeFinish(session: NativeBatchNormHandle): Promise<number>;
  batchNormRecomputeAbort(session: NativeBatchNormHandle): Promise<void>;
}
