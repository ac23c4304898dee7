/**
 * The data slice of the N-API boundary: native/binding/data.cc over native/data/data_api.h.
 */
import type { NativeTensor } from './tensor.js';

/** One encoded image: a JPEG stream, or raw 8-bit gray pixels with their size. */
export type NativeImageSource = { data: Uint8Array; jpeg: true } | { data: Uint8Array; jpeg: false; width: number; height: number };

/**
 * The batch options every decoding export takes after its own arguments, declared once here and
 * parsed once natively (batchOptionsArg in native/binding/data.cc).
 */
export type NativeBatchArgs = [
  size: number,
  normalize: boolean,
  /** One value (one gray channel), or per output channel (1 or 3 values: [B,C,size,size]). */
  mean: number | readonly number[],
  std: number | readonly number[],
  /** A flag set: 1 accept damaged JPEG, 2 threshold masks at 128, 4 round to 8 bits before normalising. */
  flags?: number,
];

/** The data exports: image batches decoded natively. */
export interface DataBinding {
  /** Whether the addon was built with libjpeg-turbo. */
  hasTurboJpeg: boolean;
  /** Whether the addon was built with libpng (gray PNGs decoded natively by readImageFiles). */
  hasLibPng?: boolean;
  /** Decodes JPEG streams / resizes raw 8-bit pixels into one [B,1,size,size] tensor. */
  decodeImageBatch(sources: NativeImageSource[], ...batch: NativeBatchArgs): Promise<NativeTensor>;
  /** Decodes sources[k] into row rows[k] of `into` (a [B,1,size,size] batch of the options' dtype). */
  decodeImageBatchInto(into: NativeTensor, rows: number[], sources: NativeImageSource[], ...batch: NativeBatchArgs): Promise<void>;
  /**
   * Reads JPEG files and SIIM-like JPEG DICOMs natively into one [B,1,size,size] tensor; the
   * indices of every other file (zero rows) come back in `fallback` for the full reader. With
   * `into` (last), the images go there.
   */
  readImageFiles(paths: string[], ...args: [...batch: NativeBatchArgs, into?: NativeTensor]): Promise<{ images?: NativeTensor; fallback: number[] }>;
  /**
   * CPU tensors copied to `device`: on CUDA through pinned host memory and an asynchronous copy on
   * a side stream (waited for on a pool thread, beside the step); on "cpu" the same tensors.
   */
  stageTensors(tensors: NativeTensor[], device: string): Promise<NativeTensor[]>;
}
