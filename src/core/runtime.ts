/**
 * The native runtime: loading and configuring the addon (threads, seeding), the report behind
 * `pneumo-native info`, and the smoke forward/backward pass.
 */
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { loadBinding } from '../native/binding.js';
import type { NativeBinding, NativeCounters, NativeCudaDevice, NativeCudaMemoryStats, NativeCudnnOptions, NativeSmokeResult } from '../native/binding.js';
import { packageVersion } from './package-info.js';
import { cpuBf16Support, resolvePrecision } from '../models/precision.js';
import type { CpuBf16Support, Precision } from '../models/precision.js';
import { assertInteger, invalidParameterError, is } from './validate.js';

let initialized = false;

/** The thread count used when none is set: $PNEUMO_THREADS, else every available core. */
export function defaultThreads(): number {
  const env = process.env.PNEUMO_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw invalidParameterError('$PNEUMO_THREADS', 'a positive integer', env);
    return n;
  }
  return availableParallelism();
}

/**
 * Loads the addon and applies the defaults once: LibTorch's intra-op threads set to the machine's
 * cores (LibTorch's own default on some builds is 1).
 */
export function ensureRuntime(): NativeBinding {
  const binding = loadBinding();
  if (!initialized) {
    binding.setNumThreads(defaultThreads());
    initialized = true;
  }
  return binding;
}

/** Sets LibTorch's intra-op thread count for all subsequent native work. */
export function setThreads(threads: number): void {
  assertInteger('threads', threads, 1, 1024);
  ensureRuntime().setNumThreads(threads);
}

/** LibTorch's intra-op thread count. */
export function getThreads(): number {
  return ensureRuntime().getNumThreads();
}

/** Seeds LibTorch's random generators (CPU and CUDA). */
export function manualSeed(seed: number | bigint): void {
  if (typeof seed === 'bigint' ? seed < 0n : !Number.isSafeInteger(seed) || seed < 0) {
    throw invalidParameterError('seed', 'a non-negative integer', seed);
  }
  ensureRuntime().manualSeed(seed);
}

/**
 * cuDNN's process-wide switches. `benchmark`: autotune convolution algorithms per input shape
 * (faster for fixed-size training; the first step of each shape is slower). `deterministic`:
 * only deterministic algorithms, and no autotuning (reproducible CUDA runs). Returns what is in
 * force. No effect without CUDA.
 */
export function setCudnnOptions(options: { benchmark?: boolean; deterministic?: boolean; allowTf32?: boolean }): NativeCudnnOptions {
  if (typeof options !== 'object' || options === null) throw invalidParameterError('options', 'an object { benchmark, deterministic, allowTf32 }', options);
  for (const key of ['benchmark', 'deterministic', 'allowTf32'] as const) {
    if (options[key] !== undefined && !is.bool(options[key])) throw invalidParameterError(`options.${key}`, 'a boolean or undefined', options[key]);
  }
  return ensureRuntime().setCudnnOptions(options.benchmark, options.deterministic, options.allowTf32);
}

/**
 * Bytes the CUDA caching allocator holds on `device` (allocated and reserved, current and peak),
 * after waiting for the device. `resetPeak` restarts the peaks from the current values.
 */
export function cudaMemoryStats(device = 0, resetPeak = false): NativeCudaMemoryStats {
  assertInteger('device', device, 0, 1024);
  return ensureRuntime().cudaMemoryStats(device, resetPeak);
}

/** Native task and memory counters (for monitoring and leak tests). */
export function counters(): NativeCounters {
  return ensureRuntime().counters();
}

/**
 * Caps the bytes of large CPU tensor blocks kept cached for reuse (default a quarter of physical
 * memory and at least 1 GiB, or $PNEUMO_CPU_CACHE_MB). Reuse spares page faults in training
 * loops, as long as the cap holds a step's activations; the cap bounds RSS.
 */
export function setCpuCacheLimit(bytes: number): void {
  assertInteger('bytes', bytes, 0, Number.MAX_SAFE_INTEGER);
  ensureRuntime().setCpuCacheLimit(bytes);
}

/** Returns every cached CPU tensor block to the operating system now. */
export function emptyCpuCache(): void {
  ensureRuntime().emptyCpuCache();
}

/** The device used when none is given: the first GPU when CUDA is available, else the CPU. */
export async function defaultDevice(): Promise<string> {
  const info = await ensureRuntime().runtimeInfo();
  return info.cudaAvailable ? 'cuda:0' : 'cpu';
}

