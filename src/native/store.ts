/**
 * The TypeScript side of `native/binding/store.cc`: the prepared image store's native reader
 * (merged into NativeBinding by src/native/binding.ts). Keep the two in step.
 */
import type { NativeTensor } from './tensor.js';

/** Where a store's regions lie, from its checked JSON header (`src/data/image-store.ts`). */
export interface NativeStoreLayout {
  /** Images are size x size uint8. */
  size: number;
  count: number;
  /** Byte offset of the image region. */
  images: number;
  /** Byte offset of the mask region, or null when the store has no masks. */
  masks: number | null;
}

export interface NativeStoreReadOptions {
  /** Output size (square); default the store's. Another size resizes bilinearly (masks thresholded at 128). */
  size?: number;
  /** Read the masks too (default true; the store must have them). */
  masks?: boolean;
  /** Images as float32 (x / 255 - mean) / std instead of uint8 (default false). */
  normalize?: boolean;
  mean?: number;
  std?: number;
  /** Check each record's CRC-32 (default true). */
  verify?: boolean;
  /** "cpu" (default) or a CUDA device: read into pinned memory, copied on a side stream. */
  device?: string;
  /** CUDA only: pinned host staging (default true). */
  pinned?: boolean;
}

/** An image store open natively: a descriptor, the layout, the records' checksums. */
export interface NativeImageStore {
  /**
   * Reads records `indices` into [B, 1, size, size] tensors on a libuv worker (positional reads
   * straight into the batch, checksums checked). Rejects naming the file and the image.
   */
  readBatch(indices: number[], options?: NativeStoreReadOptions): Promise<{ images: NativeTensor; masks: NativeTensor | null }>;
  /** Closes the descriptor once reads in flight are done (idempotent). */
  close(): Promise<void>;
  readonly closed: boolean;
}

/** The image store exports (merged into NativeBinding). */
export interface NativeStoreBinding {
  /**
   * Opens `path` with its header's layout, checksums and written flags.
   * @throws Error naming the file when it cannot be opened or is shorter than the layout needs
   */
  openImageStore(path: string, layout: NativeStoreLayout, checksums: Uint32Array, written: Uint8Array): NativeImageStore;
  /** The native CRC-32 (zip polynomial), continuing from `crc`. */
  storeCrc32(bytes: Uint8Array, crc?: number): number;
}
