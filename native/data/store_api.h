// Torch-free API of the prepared image store's native reader (the `.pnimg` file of
// src/data/image-store.ts): images and masks read with positional reads on the calling task's
// threads straight into a batch tensor, each record's CRC-32 checked, optionally resized,
// normalised, and staged to a CUDA device through pinned memory on a side stream.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../core/api.h"

namespace pn::data {

/** Where a store's regions lie (the JS reader parses and checks the JSON header). */
struct StoreLayout {
  /** Images are size x size uint8. */
  int64_t size = 0;
  int64_t count = 0;
  /** Byte offsets of the image and mask regions (masks < 0: the store has no masks). */
  int64_t images = 0;
  int64_t masks = -1;
};

/** An open store file: a descriptor, its layout, each record's checksum and written flag. */
class ImageStoreFile;

/**
 * Opens `path` for reading with `layout` (from the header), `checksums` (one per image: CRC-32 of
 * the image bytes then the mask bytes) and `written` (1 per written image).
 * @throws pn::Error naming the file when it cannot be opened or is shorter than the layout needs
 */
std::shared_ptr<ImageStoreFile> openImageStore(const std::string& path, const StoreLayout& layout, std::vector<uint32_t> checksums,
                                               std::vector<uint8_t> written);

/** Closes the descriptor (idempotent); later reads are errors naming the file. */
void closeImageStore(ImageStoreFile& store);

struct StoreReadOptions {
  /** Output size (square); 0: the store's size. Another size is a bilinear resize (masks thresholded). */
  int size = 0;
  /** Read the masks too (the store must have them). */
  bool masks = true;
  /** Images as float32 (x / 255 - mean) / std instead of uint8. */
  bool normalize = false;
  float mean = 0.485f;
  float std = 0.229f;
  /** Check each record's CRC-32 (default true, as the JS reader). */
  bool verify = true;
  /** "cpu", or a CUDA device the batch is copied to (asynchronously, on a side stream). */
  std::string device = "cpu";
  /** CUDA only: read into pinned (page-locked) host memory so that the copy is asynchronous. */
  bool pinned = true;
};

struct StoreBatch {
  /** [B, 1, size, size] uint8 (or float32 when normalising). */
  Tensor images;
  /** [B, 1, size, size] uint8 0/255, when asked for. */
  Tensor masks;
};

/**
 * Reads records `indices` into one batch: each image (and mask) with positional reads straight
 * into its row, images in parallel, with no JavaScript in the loop. On a CUDA device the rows are
 * read into pinned host memory, copied with non_blocking copies on a side stream, and an event on
 * that stream is waited for before returning; the device tensors are recorded on the device's
 * current stream, so the caching allocator never reuses them while the consumer's kernels run.
 * @throws pn::Error naming the file and the image: an index out of range, an image never written,
 *   a truncated file (naming the byte), a checksum mismatch
 */
StoreBatch readStoreBatch(ImageStoreFile& store, const std::vector<int64_t>& indices, const StoreReadOptions& options);

/** CRC-32 (zip/PNG polynomial) of `bytes`, continuing from `crc` (the JS `crc32(data, value)`). */
uint32_t crc32(const uint8_t* bytes, size_t length, uint32_t crc = 0);

}  // namespace pn::data
