// Geometric augmentation: every step of an image (flips, 90-degree rotations, shift-scale-rotate,
// crops, elastic, grid and optical distortion) is a backward map from output to input pixel
// coordinates. The maps are composed on a coordinate tensor (innermost step first), border rules
// are applied per step, and the batch is resampled once: one grid_sample for all images whose
// map is not a pure lattice permutation, exact gathers for those that are.
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "augment_internal.h"

namespace pn::augment {
namespace {

using Matrix = std::array<double, 6>;

/** outer(inner(p)). */
Matrix compose(const Matrix& inner, const Matrix& outer) {
  return {outer[0] * inner[0] + outer[1] * inner[3], outer[0] * inner[1] + outer[1] * inner[4],
          outer[0] * inner[2] + outer[1] * inner[5] + outer[2], outer[3] * inner[0] + outer[4] * inner[3],
          outer[3] * inner[1] + outer[4] * inner[4], outer[3] * inner[2] + outer[4] * inner[5] + outer[5]};
}

constexpr double kEps = 1e-9;

/** True when the map sends the whole frame into the frame (an affine map is checked at corners). */
bool staysInside(const Matrix& m, int64_t height, int64_t width) {
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

bool isInteger(double v) { return v == std::round(v); }

/** A permutation of pixels: a signed permutation matrix with integer offsets, frame to frame. */
bool isLattice(const Matrix& m, int64_t height, int64_t width) {
  for (double v : {m[0], m[1], m[3], m[4]}) {
    if (v != 0.0 && v != 1.0 && v != -1.0) return false;
  }
  if ((m[0] != 0.0) == (m[1] != 0.0) || (m[3] != 0.0) == (m[4] != 0.0) || (m[0] != 0.0) == (m[3] != 0.0)) return false;
  return isInteger(m[2]) && isInteger(m[5]) && staysInside(m, height, width);
}

bool isIdentity(const Matrix& m) { return m == Matrix{1, 0, 0, 0, 1, 0}; }

/**
 * Merges neighbouring affine steps into one matrix where the inner one never leaves the frame
 * (so its border rule can never apply) and drops identities: fewer passes, identical result.
 */
std::vector<GeometricStep> simplify(const std::vector<GeometricStep>& steps, int64_t height, int64_t width) {
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
        const bool innerInside = staysInside(step.matrix, height, width);
        if (innerInside || isLattice(out.back().matrix, height, width)) {
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

/** albumentations' grid_distortion table for one axis: where output column/row i samples. */
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

at::Tensor tableTensor(const std::vector<double>& values, const at::TensorOptions& options) {
  return at::tensor(values, at::TensorOptions().dtype(at::kDouble)).to(options);
}

/** Normalised Gaussian weights over [-r, r], r = int(4 sigma + 0.5) (scipy's truncate = 4). */
std::vector<double> gaussianWeights(double sigma) {
  const int64_t radius = static_cast<int64_t>(4.0 * sigma + 0.5);
  std::vector<double> weights(static_cast<size_t>(2 * radius + 1));
  double sum = 0;
  for (int64_t i = -radius; i <= radius; ++i) {
    const double w = std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma));
    weights[static_cast<size_t>(i + radius)] = w;
    sum += w;
  }
  for (double& w : weights) w /= sum;
  return weights;
}

/**
 * The [n, n] matrix of 1-D Gaussian smoothing (scipy's truncate = 4) with the reflect-101 border
 * folded in: row i holds the weights of output i over the inputs.
 */
at::Tensor gaussianMatrix(int64_t n, double sigma, const at::TensorOptions& options) {
  const std::vector<double> weights = gaussianWeights(sigma);
  const int64_t radius = static_cast<int64_t>(weights.size() / 2);
  std::vector<double> matrix(static_cast<size_t>(n * n), 0.0);
  const int64_t period = 2 * (n - 1);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = -radius; k <= radius; ++k) {
      int64_t j = i + k;
      if (n > 1) {
        j = std::abs(j) % period;
        if (j > n - 1) j = period - j;
      } else {
        j = 0;
      }
      matrix[static_cast<size_t>(i * n + j)] += weights[static_cast<size_t>(k + radius)];
    }
  }
  return at::tensor(matrix, at::TensorOptions().dtype(at::kDouble)).view({n, n}).to(options);
}

/**
 * 1-D Gaussian smoothing along the last axis of x [N, H, W] with reflect-101 borders, as one
 * batched GEMM over blocks of 64 outputs (each block reads its 64 + 2r inputs): O(W (64 + 2r))
 * per row instead of a dense W x W product, and much faster than a 2r+1-tap convolution on CPUs.
 */
at::Tensor gaussianAlongLast(const at::Tensor& x, double sigma) {
  const int64_t n = x.size(0), h = x.size(1), w = x.size(2);
  const std::vector<double> weights = gaussianWeights(sigma);
  const int64_t radius = static_cast<int64_t>(weights.size() / 2);
  if (radius >= w) return at::matmul(x, gaussianMatrix(w, sigma, x.options()).t());
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (w + kBlock - 1) / kBlock, span = kBlock + 2 * radius;
  at::Tensor padded = at::reflection_pad1d(x.contiguous(), {radius, radius});
  if (blocks * kBlock > w) padded = at::constant_pad_nd(padded, {0, blocks * kBlock - w});
  std::vector<double> band(static_cast<size_t>(span * kBlock), 0.0);
  for (int64_t j = 0; j < span; ++j) {
    for (int64_t i = 0; i < kBlock; ++i) {
      if (j - i >= 0 && j - i <= 2 * radius) band[static_cast<size_t>(j * kBlock + i)] = weights[static_cast<size_t>(j - i)];
    }
  }
  const at::Tensor kernel = at::tensor(band, at::TensorOptions().dtype(at::kDouble)).view({span, kBlock}).to(x.options());
  const at::Tensor windows = padded.unfold(2, span, kBlock);  // [N, H, blocks, span]
  return at::matmul(windows, kernel).reshape({n, h, blocks * kBlock}).narrow(2, 0, w);
}

/** Gaussian smoothing of fields [N, H, W] along both axes (scipy.ndimage.gaussian_filter). */
at::Tensor gaussianFilter(const at::Tensor& x, double sigma) {
  if (static_cast<int64_t>(4.0 * sigma + 0.5) < 1) return x;
  const at::Tensor rows = gaussianAlongLast(x, sigma);
  return gaussianAlongLast(rows.transpose(1, 2), sigma).transpose(1, 2).contiguous();
}

}  // namespace

