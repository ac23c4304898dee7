// Geometric augmentation: every step of an image (flips, 90-degree rotations, shift-scale-rotate,
// crops, elastic, grid and optical distortion) is a backward map from output to input pixel
// coordinates. The maps are composed on a coordinate tensor (innermost step first), border rules
// are applied per step, and the batch is resampled once: one grid_sample for all images whose
// map is not a pure lattice permutation, exact gathers for those that are. This is the path of
// non-CPU devices; CPU batches run the one-pass kernel in cpu_kernel.cpp, which shares the step
// helpers below (simplifySteps, staysInsideFrame, isLatticeMap, distortionTable).
#include <algorithm>
#include <cmath>
#include <string>

#include "augment_internal.h"

namespace pn::augment {
namespace {

/** outer(inner(p)). */
Matrix compose(const Matrix& inner, const Matrix& outer) {
  return {outer[0] * inner[0] + outer[1] * inner[3], outer[0] * inner[1] + outer[1] * inner[4],
          outer[0] * inner[2] + outer[1] * inner[5] + outer[2], outer[3] * inner[0] + outer[4] * inner[3],
          outer[3] * inner[1] + outer[4] * inner[4], outer[3] * inner[2] + outer[4] * inner[5] + outer[5]};
}

constexpr double kEps = 1e-9;

bool isInteger(double v) { return v == std::round(v); }

bool isIdentity(const Matrix& m) { return m == Matrix{1, 0, 0, 0, 1, 0}; }

}  // namespace

bool staysInsideFrame(const Matrix& m, int64_t height, int64_t width) {
  const double xs[2] = {0.0, static_cast<double>(width - 1)};
  const double ys[2] = {0.0, static_cast<double>(height - 1)};
  for (double x : xs) {
    for (double y : ys) {
      const double u = m[0] * x + m[1] * y + m[2];
      const double v = m[3] * x + m[4] * y + m[5];
      if (u < -kEps || u > width - 1 + kEps || v < -kEps || v > height - 1 + kEps) return false;
    }
  }
  return true;
}

bool isLatticeMap(const Matrix& m, int64_t height, int64_t width) {
  for (double v : {m[0], m[1], m[3], m[4]}) {
    if (v != 0.0 && v != 1.0 && v != -1.0) return false;
  }
  if ((m[0] != 0.0) == (m[1] != 0.0) || (m[3] != 0.0) == (m[4] != 0.0) || (m[0] != 0.0) == (m[3] != 0.0)) return false;
  return isInteger(m[2]) && isInteger(m[5]) && staysInsideFrame(m, height, width);
}

std::vector<GeometricStep> simplifySteps(const std::vector<GeometricStep>& steps, int64_t height, int64_t width) {
  std::vector<GeometricStep> out;
  for (const GeometricStep& step : steps) {
    if (step.kind == GeometricStep::Kind::Affine) {
      if (isIdentity(step.matrix)) continue;
      // In forward order the current step is applied after out.back() to the image, so to the
      // coordinates before it: it is the inner map. Merging is exact when the inner map never
      // leaves the frame (its border rule never applies; the outer's stays), or when the outer
      // is a lattice permutation (a flip or quarter turn commutes with every border rule, which
      // are all symmetric about the frame's centre; the inner's rule stays).
      if (!out.empty() && out.back().kind == GeometricStep::Kind::Affine) {
        const bool innerInside = staysInsideFrame(step.matrix, height, width);
        if (innerInside || isLatticeMap(out.back().matrix, height, width)) {
          out.back().matrix = compose(step.matrix, out.back().matrix);
          if (!innerInside) out.back().border = step.border;
          if (isIdentity(out.back().matrix)) out.pop_back();
          continue;
        }
      }
    }
    out.push_back(step);
  }
  return out;
}

namespace {

at::Tensor identityCoords(int64_t height, int64_t width, const at::TensorOptions& options) {
  const at::Tensor xs = at::arange(width, options).view({1, width}).expand({height, width});
  const at::Tensor ys = at::arange(height, options).view({height, 1}).expand({height, width});
  return at::stack({xs, ys}, -1);
}

at::Tensor applyAffine(const at::Tensor& coords, const Matrix& m) {
  const auto options = coords.options();
  const at::Tensor linear = at::tensor({m[0], m[3], m[1], m[4]}, options.dtype(at::kDouble)).view({2, 2}).to(options);
  const at::Tensor offset = at::tensor({m[2], m[5]}, options.dtype(at::kDouble)).to(options);
  const auto shape = coords.sizes().vec();
  return at::addmm(offset, coords.reshape({-1, 2}), linear).view(shape);
}

/** Pixel coordinates -> grid_sample's [-1, 1] (align_corners = true). */
at::Tensor normalizeCoords(const at::Tensor& coords, int64_t height, int64_t width) {
  const double sx = width > 1 ? 2.0 / static_cast<double>(width - 1) : 0.0;
  const double sy = height > 1 ? 2.0 / static_cast<double>(height - 1) : 0.0;
  const at::Tensor scale = at::tensor({sx, sy}, coords.options().dtype(at::kDouble)).to(coords.options());
  return coords * scale - 1.0;
}

/** A [2] tensor (one value for x, one for y) that broadcasts over [..., 2] coordinates. */
at::Tensor perAxis(double x, double y, const at::TensorOptions& options) {
  return at::tensor({x, y}, at::TensorOptions().dtype(at::kDouble)).to(options);
}

/**
 * Applies a border rule to coordinates [..., 2] in place, both axes at once: reflect-101 and
 * reflect fold coordinates back as a triangle wave (L - |((v - o) mod 2L) - L| + o), replicate
 * clamps, wrap takes the remainder; constant marks what falls wholly outside as invalid.
 */
void applyBorder(at::Tensor& coords, at::Tensor& valid, Border border, int64_t height, int64_t width) {
  const auto options = coords.options();
  const double lastX = static_cast<double>(width - 1), lastY = static_cast<double>(height - 1);
  switch (border) {
    case Border::Reflect101: {
      // About the edge pixels' centres: period 2 (n - 1).
      const at::Tensor last = perAxis(lastX, lastY, options);
      // A single row or column has nothing to reflect: every coordinate is that pixel.
      if (width <= 1 || height <= 1) coords = at::minimum(coords.clamp_min(0.0), last);
      else coords = last - (at::remainder(coords, last * 2) - last).abs_();
      return;
    }
    case Border::Reflect: {
      // About the edge pixels' outer sides (the edge repeats): period 2 n, offset by half a pixel.
      const at::Tensor size = perAxis(static_cast<double>(width), static_cast<double>(height), options);
      coords = (size - (at::remainder(coords + 0.5, size * 2) - size).abs_() - 0.5);
      coords = at::minimum(coords.clamp_min_(0.0), size - 1.0);
      return;
    }
    case Border::Replicate:
      coords = at::minimum(coords.clamp_min(0.0), perAxis(lastX, lastY, options));
      return;
    case Border::Wrap: {
      const at::Tensor size = perAxis(static_cast<double>(width), static_cast<double>(height), options);
      coords = at::minimum((at::remainder(coords + 0.5, size) - 0.5).clamp_min_(0.0), size - 1.0);
      return;
    }
    case Border::Constant: {
      // Fully outside: no input pixel contributes. Partly outside pixels are blended with zero by
      // grid_sample's zero padding at the last stage.
      const at::Tensor x = coords.select(-1, 0), y = coords.select(-1, 1);
      const at::Tensor inside = (x > -1.0) & (x < static_cast<double>(width)) & (y > -1.0) & (y < static_cast<double>(height));
      valid = valid.defined() ? (valid & inside) : inside;
      return;
    }
  }
  throw Error("unknown border mode " + std::to_string(static_cast<int>(border)));
}

/** Linear interpolation of a 1-D table (values at integer positions) at positions q. */
at::Tensor interpolateTable(const at::Tensor& table, const at::Tensor& q) {
  const int64_t n = table.size(0);
  if (n == 1) return table.expand(q.sizes()).clone();
  const at::Tensor i0 = q.floor().clamp(0.0, static_cast<double>(n - 2));
  const at::Tensor f = q - i0;
  const at::Tensor index = i0.to(at::kLong);
  return at::lerp(table.take(index), table.take(index + 1), f);
}

}  // namespace

std::vector<double> distortionTable(int64_t size, int64_t numSteps, const std::vector<double>& steps) {
  if (numSteps < 1) throw Error("GridDistortion needs num_steps >= 1");
  const int64_t cell = size / numSteps;
  if (cell < 1) throw Error("GridDistortion num_steps " + std::to_string(numSteps) + " exceeds the image size " + std::to_string(size));
  std::vector<double> table(static_cast<size_t>(size));
  double prev = 0;
  size_t idx = 0;
  for (int64_t start = 0; start < size; start += cell, ++idx) {
    int64_t end = start + cell;
    double cur;
    if (end > size) {
      end = size;
      cur = static_cast<double>(size);
    } else {
      // Past the drawn steps (albumentations would fail here on tiny images): no distortion.
      cur = prev + static_cast<double>(cell) * (idx < steps.size() ? steps[idx] : 1.0);
    }
    // Piecewise linear through the cell corners (numpy linspace without its endpoint, which
    // albumentations includes, repeating a value at every corner): no distortion is the identity.
    const int64_t n = end - start;
    const double delta = (cur - prev) / static_cast<double>(n);
    for (int64_t j = 0; j < n; ++j) table[static_cast<size_t>(start + j)] = prev + delta * static_cast<double>(j);
    prev = cur;
  }
  return table;
}

namespace {

at::Tensor tableTensor(const std::vector<double>& values, const at::TensorOptions& options) {
  return at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(options);
}

}  // namespace

at::Tensor elasticField(const GeometricStep& step, int64_t height, int64_t width, const at::TensorOptions& options) {
  // Computed on the CPU from the step's own seed (cpu_kernel.cpp), so that the field is the same
  // on every device and independent of the global generator.
  std::vector<float> field = elasticFieldCpu(step, height, width);
  return at::from_blob(field.data(), {2, height, width}, at::TensorOptions().dtype(at::kFloat)).to(options, /*non_blocking*/ false, /*copy*/ true);
}

CoordinateMap coordinateMap(const std::vector<GeometricStep>& steps, int64_t height, int64_t width, const at::TensorOptions& options) {
  CoordinateMap map;
  map.coords = identityCoords(height, width, options);
  bool identity = true;
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const GeometricStep& step = *it;
    switch (step.kind) {
      case GeometricStep::Kind::Affine:
        map.coords = applyAffine(map.coords, step.matrix);
        // Coordinates enter inside the frame; an affine map that keeps the frame inside keeps them.
        if (staysInsideFrame(step.matrix, height, width)) {
          identity = false;
          continue;
        }
        break;
      case GeometricStep::Kind::Elastic: {
        const at::Tensor field = elasticField(step, height, width, options);
        at::Tensor displacement;
        if (identity) {
          displacement = field.permute({1, 2, 0});
        } else {
          // The field lives on the intermediate image's lattice: sample it where we stand.
          const at::Tensor grid = normalizeCoords(map.coords, height, width).unsqueeze(0);
          displacement = at::grid_sampler(field.unsqueeze(0), grid, 0, 1, true).squeeze(0).permute({1, 2, 0});
        }
        map.coords = map.coords + displacement;
        break;
      }
      case GeometricStep::Kind::GridDistortion: {
        const at::Tensor xx = tableTensor(distortionTable(width, step.numSteps, step.xSteps), options);
        const at::Tensor yy = tableTensor(distortionTable(height, step.numSteps, step.ySteps), options);
        if (identity) {
          map.coords = at::stack({xx.view({1, width}).expand({height, width}), yy.view({height, 1}).expand({height, width})}, -1);
        } else {
          map.coords = at::stack({interpolateTable(xx, map.coords.select(-1, 0)), interpolateTable(yy, map.coords.select(-1, 1))}, -1);
        }
        break;
      }
      case GeometricStep::Kind::OpticalDistortion: {
        // OpenCV's initUndistortRectifyMap with k1 = k2 = k, fx = fy = width, the principal point
        // at the pixel-grid centre (so that k = 0 and no shift is the identity) plus (dx, dy).
        const double f = static_cast<double>(width);
        const double cx = (static_cast<double>(width) - 1.0) * 0.5, cy = (static_cast<double>(height) - 1.0) * 0.5;
        const at::Tensor x = (map.coords.select(-1, 0) - cx) / f;
        const at::Tensor y = (map.coords.select(-1, 1) - cy) / f;
        const at::Tensor r2 = x * x + y * y;
        const at::Tensor kr = 1.0 + (step.k * r2 + step.k) * r2;
        map.coords = at::stack({x * kr * f + (cx + step.dx), y * kr * f + (cy + step.dy)}, -1);
        break;
      }
    }
    identity = false;
    applyBorder(map.coords, map.valid, step.border, height, width);
  }
  return map;
}

