// The torch-free API of pneumo-native's optimizers, for native/binding/ (napi.h + torch-free headers
// only). The trainer owns optimizers natively through optim.h; this wrapper lets JS build one over
// a list of tensors (tests, tools). Every function succeeds or throws pn::Error.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"

namespace pn {

/** The optimizer's options: their one C++ declaration (optim.h's OptimizerOptions derives from it). */
struct OptimizerSpec {
  /** "adam", "adamw", "sgd" or "radam". */
  std::string algorithm = "adam";
  double lr = 1e-3;
  double weightDecay = 0;
  bool decayBiasesAndNorms = false;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool amsgrad = false;
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  /** (name prefix, lr) rules; the first match wins. */
  std::vector<std::pair<std::string, double>> lrRules;
};

struct OptimizerGroupInfo {
  std::string name;
  double lr = 0;
  double initialLr = 0;
  double weightDecay = 0;
  std::vector<std::string> parameters;
};

/** A handle to a pn::optim::Optimizer (copies share it; calls are serialised by a mutex). */
class Optimizer {
 public:
  struct Impl;
  Optimizer();
  explicit Optimizer(std::shared_ptr<Impl> impl);
  bool defined() const { return impl_ != nullptr; }
  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

Optimizer createOptimizer(const std::vector<std::pair<std::string, Tensor>>& parameters, const OptimizerSpec& spec);
void optimizerStep(const Optimizer& optimizer);
void optimizerZeroGrad(const Optimizer& optimizer);
double optimizerGradNorm(const Optimizer& optimizer);
/** Clips the global gradient norm to maxNorm; returns the norm before clipping. */
double optimizerClipGradNorm(const Optimizer& optimizer, double maxNorm);
/** Multiplies every gradient by `factor`. */
void optimizerScaleGrads(const Optimizer& optimizer, double factor);
std::vector<OptimizerGroupInfo> optimizerGroups(const Optimizer& optimizer);
void optimizerSetLr(const Optimizer& optimizer, int64_t group, double lr);
void optimizerScaleLr(const Optimizer& optimizer, double factor);
std::vector<std::pair<std::string, Tensor>> optimizerStateDict(const Optimizer& optimizer);
void optimizerLoadStateDict(const Optimizer& optimizer, const std::vector<std::pair<std::string, Tensor>>& state);

/** A leaf copy of `value` that requires a gradient (a trainable parameter for JS-side use). */
Tensor makeParameter(const Tensor& value);
/** Sets the gradient of a parameter to a copy of `gradient`, or adds it when `accumulate`. */
void setGradient(const Tensor& parameter, const Tensor& gradient, bool accumulate);
/** The gradient of a parameter (a copy), undefined when it has none. */
Tensor gradientOf(const Tensor& parameter);

}  // namespace pn
