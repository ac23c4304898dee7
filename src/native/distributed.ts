/**
 * The distributed slice of the N-API boundary: native/binding/distributed.cc over
 * native/distributed/distributed_api.h (c10d).
 */
import type { NativeModel } from './model.js';
import type { NativeTrainEngineHandle } from './train.js';

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

/** The distributed-training exports. */
export interface DistributedBinding {
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
