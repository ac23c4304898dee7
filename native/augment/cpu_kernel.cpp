// The CPU augmentation kernel: every image of the batch goes from its uint8 (or float) pixels to
// the normalised, channel-replicated float output in one pass over its rows, on the ATen thread
// pool (rows of all images share the pool, so a heavy elastic image does not hold the batch back):
//   backward map of the composed geometry (per row: each step as a loop over the row's
//   coordinates, border rules only where a coordinate leaves the frame) -> bilinear sample
//   (nearest or bilinear-thresholded mask) -> the image's pointwise photometric table
//   (brightness, contrast, gamma fused) -> x * scale[c] + shift[c] written to every channel.
// Images whose photometric steps need the whole image (CLAHE, blur, median, noise, brightness by
// the image mean) are resampled the same way into a float plane, run through applyPhotometric,
// then normalised. The ATen path (coordinate tensors and grid_sample) stays for other devices and
// agrees with this kernel within the tolerance test/training/augment-device.test.ts states.
//
// Also here: the elastic displacement field (counter-based noise, separable Gaussian smoothing)
// that both paths use, so the field is the same on every device.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "augment_internal.h"

// The smoothing loops are compiled twice on x86-64 with glibc (AVX2 and baseline), the better
// one picked at load time: the field's smoothing is most of an elastic image's cost.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
#define PN_KERNEL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PN_KERNEL_CLONES
#endif

