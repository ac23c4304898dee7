// Photometric augmentation on the resampled float batch (0-255 scale). Each image's steps run in
// its own order; images that run the same kind of step at the same position are processed
// together (one LUT gather, one grouped convolution), and consecutive pointwise steps of an image
// (brightness, contrast, gamma) are fused into one 256-entry lookup table.
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>

#include "augment_internal.h"

namespace pn::augment {
namespace {

using Kind = PhotometricStep::Kind;

/** A run of an image's steps applied together: one step, or several fused pointwise ones. */
struct Stage {
  Kind kind;
  std::vector<const PhotometricStep*> steps;
};

std::vector<Stage> stagesOf(const std::vector<PhotometricStep>& steps) {
  std::vector<Stage> stages;
  for (const PhotometricStep& step : steps) {
    // A brightness relative to the image mean needs the mean of the image as it is then, so it
    // starts a new stage rather than joining the previous lookup table.
    const bool needsMean = step.kind == Kind::Pointwise && !step.betaByMax && step.beta != 0;
    if (step.kind == Kind::Pointwise && !needsMean && !stages.empty() && stages.back().kind == Kind::Pointwise) {
      stages.back().steps.push_back(&step);
    } else {
      stages.push_back({step.kind, {&step}});
    }
  }
  return stages;
}

at::Tensor indexTensor(const std::vector<int64_t>& images, const at::Device& device) {
  return at::tensor(images, at::TensorOptions().dtype(at::kLong)).to(device);
}

/** The composed lookup table of a pointwise stage at the integer levels 0..255. */
std::vector<double> lookupTable(const Stage& stage, double mean) {
  std::vector<double> lut(256);
  for (int i = 0; i < 256; ++i) {
    double v = i;
    for (const PhotometricStep* s : stage.steps) {
      v = std::clamp(s->alpha * v + s->beta * (s->betaByMax ? 255.0 : mean), 0.0, 255.0);
      if (s->gamma != 1.0) v = 255.0 * std::pow(v / 255.0, s->gamma);
    }
    lut[static_cast<size_t>(i)] = v;
  }
  return lut;
}

/** Applies per-image tables [S,256] to x [S,...] by linear interpolation (exact at integers). */
at::Tensor applyTables(const at::Tensor& x, const at::Tensor& tables) {
  const auto shape = x.sizes().vec();
  const at::Tensor flat = x.reshape({x.size(0), -1}).clamp(0.0, 255.0);
  const at::Tensor lower = flat.floor().clamp_max(254.0);
  const at::Tensor index = lower.to(at::kLong);
  return at::lerp(tables.gather(1, index), tables.gather(1, index + 1), flat - lower).view(shape);
}

void pointwise(at::Tensor& x, const std::vector<int64_t>& images, const std::vector<const Stage*>& stages) {
  const at::Tensor index = indexTensor(images, x.device());
  const at::Tensor subset = x.index_select(0, index);
  std::vector<double> means(images.size(), 0.0);
  bool needMean = false;
  for (const Stage* stage : stages) {
    for (const PhotometricStep* s : stage->steps) needMean = needMean || (!s->betaByMax && s->beta != 0);
  }
  if (needMean) {
    const at::Tensor m = subset.mean({1, 2, 3}).to(at::kCPU, at::kDouble).contiguous();
    std::copy(m.data_ptr<double>(), m.data_ptr<double>() + m.numel(), means.begin());
  }
  std::vector<double> tables;
  tables.reserve(256 * images.size());
  for (size_t k = 0; k < images.size(); ++k) {
    const std::vector<double> lut = lookupTable(*stages[k], means[k]);
    tables.insert(tables.end(), lut.begin(), lut.end());
  }
  const at::Tensor lut = at::tensor(tables, at::TensorOptions().dtype(at::kDouble)).view({-1, 256}).to(x.options());
  x.index_copy_(0, index, applyTables(subset, lut));
}

/** Pads [N,C,H,W] by p on every side: reflect-101 where possible, else edge replication. */
at::Tensor padReflect101(const at::Tensor& x, int64_t p) {
  if (p == 0) return x;
  return p < x.size(2) && p < x.size(3) ? at::reflection_pad2d(x, {p, p, p, p}) : at::replication_pad2d(x, {p, p, p, p});
}

/** Correlates each image with its own kernel (zero-padded to the largest): one grouped conv. */
void convolve(at::Tensor& x, const std::vector<int64_t>& images, const std::vector<const Stage*>& stages) {
  int64_t size = 1;
  for (const Stage* stage : stages) size = std::max(size, stage->steps[0]->ksize);
  const int64_t count = static_cast<int64_t>(images.size());
  std::vector<double> weights(static_cast<size_t>(count * size * size), 0.0);
  for (int64_t k = 0; k < count; ++k) {
    const PhotometricStep& s = *stages[static_cast<size_t>(k)]->steps[0];
    const int64_t offset = (size - s.ksize) / 2;
    for (int64_t r = 0; r < s.ksize; ++r) {
      for (int64_t c = 0; c < s.ksize; ++c) {
        weights[static_cast<size_t>((k * size + r + offset) * size + c + offset)] = s.kernel[static_cast<size_t>(r * s.ksize + c)];
      }
    }
  }
  const at::Tensor index = indexTensor(images, x.device());
  const at::Tensor subset = x.index_select(0, index);
  const int64_t height = x.size(2), width = x.size(3);
  const at::Tensor kernel = at::tensor(weights, at::TensorOptions().dtype(at::kDouble)).view({count, 1, size, size}).to(x.options());
  const at::Tensor input = padReflect101(subset.view({1, count, height, width}), size / 2);
  const std::vector<int64_t> unit{1, 1}, none{0, 0};
  const at::Tensor result = at::conv2d(input, kernel, c10::nullopt, at::IntArrayRef(unit), at::IntArrayRef(none), at::IntArrayRef(unit), count)
                                .view({count, 1, height, width});
  x.index_copy_(0, index, result.clamp(0.0, 255.0));
}

/** Median of each k x k neighbourhood, edges replicated (OpenCV's medianBlur). */
at::Tensor medianFilter(const at::Tensor& image, int64_t ksize) {
  const int64_t height = image.size(0), width = image.size(1), r = ksize / 2;
  const at::Tensor padded = at::replication_pad2d(image.view({1, 1, height, width}), {r, r, r, r});
  const at::Tensor patches = padded.unfold(2, ksize, 1).unfold(3, ksize, 1).reshape({height, width, ksize * ksize});
  return std::get<0>(patches.median(-1));
}

}  // namespace

bool pointwiseTable(const std::vector<PhotometricStep>& steps, std::vector<double>& table) {
  table.clear();
  if (steps.empty()) return true;
  const std::vector<Stage> stages = stagesOf(steps);
  if (stages.size() != 1 || stages[0].kind != Kind::Pointwise) return false;
  for (const PhotometricStep* s : stages[0].steps) {
    if (!s->betaByMax && s->beta != 0) return false;
  }
  table = lookupTable(stages[0], 0.0);
  return true;
}

at::Tensor clahe(const at::Tensor& image, double clipLimit, int64_t tileRows, int64_t tileCols) {
  const int64_t height = image.size(0), width = image.size(1);
  const auto options = image.options();
  const at::Tensor levels = image.round().clamp(0.0, 255.0);
  // Tiles cover the image padded (reflect-101) to a multiple of the grid, as OpenCV does.
  const int64_t padBottom = (tileRows - height % tileRows) % tileRows, padRight = (tileCols - width % tileCols) % tileCols;
  at::Tensor padded = levels.view({1, 1, height, width});
  if (padBottom > 0 || padRight > 0) {
    const bool reflect = padBottom < height && padRight < width;
    padded = reflect ? at::reflection_pad2d(padded, {0, padRight, 0, padBottom}) : at::replication_pad2d(padded, {0, padRight, 0, padBottom});
  }
  const int64_t paddedH = height + padBottom, paddedW = width + padRight;
  const int64_t tileH = paddedH / tileRows, tileW = paddedW / tileCols, tiles = tileRows * tileCols, area = tileH * tileW;
  const auto longOptions = options.dtype(at::kLong);
  const at::Tensor tileY = at::arange(paddedH, longOptions).div(tileH, "floor").view({paddedH, 1});
  const at::Tensor tileX = at::arange(paddedW, longOptions).div(tileW, "floor").view({1, paddedW});
  const at::Tensor bins = ((tileY * tileCols + tileX) * 256 + padded.view({paddedH, paddedW}).to(at::kLong)).reshape({-1});
  at::Tensor hist = at::bincount(bins, {}, tiles * 256).view({tiles, 256});
  if (clipLimit > 0) {
    const int64_t limit = std::max<int64_t>(static_cast<int64_t>(clipLimit * static_cast<double>(area) / 256.0), 1);
    const at::Tensor clipped = (hist - limit).clamp_min(0).sum(1, true);
    hist = hist.clamp_max(limit);
    const at::Tensor batch = clipped.div(256, "floor");
    const at::Tensor residual = clipped - batch * 256;
    hist = hist + batch;
    // OpenCV hands the residual out one count at a time every `step` bins from bin 0.
    const at::Tensor step = at::div(at::full_like(residual, 256), residual.clamp_min(1), "floor").clamp_min(1);
    const at::Tensor bin = at::arange(256, longOptions).view({1, 256});
    hist = hist + ((at::remainder(bin, step) == 0) & (bin.div(step, "floor") < residual)).to(at::kLong);
  }
  const at::Tensor lut = (hist.cumsum(1).to(at::kDouble) * (255.0 / static_cast<double>(area))).round().clamp(0.0, 255.0).to(options).reshape({-1});
  // Bilinear blend of the four nearest tiles' tables (tile centres at (i + 0.5) * tile size).
  const auto axis = [&](int64_t n, int64_t tile, int64_t count, at::Tensor& lo, at::Tensor& hi, at::Tensor& frac) {
    const at::Tensor pos = at::arange(n, options.dtype(at::kFloat)) * static_cast<float>(1.0 / static_cast<double>(tile)) - 0.5f;
    const at::Tensor first = pos.floor();
    frac = (pos - first).to(options);
    lo = first.to(at::kLong).clamp_min(0);
    hi = (first.to(at::kLong) + 1).clamp_max(count - 1);
  };
  at::Tensor y1, y2, ya, x1, x2, xa;
  axis(height, tileH, tileRows, y1, y2, ya);
  axis(width, tileW, tileCols, x1, x2, xa);
  y1 = y1.view({height, 1}), y2 = y2.view({height, 1}), ya = ya.view({height, 1});
  x1 = x1.view({1, width}), x2 = x2.view({1, width}), xa = xa.view({1, width});
  const at::Tensor v = levels.to(at::kLong);
  const auto lookup = [&](const at::Tensor& ty, const at::Tensor& tx) { return lut.take((ty * tileCols + tx) * 256 + v); };
  const at::Tensor top = lookup(y1, x1) * (1 - xa) + lookup(y1, x2) * xa;
  const at::Tensor bottom = lookup(y2, x1) * (1 - xa) + lookup(y2, x2) * xa;
  return (top * (1 - ya) + bottom * ya).round().clamp(0.0, 255.0);
}

void applyPhotometric(at::Tensor& x, const std::vector<ImagePlan>& plans) {
  std::vector<std::vector<Stage>> stages;
  size_t rounds = 0;
  for (const ImagePlan& plan : plans) {
    stages.push_back(stagesOf(plan.photometric));
    rounds = std::max(rounds, stages.back().size());
  }
  const int64_t height = x.size(2), width = x.size(3);
  for (size_t round = 0; round < rounds; ++round) {
    std::map<Kind, std::pair<std::vector<int64_t>, std::vector<const Stage*>>> groups;
    for (size_t b = 0; b < stages.size(); ++b) {
      if (round >= stages[b].size()) continue;
      auto& group = groups[stages[b][round].kind];
      group.first.push_back(static_cast<int64_t>(b));
      group.second.push_back(&stages[b][round]);
    }
    for (auto& [kind, group] : groups) {
      const auto& [images, members] = group;
      switch (kind) {
        case Kind::Pointwise: pointwise(x, images, members); break;
        case Kind::Convolve: convolve(x, images, members); break;
        case Kind::Clahe:
          for (size_t k = 0; k < images.size(); ++k) {
            const PhotometricStep& s = *members[k]->steps[0];
            x[images[k]][0].copy_(clahe(x[images[k]][0], s.clipLimit, s.tileRows, s.tileCols));
          }
          break;
        case Kind::Median:
          for (size_t k = 0; k < images.size(); ++k) {
            const PhotometricStep& s = *members[k]->steps[0];
            x[images[k]][0].copy_(medianFilter(x[images[k]][0], s.ksize));
          }
          break;
        case Kind::Noise:
          for (size_t k = 0; k < images.size(); ++k) {
            const PhotometricStep& s = *members[k]->steps[0];
            // Drawn on the CPU from the step's seed: the same noise on every device.
            auto generator = at::make_generator<at::CPUGeneratorImpl>(s.seed);
            const at::Tensor noise = at::randn({height, width}, generator, at::TensorOptions().dtype(at::kFloat)).to(x.device());
            at::Tensor image = x[images[k]][0];
            image.add_(noise * s.std + s.mean).clamp_(0.0, 255.0);
          }
          break;
      }
    }
  }
}

}  // namespace pn::augment