std::pair<at::Tensor, at::Tensor> resampleBatch(const at::Tensor& images, const at::Tensor& masks, const std::vector<ImagePlan>& plans,
                                                bool maskBilinear) {
  const int64_t batch = images.size(0), height = images.size(2), width = images.size(3);
  const auto floatOptions = images.options().dtype(at::kFloat);
  at::Tensor out = at::empty({batch, 1, height, width}, floatOptions);
  at::Tensor outMasks = masks.defined() ? at::empty({batch, 1, height, width}, floatOptions) : at::Tensor();
  std::vector<int64_t> general;
  std::vector<at::Tensor> grids;
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<GeometricStep> steps = simplifySteps(plans[static_cast<size_t>(b)].geometry, height, width);
    if (steps.empty()) {
      out[b].copy_(images[b]);
      if (masks.defined()) outMasks[b].copy_(masks[b] != 0);
    } else if (steps.size() == 1 && steps[0].kind == GeometricStep::Kind::Affine && isLatticeMap(steps[0].matrix, height, width)) {
      // Flips and 90-degree rotations move whole pixels: gather them, no interpolation at all.
      const Matrix& m = steps[0].matrix;
      const auto longOptions = images.options().dtype(at::kLong);
      const at::Tensor xs = at::arange(width, longOptions).view({1, width});
      const at::Tensor ys = at::arange(height, longOptions).view({height, 1});
      const auto c = [](double v) { return static_cast<int64_t>(v); };
      const at::Tensor sx = xs * c(m[0]) + ys * c(m[1]) + c(m[2]);
      const at::Tensor sy = xs * c(m[3]) + ys * c(m[4]) + c(m[5]);
      const at::Tensor index = (sy * width + sx).reshape({-1});
      out[b][0].copy_(images[b][0].reshape({-1}).take(index).view({height, width}));
      if (masks.defined()) outMasks[b][0].copy_(masks[b][0].reshape({-1}).take(index).view({height, width}) != 0);
    } else {
      CoordinateMap map = coordinateMap(steps, height, width, floatOptions);
      at::Tensor coords = map.coords;
      if (map.valid.defined()) coords = at::where(map.valid.unsqueeze(-1), coords, at::scalar_tensor(-1e4, floatOptions));
      general.push_back(b);
      grids.push_back(normalizeCoords(coords, height, width));
    }
  }
  if (!general.empty()) {
    const at::Tensor index = at::tensor(general, at::TensorOptions().dtype(at::kLong)).to(images.device());
    const at::Tensor grid = at::stack(grids);
    const at::Tensor source = images.index_select(0, index).to(at::kFloat);
    out.index_copy_(0, index, at::grid_sampler(source, grid, /*bilinear*/ 0, /*zeros*/ 0, true).clamp_(0.0, 255.0));
    if (masks.defined()) {
      const at::Tensor maskSource = (masks.index_select(0, index) != 0).to(at::kFloat);
      at::Tensor sampled = maskBilinear ? (at::grid_sampler(maskSource, grid, 0, 0, true) >= 0.5).to(at::kFloat)
                                        : at::grid_sampler(maskSource, grid, /*nearest*/ 1, 0, true);
      outMasks.index_copy_(0, index, sampled);
    }
  }
  return {out, outMasks};
}

}  // namespace pn::augment
