// Shared by the torch-side augmentation files only (geometry.cpp, photometric.cpp, batch.cpp).
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <vector>

#include "../core/torch_internal.h"
#include "augment_api.h"

namespace pn::augment {

/** OpenCV's border numbers, as albumentations' `border_mode` passes them. */
enum class Border : int32_t { Constant = 0, Replicate = 1, Reflect = 2, Wrap = 3, Reflect101 = 4 };

/** One geometric step, as a backward map from output pixel coordinates to input ones. */
struct GeometricStep {
  enum class Kind : int32_t { Affine = 0, Elastic = 1, GridDistortion = 2, OpticalDistortion = 3 };
  Kind kind = Kind::Affine;
  Border border = Border::Reflect101;
  /** Affine: x' = m0 x + m1 y + m2, y' = m3 x + m4 y + m5 (pixel centres at integers). */
  std::array<double, 6> matrix{1, 0, 0, 0, 1, 0};
  /** Elastic: displacement = alpha * gaussian_filter(uniform(-1, 1) noise, sigma). */
  double alpha = 0, sigma = 1;
  uint64_t seed = 0;
  /** Grid distortion: albumentations' per-cell step factors (numSteps + 1 each). */
  int64_t numSteps = 0;
  std::vector<double> xSteps, ySteps;
  /** Optical distortion: radial coefficient k (k1 = k2 = k) and principal point shift. */
  double k = 0, dx = 0, dy = 0;
};

/** One photometric step, applied to the float image (0-255 scale) after the geometry. */
struct PhotometricStep {
  enum class Kind : int32_t { Pointwise = 0, Clahe = 1, Convolve = 2, Median = 3, Noise = 4 };
  Kind kind = Kind::Pointwise;
  /** Pointwise: v = clip(alpha v + beta (betaByMax ? 255 : mean(image))), then 255 (v/255)^gamma. */
  double alpha = 1, beta = 0, gamma = 1;
  bool betaByMax = true;
  /** CLAHE (OpenCV's algorithm on the image rounded to 8 bits). */
  double clipLimit = 0;
  int64_t tileRows = 8, tileCols = 8;
  /** Convolve (correlation, reflect-101 border): ksize x ksize weights; Median: ksize. */
  int64_t ksize = 1;
  std::vector<double> kernel;
  /** Noise: Gaussian with mean and std, from a generator seeded with `seed`. */
  double mean = 0, std = 0;
  uint64_t seed = 0;
};

struct ImagePlan {
  std::vector<GeometricStep> geometry;
  std::vector<PhotometricStep> photometric;
};

/** An affine map x' = m0 x + m1 y + m2, y' = m3 x + m4 y + m5 (pixel centres at integers). */
using Matrix = std::array<double, 6>;

/**
 * An image's geometric steps with identities dropped and neighbouring affine steps merged where
 * that is exact (the inner one never leaves the frame, or the outer one is a lattice map).
 */
std::vector<GeometricStep> simplifySteps(const std::vector<GeometricStep>& steps, int64_t height, int64_t width);

/** True when the map sends the whole frame into the frame (checked at the corners). */
bool staysInsideFrame(const Matrix& m, int64_t height, int64_t width);

/** A permutation of pixels (flips, quarter turns): a signed permutation with integer offsets. */
bool isLatticeMap(const Matrix& m, int64_t height, int64_t width);

/** albumentations' grid_distortion table for one axis: where output column/row i samples. */
std::vector<double> distortionTable(int64_t size, int64_t numSteps, const std::vector<double>& steps);

/**
 * The composed table (256 levels, linear between them) of an image's photometric steps when they
 * are all pointwise and none needs the image's mean; false otherwise. No steps: true, empty table.
 */
bool pointwiseTable(const std::vector<PhotometricStep>& steps, std::vector<double>& table);

/**
 * The CPU kernel (cpu_kernel.cpp): resamples, applies the photometric steps and writes `channels`
 * output channels (x * scale[c] + shift[c] when normalize) in one pass per row. Returns float32
 * [B, channels, H, W] and float32 0/1 masks [B, 1, H, W] (undefined without masks).
 */
std::pair<at::Tensor, at::Tensor> augmentCpu(const at::Tensor& images, const at::Tensor& masks, const std::vector<ImagePlan>& plans, bool maskBilinear,
                                             int64_t channels, bool normalize, const std::vector<double>& scale, const std::vector<double>& shift);

/** The elastic displacement field [2, H, W] (dx then dy planes) of one step, as float values. */
std::vector<float> elasticFieldCpu(const GeometricStep& step, int64_t height, int64_t width);

/** Decodes the flat plan of a batch of `batch` images; throws pn::Error naming what is wrong. */
std::vector<ImagePlan> decodePlan(const std::vector<double>& plan, int64_t batch);

/**
 * The ATen path (any device): resamples the images (uint8 or float [B,1,H,W]) and masks (or
 * undefined) with each image's geometry: identity and lattice maps (flips, 90-degree rotations)
 * by exact gathers, everything else by one grid_sample over the batch. Returns float32 images
 * (0-255) and float32 0/1 masks.
 */
std::pair<at::Tensor, at::Tensor> resampleBatch(const at::Tensor& images, const at::Tensor& masks,
                                                const std::vector<ImagePlan>& plans, bool maskBilinear);

/** The sampling coordinates (pixel units, [H,W,2] as x,y) of one image's geometry, plus validity. */
struct CoordinateMap {
  at::Tensor coords;
  /** bool [H,W]: false where a constant border was crossed; undefined when all are valid. */
  at::Tensor valid;
};
CoordinateMap coordinateMap(const std::vector<GeometricStep>& steps, int64_t height, int64_t width,
                            const at::TensorOptions& options);

/** The smoothed elastic displacement field [2,H,W] (dx, dy) for one image (elasticFieldCpu on `options`' device). */
at::Tensor elasticField(const GeometricStep& step, int64_t height, int64_t width, const at::TensorOptions& options);

/** Applies each image's photometric steps in place on x (float32 [B,1,H,W], 0-255). */
void applyPhotometric(at::Tensor& x, const std::vector<ImagePlan>& plans);

/** OpenCV-style CLAHE of one float image [H,W] (0-255); returns the equalised image. */
at::Tensor clahe(const at::Tensor& image, double clipLimit, int64_t tileRows, int64_t tileCols);

}  // namespace pn::augment
