// The torch-side optimizer API for the native trainer: Adam, AdamW, SGD (momentum, Nesterov) from
// LibTorch and RAdam (not in LibTorch 1.13), over named parameters grouped by name prefix (separate
// encoder/decoder learning rates) with weight decay off for 1-D parameters (biases, norm weights).
// Gradient accumulation: call backward N times, then clipGradNorm (optional), step, zeroGrad.
// The torch-free wrapper for the N-API layer (native/binding/train.cc) is optim_api.h.
//
//   pn::optim::OptimizerOptions o;
//   o.kind = pn::optim::Algorithm::Adam;
//   o.lr = 1e-4;
//   o.weightDecay = 5e-6;
//   o.lrRules = {{"encoder.", 1e-5}};
//   pn::optim::Optimizer optimizer(pn::optim::namedParameters(module), o);
//   for (step...) { for (k < accumulate) comboLoss(...).backward(); optimizer.clipGradNorm(0.1);
//                   optimizer.step(); optimizer.zeroGrad(); }
//   checkpoint extras: optimizer.stateDict() / optimizer.loadStateDict(...)
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "optim_api.h"

namespace pn::optim {

enum class Algorithm { Adam, AdamW, SGD, RAdam };

/**
 * The torch side's options: every field and default is pn::OptimizerSpec's (optim_api.h, the one
 * declaration of the optimizer's options in C++), plus the algorithm parsed from its name.
 * lrRules: parameters whose name starts with a rule's prefix get its lr (the first match wins); lr
 * is the learning rate of parameters no rule matches; weightDecay is an L2 penalty (Adam, SGD,
 * RAdam: added to the gradient) or decoupled decay (AdamW); decayBiasesAndNorms also decays 1-D
 * parameters (biases, BatchNorm/GroupNorm weights), off by default.
 */
struct OptimizerOptions : public pn::OptimizerSpec {
  Algorithm kind = Algorithm::Adam;
};

/** One parameter group: parameters sharing a learning rate and a weight decay. */
struct GroupInfo {
  /** The rule's prefix ("" when no rule matched), with "/no_decay" appended for 1-D parameters. */
  std::string name;
  double lr = 0;
  /** The learning rate the group was created with (scaleLr multiplies it). */
  double initialLr = 0;
  double weightDecay = 0;
  std::vector<std::string> parameters;
};

/** RAdam (Liu et al. 2019) exactly as PyTorch's torch.optim.RAdam (L2 weight decay). */
struct RAdamOptions : public torch::optim::OptimizerCloneableOptions<RAdamOptions> {
  RAdamOptions(double lr = 1e-3);  // NOLINT: implicit like LibTorch's options
  TORCH_ARG(double, lr) = 1e-3;
  typedef std::tuple<double, double> betas_t;
  TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0;

 public:
  double get_lr() const override { return lr(); }
  void set_lr(const double value) override { lr(value); }
};

struct RAdamParamState : public torch::optim::OptimizerCloneableParamState<RAdamParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, exp_avg);
  TORCH_ARG(torch::Tensor, exp_avg_sq);
};

/**
 * Rectified Adam: m, v as Adam; rho_inf = 2 / (1 - beta2) - 1,
 * rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t); when rho_t > 5 the step is
 * lr * r_t * m_hat / (sqrt(v) / sqrt(1 - beta2^t) + eps) with
 * r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t)), otherwise the
 * un-adapted momentum step lr * m_hat.
 */
class RAdam : public torch::optim::Optimizer {
 public:
  explicit RAdam(std::vector<torch::optim::OptimizerParamGroup> groups, RAdamOptions defaults = {});
  torch::Tensor step(LossClosure closure = nullptr) override;
};

/** Every parameter of a TorchScript module with its dotted name ("encoder.layer1.0.conv1.weight"). */
std::vector<std::pair<std::string, at::Tensor>> namedParameters(const torch::jit::Module& module);
/** Every parameter of a C++ frontend module with its dotted name. */
std::vector<std::pair<std::string, at::Tensor>> namedParameters(const torch::nn::Module& module);

/**
 * An optimizer over named parameters. Parameters that do not require a gradient now (a frozen
 * encoder) are kept: a step skips any parameter without a gradient, so unfreezing later needs no
 * new optimizer. Not thread-safe: one caller at a time.
 */
class Optimizer {
 public:
  Optimizer(std::vector<std::pair<std::string, at::Tensor>> parameters, const OptimizerOptions& options);

  /** Zeroes every gradient (kept allocated). */
  void zeroGrad();
  /** One update from the accumulated gradients. */
  void step();
  /** The global L2 norm of all gradients (as if concatenated). */
  double gradNorm() const;
  /**
   * Scales every gradient by maxNorm / (norm + 1e-6) when that is below 1 (torch's
   * clip_grad_norm_); returns the norm before clipping (NaN or inf when a gradient is not finite).
   */
  double clipGradNorm(double maxNorm);
  /** Multiplies every gradient by `factor` (one multi-tensor kernel: the gradient scaler's unscale). */
  void scaleGrads(double factor);

  size_t groupCount() const;
  GroupInfo group(size_t index) const;
  void setLr(size_t index, double lr);
  /** Sets every group's learning rate to its initial one times `factor` (for schedules). */
  void scaleLr(double factor);

  /**
   * The state as named tensors: "optimizer/<param>/<field>" (step as an int64 scalar, exp_avg,
   * exp_avg_sq, max_exp_avg_sq, momentum_buffer) and "optimizer/group/<i>/lr" (a float64 scalar).
   * Tensors are copies.
   */
  std::vector<std::pair<std::string, at::Tensor>> stateDict() const;
  /** Restores what stateDict wrote (same parameter names and shapes); unknown names are an error. */
  void loadStateDict(const std::vector<std::pair<std::string, at::Tensor>>& state);

  const OptimizerOptions& options() const { return options_; }
  /** LibTorch's optimizer underneath (its param groups and per-parameter state), for the CUDA graph step. */
  torch::optim::Optimizer& torchOptimizer() { return *impl_; }
  const std::vector<std::pair<std::string, at::Tensor>>& parameters() const { return parameters_; }

 private:
  OptimizerOptions options_;
  std::vector<std::pair<std::string, at::Tensor>> parameters_;
  std::vector<GroupInfo> groups_;
  std::unique_ptr<torch::optim::Optimizer> impl_;
};

}  // namespace pn::optim

namespace pn {
class Optimizer;
/** The optimizer behind a handle (optim_api.h); the caller serialises use (the engine's mutex). */
optim::Optimizer& torchSide(const Optimizer& handle);
}  // namespace pn
