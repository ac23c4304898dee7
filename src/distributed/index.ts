/**
 * Data-parallel training over PyTorch's c10d (native/distributed/): a process group joined the
 * way `torchrun` joins one (rank 0 serves a TCPStore at MASTER_ADDR:MASTER_PORT), Gloo on CPU and
 * NCCL on CUDA builds, and the pieces the trainer shards work with: each epoch's sampled order cut
 * into per-rank batches, the validation images split into contiguous per-rank ranges, and
 * all-gather / all-reduce to put the results back together. No collective is implemented here:
 * every one is a c10d call.
 *
 * ```ts
 * const env = distributedEnv();                       // RANK, WORLD_SIZE, ... or null
 * const group = await ProcessGroup.init({ ...env!, backend: 'gloo', timeoutSeconds: 300 });
 * await trainExperiment(config, { distributed: { group } });
 * group.destroy();
 * ```
 */
import { ensureRuntime } from '../core/runtime.js';
import { assertInteger, assertNumber, invalidParameterError } from '../core/validate.js';
import type { Model } from '../models/model.js';
import type { NativeProcessGroupHandle } from '../native/binding.js';

/** c10d backends: Gloo (CPU, every build) and NCCL (CUDA builds with NCCL). */
export type DistributedBackend = 'gloo' | 'nccl';

/** What this build of the addon offers. */
export interface DistributedInfo {
  available: boolean;
  /** Why not, when unavailable. */
  reason: string;
  backends: DistributedBackend[];
}

/** Whether this build has c10d process groups, and which backends. */
export function distributedInfo(): DistributedInfo {
  const info = ensureRuntime().distributedInfo();
  return { available: info.available, reason: info.reason, backends: info.backends as DistributedBackend[] };
}

/** A process's place in a data-parallel run, as torchrun describes it in the environment. */
export interface DistributedEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  masterAddr: string;
  masterPort: number;
}

function envInteger(env: NodeJS.ProcessEnv, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = env[name];
  const value = raw === undefined || raw.trim() === '' ? NaN : Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`Expected an integer between ${min} and ${max} in the environment variable ${name} but received ${raw === undefined ? 'nothing (unset)' : JSON.stringify(raw)}`);
  }
  return value;
}

/**
 * The torchrun environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`; SLURM
 * users export the same names), or null when `WORLD_SIZE` and `RANK` are both unset (a plain run).
 * A partial or malformed environment is an error naming the variable.
 */
export function distributedEnv(env: NodeJS.ProcessEnv = process.env): DistributedEnv | null {
  if (env.WORLD_SIZE === undefined && env.RANK === undefined) return null;
  const worldSize = envInteger(env, 'WORLD_SIZE', 1);
  const rank = envInteger(env, 'RANK', 0, worldSize - 1);
  const localRank = env.LOCAL_RANK === undefined ? rank : envInteger(env, 'LOCAL_RANK', 0);
  const masterAddr = env.MASTER_ADDR ?? (worldSize === 1 ? '127.0.0.1' : '');
  if (masterAddr === '') throw new RangeError(`Expected MASTER_ADDR in the environment (the host of rank 0) for a run of WORLD_SIZE ${worldSize} but it is unset`);
  const masterPort = env.MASTER_PORT === undefined && worldSize === 1 ? 29500 : envInteger(env, 'MASTER_PORT', 1, 65535);
  return { rank, worldSize, localRank, masterAddr, masterPort };
}

export interface ProcessGroupOptions extends DistributedEnv {
  /** Default 'gloo'. */
  backend?: DistributedBackend;
  /** The rendezvous and every collective fail after this many seconds (default 300): never a hang. */
  timeoutSeconds?: number;
}

/**
 * A c10d process group: every rank of a run creates one with the same master address and port.
 * Collectives must be called in the same order on every rank.
 */
export class ProcessGroup {
  #handle: NativeProcessGroupHandle | undefined;

  private constructor(
    handle: NativeProcessGroupHandle,
    readonly rank: number,
    readonly worldSize: number,
    readonly localRank: number,
    readonly backend: DistributedBackend,
    readonly timeoutSeconds: number,
  ) {
    this.#handle = handle;
  }

  /**
   * Joins the group: resolves once all `worldSize` ranks have connected; rejects after the
   * timeout (naming this rank and the master address) or at once when this build has no c10d.
   */
  static async init(options: ProcessGroupOptions): Promise<ProcessGroup> {
    const backend = options.backend ?? 'gloo';
    if (backend !== 'gloo' && backend !== 'nccl') throw invalidParameterError('options.backend', "'gloo' or 'nccl'", backend);
    assertInteger('options.worldSize', options.worldSize, 1, 65536);
    assertInteger('options.rank', options.rank, 0, options.worldSize - 1);
    assertInteger('options.localRank', options.localRank, 0);
    assertInteger('options.masterPort', options.masterPort, 1, 65535);
    const timeoutSeconds = options.timeoutSeconds ?? 300;
    assertNumber('options.timeoutSeconds', timeoutSeconds, 0.001);
    if (typeof options.masterAddr !== 'string' || options.masterAddr === '') throw invalidParameterError('options.masterAddr', 'a host name or address', options.masterAddr);
    const info = distributedInfo();
    if (!info.available) throw new Error(info.reason);
    const handle = await ensureRuntime().createProcessGroup({
      backend,
      masterAddr: options.masterAddr,
      masterPort: options.masterPort,
      rank: options.rank,
      worldSize: options.worldSize,
      timeoutSeconds,
    });
    return new ProcessGroup(handle, options.rank, options.worldSize, options.localRank, backend, timeoutSeconds);
  }

