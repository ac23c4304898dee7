// Torch-free API of the native data path: batches of 8-bit grayscale images (JPEG Baseline
// frames from SIIM DICOMs, or raw pixels) decoded, resized and normalised in one call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/api.h"

namespace pn::data {

/** One image of a batch: a JPEG stream, or raw 8-bit pixels of width x height. */
struct ImageSource {
  const uint8_t* data = nullptr;
  size_t size = 0;
  bool isJpeg = true;
  int width = 0;   // raw pixels only
  int height = 0;  // raw pixels only
};

struct BatchOptions {
  int size = 512;
  /** float32 (x / 255 - mean) / std when true, else uint8. */
  bool normalize = false;
  float mean = 0.485f;
  float std = 0.229f;
  /**
   * Decode JPEG streams that libjpeg-turbo warns about (truncated, corrupt entropy data), with
   * what cannot be decoded left grey. Default false: such a stream is an error naming the reason.
   */
  bool acceptDamagedJpeg = false;
  /**
   * Masks: every output pixel becomes 255 where the (resized, rounded) value is >= 128, else 0, so
   * a 0/255 mask resized bilinearly stays binary. uint8 output only.
   */
  bool threshold = false;
  /**
   * Per output channel statistics (1 or 3 values each, the same count): when set, a normalised
   * batch is [B, channels, size, size], the gray image replicated to every channel and channel c
   * (x / 255 - mean[c]) / std[c], in the same pass as the decode. Unset: one channel from `mean` /
   * `std` above.
   */
  std::vector<double> channelMean;
  std::vector<double> channelStd;
  /**
   * Normalised batches: round the resized image to 8 bits before normalising, with the constants
   * 1 / (255 std) and -mean / std computed in double and rounded to float, and one rounding of
   * x * scale + shift: exactly a uint8 batch normalised by augmentBatch's Normalize (training's
   * path). Default false: the resized values unrounded, in float arithmetic (as decodeBatch's
   * normalised batches always were).
   */
  bool quantize = false;
  /** Output channels: channelMean's count, else 1. */
  int channels() const { return channelMean.empty() ? 1 : static_cast<int>(channelMean.size()); }
};

/** True when the addon was built with libjpeg-turbo (else JPEG sources are rejected). */
bool hasTurboJpeg();

/** True when the addon was built with libpng (PNG files are then decoded by readImageFiles). */
bool hasLibPng();

/**
 * Decodes and resizes `sources` into one [B, 1, size, size] tensor, images in parallel. JPEG
 * frames are decoded with DCT-domain scaling straight to the smallest eighth-scale at or above
 * `size` (so 1024 -> 512 decodes a quarter of the coefficients), then one bilinear resize to the
 * exact size. Throws pn::Error naming the failing image's index and libjpeg-turbo's reason.
 */
Tensor decodeImageBatch(const std::vector<ImageSource>& sources, const BatchOptions& options);
// (With channelMean / channelStd every batch here is [B, channels, size, size], see BatchOptions.)

/**
 * Decodes sources[k] into row rows[k] of `into`, a contiguous CPU [B, 1, size, size] batch of the
 * options' dtype (uint8, or float32 when normalising); other rows are left as they are. Used to
 * fill the rows that readImageFiles left to the full reader.
 */
void decodeImageBatchInto(const std::vector<ImageSource>& sources, const std::vector<int64_t>& rows, const Tensor& into,
                          const BatchOptions& options);

/** A batch read from files, with the files the native fast path left to the caller. */
struct FileBatch {
  Tensor images;
  /** Indices of the files not taken (their rows are zero): see readImageFiles. */
  std::vector<int64_t> fallback;
};

/**
 * Reads, decodes and resizes image files into one [B, 1, size, size] tensor with no JavaScript
 * in the loop: each file is read on a decode thread, then a JPEG file, or a SIIM-like JPEG
 * DICOM (findSiimJpegFrame), is decoded as decodeImageBatch would, and (with libpng) a gray PNG
 * of 8 bits or fewer by decodeGrayPng. Every other file (other PNGs, and every PNG without libpng,
 * not even read when named *.png; other DICOM encodings; unreadable or malformed files) is listed in
 * `fallback`, never an error here: the caller's full reader owns those files and their errors.
 * With `into` (a batch as for decodeImageBatchInto, one row per path), the images go there and
 * `images` is left undefined.
 */
FileBatch readImageFiles(const std::vector<std::string>& paths, const BatchOptions& options, const Tensor* into = nullptr);

/**
 * Copies host tensors to `device` the way the image store's reader stages its batches: on a CUDA
 * device each goes through pinned (page-locked) host memory and a non_blocking copy on a side
 * stream, waited for on the calling (worker) thread, so that the copy overlaps the training step
 * instead of queueing behind it; on "cpu" the tensors are returned as they are. Throws naming the
 * first tensor that is not on the CPU, or a device this build cannot use.
 */
std::vector<Tensor> stageTensors(const std::vector<Tensor>& host, const std::string& device);

}  // namespace pn::data