at::Tensor elasticField(const GeometricStep& step, int64_t height, int64_t width, const at::TensorOptions& options) {
  // Generated on the CPU from the step's own seed so that the field is the same on every device
  // and independent of the global generator.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(step.seed);
  at::Tensor noise = at::rand({2, height, width}, generator, at::TensorOptions().dtype(at::kFloat)) * 2.0 - 1.0;
  noise = noise.to(options);
  if (step.sigma > 0) noise = gaussianFilter(noise, step.sigma);
  return noise * step.alpha;
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
        if (staysInside(step.matrix, height, width)) {
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

namespace {

/** Python-style remainder (the sign of the divisor), as at::remainder. */
inline double pyRemainder(double a, double b) {
  const double r = std::fmod(a, b);
  return (r != 0.0 && ((r < 0.0) != (b < 0.0))) ? r + b : r;
}

/** applyBorder for one coordinate pair (the same arithmetic in double). */
inline void borderPoint(double& x, double& y, bool& valid, Border border, int64_t height, int64_t width) {
  const double lastX = static_cast<double>(width - 1), lastY = static_cast<double>(height - 1);
  const double w = static_cast<double>(width), h = static_cast<double>(height);
  switch (border) {
    case Border::Reflect101:
      if (width <= 1 || height <= 1) {
        x = std::min(std::max(x, 0.0), lastX);
        y = std::min(std::max(y, 0.0), lastY);
      } else {
        x = lastX - std::abs(pyRemainder(x, 2.0 * lastX) - lastX);
        y = lastY - std::abs(pyRemainder(y, 2.0 * lastY) - lastY);
      }
      return;
    case Border::Reflect:
      x = std::min(std::max(w - std::abs(pyRemainder(x + 0.5, 2.0 * w) - w) - 0.5, 0.0), w - 1.0);
      y = std::min(std::max(h - std::abs(pyRemainder(y + 0.5, 2.0 * h) - h) - 0.5, 0.0), h - 1.0);
      return;
    case Border::Replicate:
      x = std::min(std::max(x, 0.0), lastX);
      y = std::min(std::max(y, 0.0), lastY);
      return;
    case Border::Wrap:
      x = std::min(std::max(pyRemainder(x + 0.5, w) - 0.5, 0.0), w - 1.0);
      y = std::min(std::max(pyRemainder(y + 0.5, h) - 0.5, 0.0), h - 1.0);
      return;
    case Border::Constant:
      valid = valid && x > -1.0 && x < w && y > -1.0 && y < h;
      return;
  }
}

/** Bilinear sample of a float plane with border padding (grid_sample's padding mode 1). */
inline double sampleClamped(const float* plane, int64_t height, int64_t width, double x, double y) {
  x = std::min(std::max(x, 0.0), static_cast<double>(width - 1));
  y = std::min(std::max(y, 0.0), static_cast<double>(height - 1));
  const int64_t x0 = static_cast<int64_t>(std::floor(x)), y0 = static_cast<int64_t>(std::floor(y));
  const int64_t x1 = std::min(x0 + 1, width - 1), y1 = std::min(y0 + 1, height - 1);
  const double fx = x - static_cast<double>(x0), fy = y - static_cast<double>(y0);
  const float* r0 = plane + y0 * width;
  const float* r1 = plane + y1 * width;
  const double top = r0[x0] + (r0[x1] - r0[x0]) * fx, bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
  return top + (bottom - top) * fy;
}

/** interpolateTable for one position: linear, extrapolated past the ends as the ATen path does. */
inline double tableAt(const std::vector<double>& table, double q) {
  const int64_t n = static_cast<int64_t>(table.size());
  if (n == 1) return table[0];
  const double i0 = std::min(std::max(std::floor(q), 0.0), static_cast<double>(n - 2));
  const double f = q - i0;
  const auto i = static_cast<size_t>(i0);
  return table[i] + (table[i + 1] - table[i]) * f;
}

/** A step with what the per-pixel loop needs precomputed (fields, tables, whether it stays inside). */
struct PreparedStep {
  const GeometricStep* step;
  bool inside = false;
  at::Tensor field;  // elastic: float [2, H, W]
  std::vector<double> xTable, yTable;
};

/** Bilinear (zeros padding) of one input plane at (x, y); T is uint8_t or float. */
template <typename T>
inline double sampleZeros(const T* plane, int64_t height, int64_t width, double x, double y) {
  const double fx0 = std::floor(x), fy0 = std::floor(y);
  const int64_t x0 = static_cast<int64_t>(fx0), y0 = static_cast<int64_t>(fy0);
  const double fx = x - fx0, fy = y - fy0;
  double v = 0.0;
  for (int dy = 0; dy < 2; ++dy) {
    const int64_t yy = y0 + dy;
    if (yy < 0 || yy >= height) continue;
    const double wy = dy ? fy : 1.0 - fy;
    for (int dx = 0; dx < 2; ++dx) {
      const int64_t xx = x0 + dx;
      if (xx < 0 || xx >= width) continue;
      v += wy * (dx ? fx : 1.0 - fx) * static_cast<double>(plane[yy * width + xx]);
    }
  }
  return v;
}

/**
 * The CPU path of one image: for each output pixel, the composed backward map (innermost step
 * last, border rules per step, as coordinateMap) evaluated in double, then the image sampled
 * bilinearly (zeros outside, clamped to 0-255) and the mask by nearest neighbour (or bilinear
 * then >= 0.5) straight from the input: one pass, no coordinate tensors. Agrees with the ATen path
 * (float32 coordinate tensors and grid_sample) to float rounding (tested).
 */
template <typename TI, typename TM>
void resampleImageCpu(const TI* image, const TM* mask, const std::vector<GeometricStep>& steps, int64_t height, int64_t width,
                      bool maskBilinear, float* outImage, float* outMask) {
  std::vector<PreparedStep> prepared;
  for (const GeometricStep& step : steps) {
    PreparedStep p;
    p.step = &step;
    switch (step.kind) {
      case GeometricStep::Kind::Affine: p.inside = staysInside(step.matrix, height, width); break;
      case GeometricStep::Kind::Elastic:
        p.field = elasticField(step, height, width, at::TensorOptions().dtype(at::kFloat)).contiguous();
        break;
      case GeometricStep::Kind::GridDistortion:
        p.xTable = distortionTable(width, step.numSteps, step.xSteps);
        p.yTable = distortionTable(height, step.numSteps, step.ySteps);
        break;
      case GeometricStep::Kind::OpticalDistortion: break;
    }
    prepared.push_back(std::move(p));
  }
  const double f = static_cast<double>(width);
  const double cx = (static_cast<double>(width) - 1.0) * 0.5, cy = (static_cast<double>(height) - 1.0) * 0.5;
  for (int64_t y = 0; y < height; ++y) {
    for (int64_t x = 0; x < width; ++x) {
      double px = static_cast<double>(x), py = static_cast<double>(y);
      bool valid = true, identity = true;
      for (auto it = prepared.rbegin(); it != prepared.rend(); ++it) {
        const GeometricStep& step = *it->step;
        switch (step.kind) {
          case GeometricStep::Kind::Affine: {
            const Matrix& m = step.matrix;
            const double nx = m[0] * px + m[1] * py + m[2], ny = m[3] * px + m[4] * py + m[5];
            px = nx;
            py = ny;
            if (it->inside) {
              identity = false;
              continue;
            }
            break;
          }
          case GeometricStep::Kind::Elastic: {
            const float* fx = it->field.data_ptr<float>();
            const float* fy = fx + height * width;
            if (identity) {
              px += fx[y * width + x];
              py += fy[y * width + x];
            } else {
              const double dx = sampleClamped(fx, height, width, px, py), dy = sampleClamped(fy, height, width, px, py);
              px += dx;
              py += dy;
            }
            break;
          }
          case GeometricStep::Kind::GridDistortion:
            if (identity) {
              px = it->xTable[static_cast<size_t>(x)];
              py = it->yTable[static_cast<size_t>(y)];
            } else {
              px = tableAt(it->xTable, px);
              py = tableAt(it->yTable, py);
            }
            break;
          case GeometricStep::Kind::OpticalDistortion: {
            const double ux = (px - cx) / f, uy = (py - cy) / f;
            const double r2 = ux * ux + uy * uy;
            const double kr = 1.0 + (step.k * r2 + step.k) * r2;
            px = ux * kr * f + (cx + step.dx);
            py = uy * kr * f + (cy + step.dy);
            break;
          }
        }
        identity = false;
        borderPoint(px, py, valid, step.border, height, width);
      }
      const int64_t o = y * width + x;
      if (!valid) {
        outImage[o] = 0.0f;
        if (outMask) outMask[o] = 0.0f;
        continue;
      }
      outImage[o] = static_cast<float>(std::min(std::max(sampleZeros(image, height, width, px, py), 0.0), 255.0));
      if (outMask) {
        if (maskBilinear) {
          // The mask as 0/1 (nonzero inside), bilinear, then >= 0.5.
          const double fx0 = std::floor(px), fy0 = std::floor(py);
          const int64_t x0 = static_cast<int64_t>(fx0), y0 = static_cast<int64_t>(fy0);
          const double fx = px - fx0, fy = py - fy0;
          double v = 0.0;
          for (int dy = 0; dy < 2; ++dy) {
            const int64_t yy = y0 + dy;
            if (yy < 0 || yy >= height) continue;
            for (int dx = 0; dx < 2; ++dx) {
              const int64_t xx = x0 + dx;
              if (xx < 0 || xx >= width) continue;
              if (mask[yy * width + xx] != TM(0)) v += (dy ? fy : 1.0 - fy) * (dx ? fx : 1.0 - fx);
            }
          }
          outMask[o] = v >= 0.5 ? 1.0f : 0.0f;
        } else {
          const int64_t xx = static_cast<int64_t>(std::nearbyint(px)), yy = static_cast<int64_t>(std::nearbyint(py));
          outMask[o] = (xx >= 0 && xx < width && yy >= 0 && yy < height && mask[yy * width + xx] != TM(0)) ? 1.0f : 0.0f;
        }
      }
    }
  }
}

/** Dispatches resampleImageCpu on the input dtypes (uint8 or float images and masks). */
void resampleCpu(const at::Tensor& images, const at::Tensor& masks, int64_t b, const std::vector<GeometricStep>& steps, bool maskBilinear,
                 at::Tensor& out, at::Tensor& outMasks) {
  const int64_t height = images.size(2), width = images.size(3);
  float* outImage = out[b][0].data_ptr<float>();
  float* outMask = masks.defined() ? outMasks[b][0].data_ptr<float>() : nullptr;
  const auto run = [&](auto imagePtr) {
    if (!masks.defined()) {
      resampleImageCpu(imagePtr, static_cast<const uint8_t*>(nullptr), steps, height, width, maskBilinear, outImage, nullptr);
    } else if (masks.scalar_type() == at::kByte) {
      resampleImageCpu(imagePtr, masks[b][0].data_ptr<uint8_t>(), steps, height, width, maskBilinear, outImage, outMask);
    } else {
      resampleImageCpu(imagePtr, masks[b][0].data_ptr<float>(), steps, height, width, maskBilinear, outImage, outMask);
    }
  };
  if (images.scalar_type() == at::kByte) run(static_cast<const uint8_t*>(images[b][0].data_ptr<uint8_t>()));
  else run(static_cast<const float*>(images[b][0].data_ptr<float>()));
}

}  // namespace

std::pair<at::Tensor, at::Tensor> resampleBatch(const at::Tensor& images, const at::Tensor& masks, const std::vector<ImagePlan>& plans,
                                                bool maskBilinear, bool atenPath) {
  const int64_t batch = images.size(0), height = images.size(2), width = images.size(3);
  const auto floatOptions = images.options().dtype(at::kFloat);
  at::Tensor out = at::empty({batch, 1, height, width}, floatOptions);
  at::Tensor outMasks = masks.defined() ? at::empty({batch, 1, height, width}, floatOptions) : at::Tensor();
  std::vector<int64_t> general;
  std::vector<at::Tensor> grids;
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<GeometricStep> steps = simplify(plans[static_cast<size_t>(b)].geometry, height, width);
    if (steps.empty()) {
      out[b].copy_(images[b]);
      if (masks.defined()) outMasks[b].copy_(masks[b] != 0);
    } else if (steps.size() == 1 && steps[0].kind == GeometricStep::Kind::Affine && isLattice(steps[0].matrix, height, width)) {
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
    } else if (images.device().is_cpu() && !atenPath) {
      // The CPU path: one fused pass per image (no coordinate tensors, no float copy of the input).
      resampleCpu(images, masks, b, steps, maskBilinear, out, outMasks);
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