  /** The native handle (for `TrainEngine.attachDistributed`). */
  get native(): NativeProcessGroupHandle {
    if (this.#handle === undefined) throw new Error('the process group has been destroyed');
    return this.#handle;
  }

  /** Whether this is rank 0 (the rank that writes checkpoints, logs and curves). */
  get isMain(): boolean {
    return this.rank === 0;
  }

  /** c10d barrier. */
  barrier(): Promise<void> {
    return ensureRuntime().processGroupBarrier(this.native);
  }

  /** Every rank's bytes (any lengths), in rank order (c10d all_gather). */
  allGatherBytes(bytes: Uint8Array): Promise<Uint8Array[]> {
    if (!(bytes instanceof Uint8Array)) throw invalidParameterError('bytes', 'a Uint8Array', bytes);
    return ensureRuntime().processGroupAllGatherBytes(this.native, bytes);
  }

  /** The sums over ranks of `values` (c10d all_reduce in float64). */
  async allReduceSum(values: ArrayLike<number>): Promise<number[]> {
    return Array.from(await ensureRuntime().processGroupAllReduceSum(this.native, Float64Array.from(values)));
  }

  /** Makes every rank's model equal to `root`'s: parameters and buffers (c10d broadcast, coalesced). */
  broadcastModel(model: Model, root = 0): Promise<void> {
    assertInteger('root', root, 0, this.worldSize - 1);
    return ensureRuntime().processGroupBroadcastModel(this.native, model.native, root);
  }

  /** Frees the group (its sockets and threads) now. */
  destroy(): void {
    if (this.#handle === undefined) return;
    const handle = this.#handle;
    this.#handle = undefined;
    ensureRuntime().destroyProcessGroup(handle);
  }
}

/**
 * One rank's share of an epoch. The sampled order is cut into global batches of
 * `batchSize * worldSize` (the order padded by wrapping around to a multiple of `worldSize`, as
 * torch's DistributedSampler pads, so every rank runs the same number of steps); rank r takes the
 * r-th equal slice of each global batch. Concatenating the ranks' batches of a step in rank order
 * gives the global batch: 2 ranks at batch B see what 1 process at batch 2B sees.
 * Returns this rank's indices (its batches back to back) and the step count.
 */
export function shardEpoch(indices: ArrayLike<number>, batchSize: number, rank: number, worldSize: number): { indices: Int32Array; steps: number } {
  assertInteger('batchSize', batchSize, 1);
  assertInteger('worldSize', worldSize, 1);
  assertInteger('rank', rank, 0, worldSize - 1);
  const n = indices.length;
  if (n === 0) return { indices: new Int32Array(0), steps: 0 };
  const padded = Math.ceil(n / worldSize) * worldSize;
  const global = batchSize * worldSize;
  const steps = Math.ceil(padded / global);
  const out = new Int32Array(padded / worldSize);
  let o = 0;
  for (let s = 0; s < steps; s++) {
    const start = s * global;
    const size = Math.min(global, padded - start);
    const per = size / worldSize;
    for (let k = 0; k < per; k++) out[o++] = indices[(start + rank * per + k) % n]!;
  }
  return { indices: out, steps };
}

/** Rank `rank`'s contiguous range [start, end) of `n` items (validation): sizes differ by at most one. */
export function shardRange(n: number, rank: number, worldSize: number): { start: number; end: number } {
  assertInteger('n', n, 0);
  assertInteger('worldSize', worldSize, 1);
  assertInteger('rank', rank, 0, worldSize - 1);
  const base = Math.floor(n / worldSize);
  const extra = n % worldSize;
  const start = rank * base + Math.min(rank, extra);
  return { start, end: start + base + (rank < extra ? 1 : 0) };
}

/** Settings of a data-parallel training run (`trainExperiment`'s `distributed` option). */
export interface DistributedTraining {
  group: ProcessGroup;
  /** Gradient bucket size in MiB (DistributedDataParallel's bucket_cap_mb, default 25). */
  bucketMb?: number;
  /** Broadcast rank 0's BatchNorm statistics before each forward (DDP's broadcast_buffers, default true). */
  broadcastBuffers?: boolean;
  /** SyncBatchNorm over the group (default: the config's `training.syncBatchNorm`). */
  syncBatchNorm?: boolean;
}
