// The batch augmentation entry point: decodes the plan TypeScript drew; on the CPU runs the
// one-pass kernel (cpu_kernel.cpp), elsewhere resamples the batch (geometry.cpp), runs the
// photometric steps (photometric.cpp) and normalises.
#include <cmath>
#include <string>

#include "augment_internal.h"

namespace pn::augment {

namespace {

/** Reads the flat plan front to back; every read is bounds-checked. */
class PlanReader {
 public:
  explicit PlanReader(const std::vector<double>& plan) : plan_(plan) {}

  double number(const char* what) {
    if (pos_ >= plan_.size()) throw Error(std::string("augmentation plan ends early (reading ") + what + ")");
    const double v = plan_[pos_++];
    if (!std::isfinite(v)) throw Error(std::string("augmentation plan has a non-finite ") + what);
    return v;
  }

  int64_t integer(const char* what, int64_t min, int64_t max) {
    const double v = number(what);
    if (v != std::floor(v) || v < static_cast<double>(min) || v > static_cast<double>(max)) {
      throw Error(std::string("augmentation plan: ") + what + " must be an integer in [" + std::to_string(min) + ", " +
                  std::to_string(max) + "], got " + std::to_string(v));
    }
    return static_cast<int64_t>(v);
  }

  bool done() const { return pos_ == plan_.size(); }
  size_t position() const { return pos_; }

 private:
  const std::vector<double>& plan_;
  size_t pos_ = 0;
};

constexpr int64_t kPlanVersion = 1;
constexpr int64_t kMaxSeed = 4294967295LL;

void expectParams(int64_t got, int64_t want, const char* kind) {
  if (got != want) throw Error(std::string("augmentation plan: ") + kind + " takes " + std::to_string(want) + " parameters, got " + std::to_string(got));
}

GeometricStep readGeometric(PlanReader& in) {
  GeometricStep step;
  step.kind = static_cast<GeometricStep::Kind>(in.integer("geometric kind", 0, 3));
  step.border = static_cast<Border>(in.integer("border mode", 0, 4));
  const int64_t count = in.integer("parameter count", 0, 1 << 20);
  switch (step.kind) {
    case GeometricStep::Kind::Affine:
      expectParams(count, 6, "an affine step");
      for (double& m : step.matrix) m = in.number("affine matrix");
      break;
    case GeometricStep::Kind::Elastic:
      expectParams(count, 3, "an elastic step");
      step.alpha = in.number("elastic alpha");
      step.sigma = in.number("elastic sigma");
      if (step.sigma < 0) throw Error("augmentation plan: elastic sigma must be >= 0");
      step.seed = static_cast<uint64_t>(in.integer("elastic seed", 0, kMaxSeed));
      break;
    case GeometricStep::Kind::GridDistortion: {
      step.numSteps = in.integer("grid num_steps", 1, 1 << 16);
      expectParams(count, 1 + 2 * (step.numSteps + 1), "a grid distortion step");
      for (int64_t i = 0; i <= step.numSteps; ++i) step.xSteps.push_back(in.number("grid x step"));
      for (int64_t i = 0; i <= step.numSteps; ++i) step.ySteps.push_back(in.number("grid y step"));
      break;
    }
    case GeometricStep::Kind::OpticalDistortion:
      expectParams(count, 3, "an optical distortion step");
      step.k = in.number("optical k");
      step.dx = in.number("optical dx");
      step.dy = in.number("optical dy");
      break;
  }
  return step;
}

PhotometricStep readPhotometric(PlanReader& in) {
  PhotometricStep step;
  step.kind = static_cast<PhotometricStep::Kind>(in.integer("photometric kind", 0, 4));
  const int64_t count = in.integer("parameter count", 0, 1 << 20);
  switch (step.kind) {
    case PhotometricStep::Kind::Pointwise:
      expectParams(count, 4, "a pointwise step");
      step.alpha = in.number("contrast alpha");
      step.beta = in.number("brightness beta");
      step.betaByMax = in.integer("brightness_by_max", 0, 1) == 1;
      step.gamma = in.number("gamma");
      if (step.gamma <= 0) throw Error("augmentation plan: gamma must be > 0");
      break;
    case PhotometricStep::Kind::Clahe:
      expectParams(count, 3, "a CLAHE step");
      step.clipLimit = in.number("CLAHE clip limit");
      step.tileRows = in.integer("CLAHE tile rows", 1, 1 << 12);
      step.tileCols = in.integer("CLAHE tile columns", 1, 1 << 12);
      break;
    case PhotometricStep::Kind::Convolve:
      step.ksize = in.integer("kernel size", 1, 255);
      if (step.ksize % 2 == 0) throw Error("augmentation plan: kernel size must be odd, got " + std::to_string(step.ksize));
      expectParams(count, 1 + step.ksize * step.ksize, "a convolution step");
      for (int64_t i = 0; i < step.ksize * step.ksize; ++i) step.kernel.push_back(in.number("kernel weight"));
      break;
    case PhotometricStep::Kind::Median:
      expectParams(count, 1, "a median step");
      step.ksize = in.integer("median kernel size", 1, 255);
      if (step.ksize % 2 == 0) throw Error("augmentation plan: median kernel size must be odd, got " + std::to_string(step.ksize));
      break;
    case PhotometricStep::Kind::Noise:
      expectParams(count, 3, "a noise step");
      step.mean = in.number("noise mean");
      step.std = in.number("noise std");
      step.seed = static_cast<uint64_t>(in.integer("noise seed", 0, kMaxSeed));
      break;
  }
  return step;
}

}  // namespace

std::vector<ImagePlan> decodePlan(const std::vector<double>& plan, int64_t batch) {
  PlanReader in(plan);
  const int64_t version = in.integer("plan version", 0, 1 << 20);
  if (version != kPlanVersion) throw Error("augmentation plan version " + std::to_string(version) + " is not supported (expected 1)");
  const int64_t count = in.integer("image count", 0, 1 << 30);
  if (count != batch) throw Error("augmentation plan is for " + std::to_string(count) + " images but the batch has " + std::to_string(batch));
  std::vector<ImagePlan> plans(static_cast<size_t>(batch));
  for (ImagePlan& image : plans) {
    const int64_t geometric = in.integer("geometric step count", 0, 1 << 16);
    const int64_t photometric = in.integer("photometric step count", 0, 1 << 16);
    for (int64_t i = 0; i < geometric; ++i) image.geometry.push_back(readGeometric(in));
    for (int64_t i = 0; i < photometric; ++i) image.photometric.push_back(readPhotometric(in));
  }
  if (!in.done()) throw Error("augmentation plan has " + std::to_string(plan.size() - in.position()) + " unread values at the end");
  return plans;
}

}  // namespace pn::augment

