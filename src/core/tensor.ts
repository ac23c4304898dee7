/**
 * `Tensor`: a LibTorch tensor owned by JavaScript. Creation from a TypedArray copies once (so the
 * caller may reuse the array at once); reading back copies once into a fresh TypedArray. Work that
 * can take more than about a millisecond returns a Promise and runs off the event loop.
 *
 * Memory: call `dispose()` (or use `using t = ...`) to free native memory at once; a tensor that is
 * garbage-collected is freed by its finalizer, and CPU tensor bytes are reported to V8 so that
 * garbage collection sees them. Using a disposed tensor throws.
 */
import { loadBinding } from '../native/binding.js';
import type { NativeDType, NativeTensor, NativeTypedArray } from '../native/binding.js';
import { ensureRuntime } from './runtime.js';
import { assertInteger, assertNumber, invalidParameterError, is } from './validate.js';

/** Element types of a tensor. */
export type DType = NativeDType;

export const DTYPES: readonly DType[] = ['uint8', 'int8', 'int16', 'int32', 'int64', 'float16', 'bfloat16', 'float32', 'float64', 'bool'];

/** TypedArrays a tensor can be created from (Uint16Array widens to int32: LibTorch 1.13 has no uint16). */
export type TensorData = Uint8Array | Uint8ClampedArray | Int8Array | Int16Array | Uint16Array | Int32Array | BigInt64Array | Float32Array | Float64Array;

/** The TypedArray returned for each dtype (float16/bfloat16/bool have none: read them as float32/uint8). */
export interface TypedArrayFor {
  uint8: Uint8Array;
  bool: Uint8Array;
  int8: Int8Array;
  int16: Int16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  float32: Float32Array;
  float64: Float64Array;
}
export type ReadableDType = keyof TypedArrayFor;

export interface TensorOptions {
  /** Element type of the new tensor (default: the array's own type; float32 for number[]). */
  dtype?: DType;
  /** "cpu" (default), "cuda" or "cuda:N". */
  device?: string;
}

function defaultDType(data: TensorData): DType {
  if (data instanceof Uint8Array || data instanceof Uint8ClampedArray) return 'uint8';
  if (data instanceof Int8Array) return 'int8';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Uint16Array || data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Float64Array) return 'float64';
  return 'float32';
}

function checkShape(name: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw invalidParameterError(name, 'an array of non-negative integers', shape);
  }
  return shape as number[];
}

function checkDType(name: string, dtype: unknown): DType {
  if (!is.oneOf(dtype, DTYPES)) throw invalidParameterError(name, `one of ${DTYPES.join(', ')}`, dtype);
  return dtype;
}

function checkDevice(name: string, device: unknown): string {
  if (!is.string(device) || !/^(cpu|cuda(:\d+)?)$/.test(device)) throw invalidParameterError(name, '"cpu", "cuda" or "cuda:N"', device);
  return device;
}

function checkDims(dims: unknown, ndim: number): number[] {
  const list = dims === undefined ? [] : typeof dims === 'number' ? [dims] : dims;
  if (!Array.isArray(list) || !list.every((d) => Number.isInteger(d) && d >= -ndim && d < Math.max(ndim, 1))) {
    throw invalidParameterError('dims', `integers in [-${ndim}, ${ndim - 1}]`, dims);
  }
  return list as number[];
}

export class Tensor {
  #native: NativeTensor;

  /** @internal Wraps a native tensor; use the static factories instead. */
  constructor(native: NativeTensor) {
    this.#native = native;
  }