/** Which BLAS the process loaded, read from the mapped libraries (Linux) — the one matmuls use. */
export interface BlasInfo {
  name: string;
  libraries: string[];
  /** True when only the slow reference BLAS is loaded. */
  slow: boolean;
}

export function detectBlas(): BlasInfo {
  const maps = '/proc/self/maps';
  if (!existsSync(maps)) return { name: 'unknown (no /proc/self/maps)', libraries: [], slow: false };
  const libs = [
    ...new Set(
      readFileSync(maps, 'utf8')
        .split('\n')
        .map((line) => line.trim().split(/\s+/)[5] ?? '')
        .filter((path) => /\.so/.test(path) && /(blas|mkl|blis|lapack)/i.test(path)),
    ),
  ];
  const has = (re: RegExp) => libs.some((l) => re.test(l));
  let name = 'none loaded';
  let slow = false;
  if (has(/mkl/i)) name = 'Intel MKL';
  else if (has(/openblas/i)) name = has(/openblas-pthread/) ? 'OpenBLAS (pthread)' : has(/openblas-openmp/) ? 'OpenBLAS (OpenMP)' : 'OpenBLAS';
  else if (has(/blis/i)) name = 'BLIS';
  else if (has(/libblas\.so/)) {
    name = 'reference BLAS (slow: install libopenblas0-pthread)';
    slow = true;
  }
  return { name, libraries: libs, slow };
}

/** Everything `pneumo-native info` reports. */
export interface RuntimeReport {
  packageVersion: string;
  addonVersion: string;
  napiVersion: number;
  node: string;
  platform: string;
  libtorch: { version: string; builtWithCuda: boolean };
  cuda: { available: boolean; deviceCount: number; devices: NativeCudaDevice[]; cudnn: { available: boolean; version: number | null } };
  threads: { intraOp: number; interOp: number; cores: number; openmp: boolean };
  mkldnn: boolean;
  blas: BlasInfo;
  defaultDevice: string;
  /** What `precision: 'auto'` resolves to on the CPU and on each CUDA device, and the CPU's bf16 flags. */
  precision: { cpu: CpuBf16Support; autoCpu: Precision; autoCuda: Precision[] };
}

/** Collects the runtime report (versions, CUDA and cuDNN, threads, BLAS). */
export async function runtimeReport(): Promise<RuntimeReport> {
  const binding = ensureRuntime();
  const info = await binding.runtimeInfo();
  return {
    packageVersion: packageVersion(),
    addonVersion: binding.version,
    napiVersion: binding.napiVersion,
    node: process.versions.node,
    platform: `${process.platform}-${process.arch}`,
    libtorch: { version: info.torchVersion, builtWithCuda: info.builtWithCuda },
    cuda: {
      available: info.cudaAvailable,
      deviceCount: info.cudaDeviceCount,
      devices: info.cudaDevices,
      cudnn: { available: info.cudnnAvailable, version: info.cudnnAvailable ? info.cudnnVersion : null },
    },
    threads: { intraOp: info.intraOpThreads, interOp: info.interOpThreads, cores: availableParallelism(), openmp: info.openmp },
    mkldnn: info.mkldnn,
    blas: detectBlas(),
    defaultDevice: info.cudaAvailable ? 'cuda:0' : 'cpu',
    precision: (() => {
      const hardware = { cudaCapabilities: info.cudaDevices.map((d) => d.computeCapability), cpu: cpuBf16Support() };
      return {
        cpu: hardware.cpu,
        autoCpu: resolvePrecision('auto', 'cpu', hardware),
        autoCuda: info.cudaDevices.map((d) => resolvePrecision('auto', `cuda:${d.index}`, hardware)),
      };
    })(),
  };
}

export interface SmokeOptions {
  batch?: number;
  size?: number;
  steps?: number;
  device?: string;
  seed?: number;
}

/**
 * Trains a tiny conv net for a few SGD steps on random data, off the event loop: proves that
 * LibTorch's forward pass, autograd and optimizer work here, and times a step.
 */
export async function smokeTrain(options: SmokeOptions = {}): Promise<NativeSmokeResult> {
  const { batch = 2, size = 128, steps = 20, seed = 42 } = options;
  assertInteger('batch', batch, 1, 4096);
  assertInteger('size', size, 4, 8192);
  assertInteger('steps', steps, 1, 1_000_000);
  assertInteger('seed', seed, 0, Number.MAX_SAFE_INTEGER);
  const device = options.device ?? (await defaultDevice());
  if (!is.string(device)) throw invalidParameterError('device', 'a device string', device);
  return ensureRuntime().smokeTrain(batch, size, steps, device, seed);
}