namespace pn {

AugmentResult augmentBatch(const Tensor& images, const Tensor& masks, const std::vector<double>& plan, const AugmentOptions& options) {
  return guard([&] {
    const at::Tensor& input = unwrap(images);
    const bool supported = input.scalar_type() == at::kByte || input.scalar_type() == at::kFloat;
    if (!supported || input.dim() != 4 || input.size(1) != 1) {
      throw Error("augment: expected a uint8 or float32 (0-255) image batch [B, 1, H, W], got " + std::string(c10::toString(input.scalar_type())) +
                  " " + c10::str(input.sizes()));
    }
    at::Tensor maskInput;
    if (masks.defined()) {
      maskInput = unwrap(masks);
      const bool maskSupported = maskInput.scalar_type() == at::kByte || maskInput.scalar_type() == at::kFloat;
      if (!maskSupported || maskInput.sizes() != input.sizes()) {
        throw Error("augment: expected uint8 or float32 masks of the images' shape " + c10::str(input.sizes()) + ", got " +
                    std::string(c10::toString(maskInput.scalar_type())) + " " + c10::str(maskInput.sizes()));
      }
      if (maskInput.device() != input.device()) throw Error("augment: masks are on " + maskInput.device().str() + " but images on " + input.device().str());
    }
    if (options.channels != 1 && options.channels != 3) throw Error("augment: channels must be 1 or 3, got " + std::to_string(options.channels));
    const auto perChannel = [&](const std::vector<double>& values, const char* name) {
      if (values.size() != 1 && static_cast<int64_t>(values.size()) != options.channels) {
        throw Error(std::string("augment: ") + name + " needs 1 or " + std::to_string(options.channels) + " values, got " + std::to_string(values.size()));
      }
      std::vector<double> out(static_cast<size_t>(options.channels));
      for (size_t c = 0; c < out.size(); ++c) out[c] = values[values.size() == 1 ? 0 : c];
      return out;
    };
    at::NoGradGuard noGrad;
    const std::vector<augment::ImagePlan> plans = augment::decodePlan(plan, input.size(0));
    const int64_t channels = options.channels;
    std::vector<double> scale, shift;
    if (options.normalize) {
      const std::vector<double> mean = perChannel(options.mean, "mean"), std = perChannel(options.std, "std");
      if (!(options.maxPixelValue > 0)) throw Error("augment: max_pixel_value must be > 0");
      for (size_t c = 0; c < mean.size(); ++c) {
        if (!(std[c] != 0)) throw Error("augment: std must be nonzero");
        scale.push_back(1.0 / (options.maxPixelValue * std[c]));
        shift.push_back(-mean[c] / std[c]);
      }
    }
    const at::Tensor contiguousMasks = maskInput.defined() ? maskInput.contiguous() : maskInput;
    if (input.device().is_cpu() && !options.atenPath) {
      // The CPU kernel: geometry, photometric table, normalisation and channels in one pass per row.
      auto [out, outMasks] = augment::augmentCpu(input.contiguous(), contiguousMasks, plans, options.maskBilinear, channels, options.normalize, scale, shift);
      return AugmentResult{wrap(out), outMasks.defined() ? wrap(outMasks) : Tensor()};
    }
    auto [x, outMasks] = augment::resampleBatch(input.contiguous(), contiguousMasks, plans, options.maskBilinear);
    augment::applyPhotometric(x, plans);
    const int64_t batch = x.size(0), height = x.size(2), width = x.size(3);
    at::Tensor out;
    if (options.normalize) {
      const auto column = [&](const std::vector<double>& v) {
        return at::tensor(v, at::TensorOptions().dtype(at::kDouble)).view({1, channels, 1, 1}).to(x.options());
      };
      out = at::addcmul(column(shift), x.expand({batch, channels, height, width}), column(scale));
    } else {
      out = channels == 1 ? x : x.expand({batch, channels, height, width}).contiguous();
    }
    return AugmentResult{wrap(out), outMasks.defined() ? wrap(outMasks) : Tensor()};
  });
}

}  // namespace pn