  /**
   * Copies `data` into a new tensor of `shape` (default: 1-D). An array must hold numbers only;
   * a TypedArray over a SharedArrayBuffer is copied out of it first (one extra copy).
   */
  static from(data: TensorData | number[], shape?: number[], options: TensorOptions = {}): Tensor {
    if (Array.isArray(data)) {
      const bad = data.findIndex((v) => typeof v !== 'number');
      if (bad >= 0) throw invalidParameterError(`data[${bad}]`, 'a number (an array of numbers or a TypedArray)', data[bad]);
    }
    let array = Array.isArray(data) ? Float32Array.from(data) : data;
    if (!is.typedArray(array) || array instanceof Uint32Array || array instanceof BigUint64Array) {
      throw invalidParameterError('data', 'a TypedArray (not Uint32Array/BigUint64Array) or an array of numbers', data);
    }
    // The native side takes an ArrayBuffer's memory; a SharedArrayBuffer's is copied out first.
    if (typeof SharedArrayBuffer !== 'undefined' && array.buffer instanceof SharedArrayBuffer) array = array.slice() as TensorData;
    const dims = checkShape('shape', shape ?? [array.length]);
    const numel = dims.reduce((a, b) => a * b, 1);
    if (numel !== array.length) throw new RangeError(`Shape [${dims.join(', ')}] needs ${numel} elements but data has ${array.length}`);
    const dtype = checkDType('options.dtype', options.dtype ?? defaultDType(array as TensorData));
    const device = checkDevice('options.device', options.device ?? 'cpu');
    return new Tensor(ensureRuntime().fromTypedArray(array, dims, dtype, device));
  }

  static async zeros(shape: number[], options: TensorOptions = {}): Promise<Tensor> {
    return Tensor.filled('zeros', shape, options);
  }

  static async ones(shape: number[], options: TensorOptions = {}): Promise<Tensor> {
    return Tensor.filled('ones', shape, options);
  }

  /** Uniform [0, 1) samples from LibTorch's generator (seed it with `manualSeed`). */
  static async rand(shape: number[], options: TensorOptions = {}): Promise<Tensor> {
    return Tensor.filled('rand', shape, options);
  }

  /** Standard normal samples from LibTorch's generator (seed it with `manualSeed`). */
  static async randn(shape: number[], options: TensorOptions = {}): Promise<Tensor> {
    return Tensor.filled('randn', shape, options);
  }

  private static async filled(fill: 'zeros' | 'ones' | 'rand' | 'randn', shape: number[], options: TensorOptions): Promise<Tensor> {
    const dims = checkShape('shape', shape);
    const dtype = checkDType('options.dtype', options.dtype ?? 'float32');
    const device = checkDevice('options.device', options.device ?? 'cpu');
    return new Tensor(await ensureRuntime().filled(fill, dims, dtype, device));
  }

