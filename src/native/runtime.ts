/**
 * The runtime slice of the N-API boundary: native/binding/runtime.cc over native/core/api.h
 * (threads, seeding, cuDNN, CUDA memory, runtime information, counters, the CPU block cache).
 */
export interface NativeCudaDevice {
  index: number;
  name: string;
  totalMemory: number;
  computeCapability: string;
  multiProcessors: number;
}

export interface NativeCudnnOptions {
  benchmark: boolean;
  deterministic: boolean;
  allowTf32: boolean;
}

/** Bytes held by the CUDA caching allocator for one device. */
export interface NativeCudaMemoryStats {
  allocated: number;
  peakAllocated: number;
  reserved: number;
  peakReserved: number;
}

export interface NativeRuntimeInfo {
  torchVersion: string;
  builtWithCuda: boolean;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  cudnnAvailable: boolean;
  cudnnVersion: number;
  cudaDevices: NativeCudaDevice[];
  intraOpThreads: number;
  interOpThreads: number;
  mkldnn: boolean;
  openmp: boolean;
  parallelInfo: string;
  buildConfig: string;
}

export interface NativeSmokeResult {
  losses: number[];
  msPerStep: number;
  gradientsFinite: boolean;
  gradientNorm: number;
  parameters: number;
  device: string;
}

export interface NativeCounters {
  /** Native tasks waiting for a thread-pool slot. */
  queued: number;
  /** Native tasks executing now. */
  running: number;
  /** Tensor wrappers neither disposed nor finalized. */
  liveTensors: number;
  /** CPU tensor bytes currently reported to V8 as external memory. */
  externalBytes: number;
  /** Bytes of large CPU blocks in use by tensors (the caching allocator). */
  cpuLiveBytes: number;
  /** Bytes of large CPU blocks kept for reuse. */
  cpuCachedBytes: number;
  cpuCacheLimitBytes: number;
  cpuCacheHits: number;
  cpuCacheMisses: number;
}

/** The runtime exports. */
export interface RuntimeBinding {
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  manualSeed(seed: number | bigint): void;
  setCudnnOptions(benchmark?: boolean, deterministic?: boolean, allowTf32?: boolean): NativeCudnnOptions;
  cudaMemoryStats(device: number, resetPeak: boolean): NativeCudaMemoryStats;
  runtimeInfo(): Promise<NativeRuntimeInfo>;
  smokeTrain(batch: number, size: number, steps: number, device: string, seed: number): Promise<NativeSmokeResult>;
  counters(): NativeCounters;
  setCpuCacheLimit(bytes: number): void;
  emptyCpuCache(): void;
}