namespace pn::augment {
namespace {

// ---- The elastic field ----------------------------------------------------------------------

/** SplitMix64's output function: one well-mixed 64-bit value per counter. */
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/** Reflect-101 index folding over [0, n): ... 2 1 | 0 1 2 ... n-1 | n-2 ... (any distance). */
inline int64_t fold101(int64_t i, int64_t n) {
  if (n <= 1) return 0;
  const int64_t period = 2 * (n - 1);
  i = std::abs(i) % period;
  return i > n - 1 ? period - i : i;
}

/** acc[x] = w * center[x] for n values. */
PN_KERNEL_CLONES void scaleInto(float* __restrict acc, const float* __restrict center, float w, int64_t n) {
  for (int64_t x = 0; x < n; ++x) acc[x] = w * center[x];
}

/** acc[x] += w * (a[x] + b[x]) for n values: one symmetric pair of Gaussian taps. */
PN_KERNEL_CLONES void addPair(float* __restrict acc, const float* __restrict a, const float* __restrict b, float w, int64_t n) {
  for (int64_t x = 0; x < n; ++x) acc[x] += w * (a[x] + b[x]);
}

/**
 * Smooths one plane [h, w] in place with the separable Gaussian `weights` (centre first, then
 * the taps at distance 1..r), reflect-101 borders: rows into `scratch`, then columns back.
 */
void gaussianPlane(float* plane, int64_t h, int64_t w, const std::vector<float>& weights, std::vector<float>& scratch) {
  const int64_t r = static_cast<int64_t>(weights.size()) - 1;
  if (scratch.size() < static_cast<size_t>(h * w)) scratch.resize(static_cast<size_t>(h * w));
  std::vector<float> padded(static_cast<size_t>(w + 2 * r));
  for (int64_t y = 0; y < h; ++y) {
    const float* row = plane + y * w;
    for (int64_t x = -r; x < w + r; ++x) padded[static_cast<size_t>(x + r)] = row[fold101(x, w)];
    const float* centre = padded.data() + r;
    float* out = scratch.data() + y * w;
    scaleInto(out, centre, weights[0], w);
    for (int64_t k = 1; k <= r; ++k) addPair(out, centre - k, centre + k, weights[static_cast<size_t>(k)], w);
  }
  for (int64_t y = 0; y < h; ++y) {
    float* out = plane + y * w;
    scaleInto(out, scratch.data() + y * w, weights[0], w);
    for (int64_t k = 1; k <= r; ++k) {
      addPair(out, scratch.data() + fold101(y - k, h) * w, scratch.data() + fold101(y + k, h) * w, weights[static_cast<size_t>(k)], w);
    }
  }
}

}  // namespace

std::vector<float> elasticFieldCpu(const GeometricStep& step, int64_t height, int64_t width) {
  const int64_t plane = height * width;
  std::vector<float> field(static_cast<size_t>(2 * plane));
  // Uniform(-1, 1) noise from the step's seed, two 24-bit values per counter: the same field on
  // every thread and device, independent of any global generator.
  const uint64_t base = mix64(step.seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL);
  constexpr float kUnit = 1.0f / 16777216.0f;
  for (size_t i = 0; i < field.size(); i += 2) {
    const uint64_t bits = mix64(base + (i / 2 + 1) * 0x9E3779B97F4A7C15ULL);
    field[i] = static_cast<float>(bits >> 40) * kUnit * 2.0f - 1.0f;
    if (i + 1 < field.size()) field[i + 1] = static_cast<float>((bits >> 8) & 0xFFFFFFULL) * kUnit * 2.0f - 1.0f;
  }
  // scipy.ndimage.gaussian_filter's weights (truncate = 4), reflect-101 borders.
  const int64_t radius = static_cast<int64_t>(4.0 * step.sigma + 0.5);
  if (step.sigma > 0 && radius >= 1) {
    std::vector<double> weights(static_cast<size_t>(radius + 1));
    double sum = 0;
    for (int64_t i = 0; i <= radius; ++i) {
      weights[static_cast<size_t>(i)] = std::exp(-0.5 * static_cast<double>(i * i) / (step.sigma * step.sigma));
      sum += i == 0 ? weights[0] : 2 * weights[static_cast<size_t>(i)];
    }
    std::vector<float> taps(weights.size());
    for (size_t i = 0; i < taps.size(); ++i) taps[i] = static_cast<float>(weights[i] / sum);
    // Kept per thread: an 8 MB buffer allocated afresh each time costs its page faults again.
    thread_local std::vector<float> scratch;
    gaussianPlane(field.data(), height, width, taps, scratch);
    gaussianPlane(field.data() + plane, height, width, taps, scratch);
  }
  const auto alpha = static_cast<float>(step.alpha);
  for (float& v : field) v *= alpha;
  return field;
}

namespace {

// ---- Coordinates, borders and sampling ------------------------------------------------------

/** Python-style remainder (the sign of the divisor), as at::remainder. */
inline double pyRemainder(double a, double b) {
  const double r = std::fmod(a, b);
  return (r != 0.0 && ((r < 0.0) != (b < 0.0))) ? r + b : r;
}

/**
 * The ATen path's applyBorder for one coordinate pair, for a pair outside the frame (inside it,
 * every rule is the identity and constant borders keep the pixel valid).
 */
inline void borderPoint(double& x, double& y, uint8_t& valid, Border border, int64_t height, int64_t width) {
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

/** floor() for |v| < 2^62 without a library call. */
inline int64_t floorToInt(double v) {
  const auto i = static_cast<int64_t>(v);
  return v < static_cast<double>(i) ? i - 1 : i;
}

/** Round half to even (nearbyint in the default rounding mode), as grid_sample's nearest does. */
inline int64_t roundToInt(double v) {
#if defined(__SSE2__) && defined(__x86_64__)
  return _mm_cvtsd_si64(_mm_set_sd(v));
#else
  return static_cast<int64_t>(std::nearbyint(v));
#endif
}

/** Bilinear sample of a float plane with border padding (grid_sample's padding mode 1). */
inline double sampleClamped(const float* plane, int64_t height, int64_t width, double x, double y) {
  x = std::min(std::max(x, 0.0), static_cast<double>(width - 1));
  y = std::min(std::max(y, 0.0), static_cast<double>(height - 1));
  const int64_t x0 = static_cast<int64_t>(x), y0 = static_cast<int64_t>(y);
  const int64_t x1 = std::min(x0 + 1, width - 1), y1 = std::min(y0 + 1, height - 1);
  const double fx = x - static_cast<double>(x0), fy = y - static_cast<double>(y0);
  const float* r0 = plane + y0 * width;
  const float* r1 = plane + y1 * width;
  const double top = r0[x0] + (r0[x1] - r0[x0]) * fx, bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
  return top + (bottom - top) * fy;
}

/** Linear in a 1-D table, extrapolated past the ends as the ATen path's interpolateTable. */
inline double tableAt(const std::vector<double>& table, double q) {
  const int64_t n = static_cast<int64_t>(table.size());
  if (n == 1) return table[0];
  const double i0 = std::min(std::max(std::floor(q), 0.0), static_cast<double>(n - 2));
  const double f = q - i0;
  const auto i = static_cast<size_t>(i0);
  return table[i] + (table[i + 1] - table[i]) * f;
}

/** Bilinear (zeros outside) of one input plane at (x, y), clamped to 0-255; T is uint8_t or float. */
template <typename T>
inline float sampleImage(const T* plane, int64_t height, int64_t width, double x, double y) {
  const int64_t x0 = floorToInt(x), y0 = floorToInt(y);
  const double fx = x - static_cast<double>(x0), fy = y - static_cast<double>(y0);
  double v;
  if (x0 >= 0 && y0 >= 0 && x0 + 1 < width && y0 + 1 < height) {
    const T* r0 = plane + y0 * width + x0;
    const T* r1 = r0 + width;
    const double top = (1.0 - fx) * static_cast<double>(r0[0]) + fx * static_cast<double>(r0[1]);
    const double bottom = (1.0 - fx) * static_cast<double>(r1[0]) + fx * static_cast<double>(r1[1]);
    v = (1.0 - fy) * top + fy * bottom;
  } else {
    v = 0.0;
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
  }
  return static_cast<float>(std::min(std::max(v, 0.0), 255.0));
}

/** The mask at (x, y): nearest neighbour, or bilinear over the 0/1 mask then >= 0.5. */
template <typename T>
inline float sampleMask(const T* plane, int64_t height, int64_t width, double x, double y, bool bilinear) {
  if (!bilinear) {
    const int64_t xx = roundToInt(x), yy = roundToInt(y);
    return (xx >= 0 && xx < width && yy >= 0 && yy < height && plane[yy * width + xx] != T(0)) ? 1.0f : 0.0f;
  }
  const int64_t x0 = floorToInt(x), y0 = floorToInt(y);
  const double fx = x - static_cast<double>(x0), fy = y - static_cast<double>(y0);
  double v = 0.0;
  for (int dy = 0; dy < 2; ++dy) {
    const int64_t yy = y0 + dy;
    if (yy < 0 || yy >= height) continue;
    for (int dx = 0; dx < 2; ++dx) {
      const int64_t xx = x0 + dx;
      if (xx < 0 || xx >= width) continue;
      if (plane[yy * width + xx] != T(0)) v += (dy ? fy : 1.0 - fy) * (dx ? fx : 1.0 - fx);
    }
  }
  return v >= 0.5 ? 1.0f : 0.0f;
}

/** The photometric table's value at v: clamped, linear between integer levels (applyTables). */
inline float applyTable(const float* lut, float v) {
  v = std::min(std::max(v, 0.0f), 255.0f);
  const float lower = std::min(static_cast<float>(static_cast<int>(v)), 254.0f);
  const int i = static_cast<int>(lower);
  const float t = v - lower, a = lut[i], b = lut[i + 1];
  return t < 0.5f ? a + t * (b - a) : b - (b - a) * (1.0f - t);
}

// ---- One image's work -----------------------------------------------------------------------

/** A geometric step with what the row loop needs: whether it stays inside, its field or tables. */
struct RowStep {
  const GeometricStep* step = nullptr;
  bool inside = false;
  std::vector<float> field;  // elastic: [2, H, W]
  std::vector<double> xTable, yTable;
};

struct ImageJob {
  enum class Mode { Copy, Lattice, General } mode = Mode::Copy;
  std::vector<GeometricStep> steps;  // simplified, forward order
  std::vector<RowStep> rows;         // General: one per step
  std::array<int64_t, 6> lattice{};  // Lattice: source x = l0 x + l1 y + l2, y = l3 x + l4 y + l5
  std::vector<float> table;          // the fused pointwise table (256 levels), or empty
  bool wholeImage = false;           // photometric steps that need the whole image: applyPhotometric afterwards
  at::Tensor plane;                  // wholeImage: float [1, 1, H, W] (0-255) between the passes
};

struct Frame {
  int64_t height, width;
};

/** Per-thread row buffers. */
struct RowBuffers {
  std::vector<double> px, py;
  std::vector<uint8_t> valid;
  std::vector<float> values;
};

/** The composed backward map of one output row into px, py (and valid), innermost step last. */
void rowCoordinates(const ImageJob& job, const Frame& f, int64_t y, RowBuffers& buf) {
  const int64_t w = f.width, h = f.height;
  double* px = buf.px.data();
  double* py = buf.py.data();
  uint8_t* valid = buf.valid.data();
  for (int64_t x = 0; x < w; ++x) {
    px[x] = static_cast<double>(x);
    py[x] = static_cast<double>(y);
    valid[x] = 1;
  }
  const double lastX = static_cast<double>(w - 1), lastY = static_cast<double>(h - 1);
  const double fw = static_cast<double>(w);
  const double cx = (static_cast<double>(w) - 1.0) * 0.5, cy = (static_cast<double>(h) - 1.0) * 0.5;
  bool identity = true;
  for (auto it = job.rows.rbegin(); it != job.rows.rend(); ++it) {
    const GeometricStep& step = *it->step;
    switch (step.kind) {
      case GeometricStep::Kind::Affine: {
        const Matrix& m = step.matrix;
        for (int64_t x = 0; x < w; ++x) {
          const double nx = m[0] * px[x] + m[1] * py[x] + m[2], ny = m[3] * px[x] + m[4] * py[x] + m[5];
          px[x] = nx;
          py[x] = ny;
        }
        break;
      }
      case GeometricStep::Kind::Elastic: {
        const float* fx = it->field.data();
        const float* fy = fx + h * w;
        if (identity) {
          for (int64_t x = 0; x < w; ++x) {
            px[x] += fx[y * w + x];
            py[x] += fy[y * w + x];
          }
        } else {
          for (int64_t x = 0; x < w; ++x) {
            const double dx = sampleClamped(fx, h, w, px[x], py[x]), dy = sampleClamped(fy, h, w, px[x], py[x]);
            px[x] += dx;
            py[x] += dy;
          }
        }
        break;
      }
      case GeometricStep::Kind::GridDistortion:
        if (identity) {
          const double row = it->yTable[static_cast<size_t>(y)];
          for (int64_t x = 0; x < w; ++x) {
            px[x] = it->xTable[static_cast<size_t>(x)];
            py[x] = row;
          }
        } else {
          for (int64_t x = 0; x < w; ++x) {
            px[x] = tableAt(it->xTable, px[x]);
            py[x] = tableAt(it->yTable, py[x]);
          }
        }
        break;
      case GeometricStep::Kind::OpticalDistortion:
        // OpenCV's initUndistortRectifyMap with k1 = k2 = k, fx = fy = width, the principal point
        // at the pixel-grid centre plus (dx, dy), as the ATen path.
        for (int64_t x = 0; x < w; ++x) {
          const double ux = (px[x] - cx) / fw, uy = (py[x] - cy) / fw;
          const double r2 = ux * ux + uy * uy;
          const double kr = 1.0 + (step.k * r2 + step.k) * r2;
          px[x] = ux * kr * fw + (cx + step.dx);
          py[x] = uy * kr * fw + (cy + step.dy);
        }
        break;
    }
    identity = false;
    // An affine step that keeps the frame inside keeps every coordinate inside: no border rule.
    if (step.kind == GeometricStep::Kind::Affine && it->inside) continue;
    for (int64_t x = 0; x < w; ++x) {
      if (px[x] >= 0.0 && px[x] <= lastX && py[x] >= 0.0 && py[x] <= lastY) continue;
      borderPoint(px[x], py[x], valid[x], step.border, h, w);
    }
  }
}

/** One output row's 0-255 values (and mask row, when masks are given). */
template <typename TI, typename TM>
void renderRow(const ImageJob& job, const Frame& f, const TI* image, const TM* mask, bool maskBilinear, int64_t y, RowBuffers& buf,
               float* values, float* maskRow) {
  const int64_t w = f.width, h = f.height;
  switch (job.mode) {
    case ImageJob::Mode::Copy: {
      const TI* src = image + y * w;
      for (int64_t x = 0; x < w; ++x) values[x] = static_cast<float>(src[x]);
      if (maskRow) {
        const TM* m = mask + y * w;
        for (int64_t x = 0; x < w; ++x) maskRow[x] = m[x] != TM(0) ? 1.0f : 0.0f;
      }
      return;
    }
    case ImageJob::Mode::Lattice: {
      const auto& l = job.lattice;
      int64_t sx = l[1] * y + l[2], sy = l[4] * y + l[5];
      for (int64_t x = 0; x < w; ++x, sx += l[0], sy += l[3]) {
        const int64_t index = sy * w + sx;
        values[x] = static_cast<float>(image[index]);
        if (maskRow) maskRow[x] = mask[index] != TM(0) ? 1.0f : 0.0f;
      }
      return;
    }
    case ImageJob::Mode::General: {
      rowCoordinates(job, f, y, buf);
      const double* px = buf.px.data();
      const double* py = buf.py.data();
      const uint8_t* valid = buf.valid.data();
      for (int64_t x = 0; x < w; ++x) {
        if (!valid[x]) {
          values[x] = 0.0f;
          if (maskRow) maskRow[x] = 0.0f;
          continue;
        }
        values[x] = sampleImage(image, h, w, px[x], py[x]);
        if (maskRow) maskRow[x] = sampleMask(mask, h, w, px[x], py[x], maskBilinear);
      }
      return;
    }
  }
}

/** Per output channel: x * scale + shift (normalised) or x itself (the 0-255 scale). */
struct OutputSpec {
  int64_t channels = 1;
  bool normalize = false;
  std::vector<float> scale, shift;
};

/**
 * Writes one row of values (after the image's table, if any) to every output channel: the
 * product and sum in double, rounded once to float, as ATen's vectorised addcmul (FMA) does and
 * as preprocessImages writes a uint8 batch (exactly equal for whole levels).
 */
void emitRow(const float* values, const float* table, const OutputSpec& spec, int64_t w, float* const* planes, int64_t offset, float* scratch) {
  const float* v = values;
  if (table) {
    for (int64_t x = 0; x < w; ++x) scratch[x] = applyTable(table, values[x]);
    v = scratch;
  }
  for (int64_t c = 0; c < spec.channels; ++c) {
    float* out = planes[c] + offset;
    if (!spec.normalize) {
      std::memcpy(out, v, static_cast<size_t>(w) * sizeof(float));
      continue;
    }
    const double scale = spec.scale[static_cast<size_t>(c)], shift = spec.shift[static_cast<size_t>(c)];
    for (int64_t x = 0; x < w; ++x) out[x] = static_cast<float>(static_cast<double>(v[x]) * scale + shift);
  }
}

ImageJob prepareJob(const ImagePlan& plan, const Frame& f) {
  ImageJob job;
  job.steps = simplifySteps(plan.geometry, f.height, f.width);
  if (job.steps.empty()) {
    job.mode = ImageJob::Mode::Copy;
  } else if (job.steps.size() == 1 && job.steps[0].kind == GeometricStep::Kind::Affine && isLatticeMap(job.steps[0].matrix, f.height, f.width)) {
    job.mode = ImageJob::Mode::Lattice;
    for (size_t i = 0; i < 6; ++i) job.lattice[i] = static_cast<int64_t>(job.steps[0].matrix[i]);
  } else {
    job.mode = ImageJob::Mode::General;
    for (const GeometricStep& step : job.steps) {
      RowStep r;
      r.step = &step;
      switch (step.kind) {
        case GeometricStep::Kind::Affine: r.inside = staysInsideFrame(step.matrix, f.height, f.width); break;
        case GeometricStep::Kind::Elastic: break;  // the field is computed in parallel below
        case GeometricStep::Kind::GridDistortion:
          r.xTable = distortionTable(f.width, step.numSteps, step.xSteps);
          r.yTable = distortionTable(f.height, step.numSteps, step.ySteps);
          break;
        case GeometricStep::Kind::OpticalDistortion: break;
      }
      job.rows.push_back(std::move(r));
    }
  }
  std::vector<double> table;
  if (pointwiseTable(plan.photometric, table)) {
    job.table.assign(table.begin(), table.end());
  } else {
    job.wholeImage = true;
  }
  return job;
}

template <typename TI, typename TM>
void runRows(std::vector<ImageJob>& jobs, const Frame& f, const TI* images, const TM* masks, bool maskBilinear, const OutputSpec& spec,
             float* out, float* outMasks) {
  const int64_t batch = static_cast<int64_t>(jobs.size()), h = f.height, w = f.width, plane = h * w;
  at::parallel_for(0, batch * h, 16, [&](int64_t begin, int64_t end) {
    RowBuffers buf;
    buf.px.resize(static_cast<size_t>(w));
    buf.py.resize(static_cast<size_t>(w));
    buf.valid.resize(static_cast<size_t>(w));
    buf.values.resize(static_cast<size_t>(2 * w));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / h, y = row % h;
      const ImageJob& job = jobs[static_cast<size_t>(b)];
      const TI* image = images + b * plane;
      const TM* mask = masks ? masks + b * plane : nullptr;
      float* maskRow = outMasks ? outMasks + b * plane + y * w : nullptr;
      if (job.wholeImage) {
        // The resampled values go to the image's float plane; applyPhotometric runs after.
        renderRow(job, f, image, mask, maskBilinear, y, buf, job.plane.data_ptr<float>() + y * w, maskRow);
        continue;
      }
      float* values = buf.values.data();
      renderRow(job, f, image, mask, maskBilinear, y, buf, values, maskRow);
      float* planes[3];
      for (int64_t c = 0; c < spec.channels; ++c) planes[c] = out + (b * spec.channels + c) * plane;
      emitRow(values, job.table.empty() ? nullptr : job.table.data(), spec, w, planes, y * w, values + w);
    }
  });
}

}  // namespace

std::pair<at::Tensor, at::Tensor> augmentCpu(const at::Tensor& images, const at::Tensor& masks, const std::vector<ImagePlan>& plans, bool maskBilinear,
                                             int64_t channels, bool normalize, const std::vector<double>& scale, const std::vector<double>& shift) {
  const int64_t batch = images.size(0);
  const Frame f{images.size(2), images.size(3)};
  const auto floatOptions = at::TensorOptions().dtype(at::kFloat);
  at::Tensor out = at::empty({batch, channels, f.height, f.width}, floatOptions);
  at::Tensor outMasks = masks.defined() ? at::empty({batch, 1, f.height, f.width}, floatOptions) : at::Tensor();
  OutputSpec spec;
  spec.channels = channels;
  spec.normalize = normalize;
  for (int64_t c = 0; c < channels && normalize; ++c) {
    spec.scale.push_back(static_cast<float>(scale[static_cast<size_t>(c)]));
    spec.shift.push_back(static_cast<float>(shift[static_cast<size_t>(c)]));
  }

  std::vector<ImageJob> jobs;
  jobs.reserve(plans.size());
  for (const ImagePlan& plan : plans) jobs.push_back(prepareJob(plan, f));
  // Elastic fields, one task per field (the smoothing dominates an elastic image's cost).
  std::vector<RowStep*> fields;
  for (ImageJob& job : jobs) {
    for (RowStep& r : job.rows) {
      if (r.step->kind == GeometricStep::Kind::Elastic) fields.push_back(&r);
    }
    if (job.wholeImage) job.plane = at::empty({1, 1, f.height, f.width}, floatOptions);
  }
  at::parallel_for(0, static_cast<int64_t>(fields.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fields[static_cast<size_t>(i)]->field = elasticFieldCpu(*fields[static_cast<size_t>(i)]->step, f.height, f.width);
  });

  float* outPtr = out.data_ptr<float>();
  float* maskPtr = masks.defined() ? outMasks.data_ptr<float>() : nullptr;
  const auto withMasks = [&](auto imagePtr) {
    if (!masks.defined()) runRows(jobs, f, imagePtr, static_cast<const uint8_t*>(nullptr), maskBilinear, spec, outPtr, nullptr);
    else if (masks.scalar_type() == at::kByte) runRows(jobs, f, imagePtr, masks.data_ptr<uint8_t>(), maskBilinear, spec, outPtr, maskPtr);
    else runRows(jobs, f, imagePtr, masks.data_ptr<float>(), maskBilinear, spec, outPtr, maskPtr);
  };
  if (images.scalar_type() == at::kByte) withMasks(static_cast<const uint8_t*>(images.data_ptr<uint8_t>()));
  else withMasks(static_cast<const float*>(images.data_ptr<float>()));

  // Images whose photometric steps need the whole image: applyPhotometric on the plane, then out.
  const int64_t plane = f.height * f.width;
  for (size_t b = 0; b < jobs.size(); ++b) {
    ImageJob& job = jobs[b];
    if (!job.wholeImage) continue;
    ImagePlan only;
    only.photometric = plans[b].photometric;
    applyPhotometric(job.plane, {only});
    const float* values = job.plane.data_ptr<float>();
    float* planes[3];
    for (int64_t c = 0; c < channels; ++c) planes[c] = outPtr + (static_cast<int64_t>(b) * channels + c) * plane;
    std::vector<float> scratch(static_cast<size_t>(f.width));
    for (int64_t y = 0; y < f.height; ++y) emitRow(values + y * f.width, nullptr, spec, f.width, planes, y * f.width, scratch.data());
  }
  return {out, outMasks};
}

}  // namespace pn::augment
