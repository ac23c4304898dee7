// The torch-free API of the batch augmentation (native/augment/*.cpp), for the N-API layer (native/binding/).
//
// TypeScript draws every random parameter of every image (src/training/augment/) and sends one
// plan per batch, encoded as doubles (see decodePlan in batch.cpp for the layout, and
// encodePlan in src/training/augment/plan.ts: keep the two in step). The native side applies the
// whole batch in one call: all geometric steps of an image become one sampling grid and one
// interpolation, then the photometric steps run in order, then the normalisation.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/api.h"

namespace pn {

/** What to do with the result of the augmentation besides the plan. */
struct AugmentOptions {
  /** Masks: bilinear sampling then a 0.5 threshold (true), or nearest neighbour (false). */
  bool maskBilinear = false;
  /** Apply (x / maxPixelValue - mean[c]) / std[c]; otherwise the output keeps the 0-255 scale. */
  bool normalize = false;
  double maxPixelValue = 255.0;
  /** One value per output channel, or one value for every channel. */
  std::vector<double> mean;
  std::vector<double> std;
  /** Output channels: 1, or 3 (the gray image repeated, as ImageNet encoders expect). */
  int64_t channels = 1;
  /**
   * CPU tensors: resample with the ATen path the other devices run (coordinate tensors and
   * grid_sample) instead of the fused per-pixel CPU kernel. For tests comparing the two.
   */
  bool atenPath = false;
};

struct AugmentResult {
  /** float32 [B, channels, H, W]. */
  Tensor images;
  /** float32 [B, 1, H, W] with values 0 or 1; undefined when no masks were given. */
  Tensor masks;
};

/**
 * Augments an image batch [B, 1, H, W] (uint8, or float32 on the 0-255 scale) and its masks (same
 * shape, uint8 or float32, nonzero = inside; or an undefined Tensor) on the batch's device
 * following `plan` (one record per image).
 */
AugmentResult augmentBatch(const Tensor& images, const Tensor& masks, const std::vector<double>& plan,
                           const AugmentOptions& options);

}  // namespace pn
