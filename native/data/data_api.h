// Torch-free API of the native data path: batches of 8-bit grayscale images (JPEG Baseline
// frames from SIIM DICOMs, or raw pixels) decoded, resized and normalised in one call.
#pragma once

#include <cstddef>
#include <cstdint>
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
};

/** True when the addon was built with libjpeg-turbo (else JPEG sources are rejected). */
bool hasTurboJpeg();

/**
 * Decodes and resizes `sources` into one [B, 1, size, size] tensor, images in parallel. JPEG
 * frames are decoded with DCT-domain scaling straight to the smallest eighth-scale at or above
 * `size` (so 1024 -> 512 decodes a quarter of the coefficients), then one bilinear resize to the
 * exact size. Throws pn::Error naming the failing image's index and libjpeg-turbo's reason.
 */
Tensor decodeImageBatch(const std::vector<ImageSource>& sources, const BatchOptions& options);

}  // namespace pn::data
