/**
 * The tensor slice of the N-API boundary: native/binding/tensor.cc over native/core/api.h.
 */
/** Element type names shared with the native side. */
export type NativeDType = 'uint8' | 'int8' | 'int16' | 'int32' | 'int64' | 'float16' | 'bfloat16' | 'float32' | 'float64' | 'bool';

/** The wrapped at::Tensor. Getters and methods throw once the tensor is disposed. */
export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: NativeDType;
  readonly device: string;
  readonly nbytes: number;
  readonly disposed: boolean;
  dispose(): void;
  toTypedArraySync(dtype?: NativeDType): NativeTypedArray;
  toTypedArray(dtype?: NativeDType): Promise<NativeTypedArray>;
  /** The elements, then disposes the tensor; zero-copy when it solely owns contiguous CPU storage. */
  takeTypedArray(dtype?: NativeDType): NativeTypedArray;
  to(device: string, dtype?: NativeDType): Promise<NativeTensor>;
  item(): Promise<number>;
}

export type NativeTypedArray = Uint8Array | Int8Array | Int16Array | Int32Array | BigInt64Array | Float32Array | Float64Array;

export type NativeNamedTensors = [string, NativeTensor][];

/** The tensor exports: factories and arithmetic (NativeTensor methods are on the tensor). */
export interface TensorBinding {
  fromTypedArray(data: ArrayBufferView, shape: number[], dtype: NativeDType, device: string): NativeTensor;
  filled(fill: 'zeros' | 'ones' | 'rand' | 'randn', shape: number[], dtype: NativeDType, device: string): Promise<NativeTensor>;
  binary(op: 'add' | 'sub' | 'mul' | 'div' | 'matmul', a: NativeTensor, b: NativeTensor): Promise<NativeTensor>;
  reduce(op: 'sum' | 'mean' | 'max' | 'min', a: NativeTensor, dims: number[], keepDim: boolean): Promise<NativeTensor>;
  reshape(a: NativeTensor, shape: number[]): NativeTensor;
  clone(a: NativeTensor): Promise<NativeTensor>;
  normalizeU8(images: NativeTensor, mean: number, std: number): Promise<NativeTensor>;
}