  /** @internal The native handle; throws if disposed. */
  get native(): NativeTensor {
    if (this.#native.disposed) throw new Error('Tensor has been disposed');
    return this.#native;
  }

  get shape(): number[] {
    return this.native.shape;
  }

  get ndim(): number {
    return this.native.shape.length;
  }

  get numel(): number {
    return this.native.shape.reduce((a, b) => a * b, 1);
  }

  get dtype(): DType {
    return this.native.dtype;
  }

  get device(): string {
    return this.native.device;
  }

  /** Bytes held by the elements. */
  get nbytes(): number {
    return this.native.nbytes;
  }

  get disposed(): boolean {
    return this.#native.disposed;
  }

  /** Copies the elements into a new TypedArray, off the event loop. */
  async data<D extends ReadableDType = ReadableDType>(dtype?: D): Promise<TypedArrayFor[D]> {
    return (await this.native.toTypedArray(this.readType(dtype))) as TypedArrayFor[D];
  }

  /** Copies the elements into a new TypedArray on the calling thread (for small tensors). */
  dataSync<D extends ReadableDType = ReadableDType>(dtype?: D): TypedArrayFor[D] {
    return this.native.toTypedArraySync(this.readType(dtype)) as NativeTypedArray as TypedArrayFor[D];
  }

  /**
   * Returns the elements and disposes the tensor. When the tensor is the sole owner of contiguous
   * CPU storage of that dtype, the returned array IS that storage (no copy: the fastest way to get
   * results out); otherwise it is a copy.
   */
  takeData<D extends ReadableDType = ReadableDType>(dtype?: D): TypedArrayFor[D] {
    return this.native.takeTypedArray(this.readType(dtype)) as NativeTypedArray as TypedArrayFor[D];
  }

  private readType(dtype: DType | undefined): DType {
    if (dtype !== undefined) {
      if (!is.oneOf(dtype, ['uint8', 'bool', 'int8', 'int16', 'int32', 'int64', 'float32', 'float64'] as const)) {
        throw invalidParameterError('dtype', 'uint8, bool, int8, int16, int32, int64, float32 or float64', dtype);
      }
      return dtype;
    }
    const own = this.native.dtype;
    return own === 'float16' || own === 'bfloat16' ? 'float32' : own;
  }

  /** The value of a one-element tensor. */
  async item(): Promise<number> {
    return this.native.item();
  }

  /** Moves and/or converts (returns this tensor's data without copying when nothing changes). */
  async to(device: string, dtype?: DType): Promise<Tensor> {
    return new Tensor(await this.native.to(checkDevice('device', device), dtype === undefined ? undefined : checkDType('dtype', dtype)));
  }

  async add(other: Tensor): Promise<Tensor> {
    return this.binary('add', other);
  }

  async sub(other: Tensor): Promise<Tensor> {
    return this.binary('sub', other);
  }

  async mul(other: Tensor): Promise<Tensor> {
    return this.binary('mul', other);
  }

  async div(other: Tensor): Promise<Tensor> {
    return this.binary('div', other);
  }

  /** Matrix product with LibTorch's broadcasting rules (errors carry LibTorch's message). */
  async matmul(other: Tensor): Promise<Tensor> {
    return this.binary('matmul', other);
  }

  private async binary(op: 'add' | 'sub' | 'mul' | 'div' | 'matmul', other: Tensor): Promise<Tensor> {
    if (!(other instanceof Tensor)) throw invalidParameterError('other', 'a Tensor', other);
    return new Tensor(await loadBinding().binary(op, this.native, other.native));
  }

  async sum(dims?: number | number[], keepDim = false): Promise<Tensor> {
    return this.reduce('sum', dims, keepDim);
  }

  async mean(dims?: number | number[], keepDim = false): Promise<Tensor> {
    return this.reduce('mean', dims, keepDim);
  }

  async max(dims?: number | number[], keepDim = false): Promise<Tensor> {
    return this.reduce('max', dims, keepDim);
  }

  async min(dims?: number | number[], keepDim = false): Promise<Tensor> {
    return this.reduce('min', dims, keepDim);
  }

  private async reduce(op: 'sum' | 'mean' | 'max' | 'min', dims: number | number[] | undefined, keepDim: boolean): Promise<Tensor> {
    return new Tensor(await loadBinding().reduce(op, this.native, checkDims(dims, this.ndim), keepDim));
  }

  /** A view (or copy when needed) with a new shape; one dimension may be -1. */
  reshape(shape: number[]): Tensor {
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= -1)) {
      throw invalidParameterError('shape', 'an array of integers >= -1', shape);
    }
    return new Tensor(loadBinding().reshape(this.native, shape));
  }

  async clone(): Promise<Tensor> {
    return new Tensor(await loadBinding().clone(this.native));
  }

  /**
   * For a uint8 image batch: (x / 255 - mean) / std as float32, on the tensor's device (a fused
   * CUDA kernel on GPU builds).
   */
  async normalizeImages(mean = 0.485, std = 0.229): Promise<Tensor> {
    assertNumber('mean', mean);
    assertNumber('std', std, Number.MIN_VALUE);
    return new Tensor(await loadBinding().normalizeU8(this.native, mean, std));
  }

  /** Frees the native memory now. Idempotent. */
  dispose(): void {
    this.#native.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return this.disposed ? 'Tensor(disposed)' : `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device})`;
  }
}

/** Checks an integer seed for `manualSeed`. */
export function checkSeed(seed: unknown): number | bigint {
  if (typeof seed === 'bigint') {
    if (seed < 0n) throw invalidParameterError('seed', 'a non-negative integer', seed);
    return seed;
  }
  assertInteger('seed', seed, 0, Number.MAX_SAFE_INTEGER);
  return seed;
}
