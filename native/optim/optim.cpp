// Optimizers over named parameters: LibTorch's Adam, AdamW and SGD, RAdam (written here, as
// torch.optim.RAdam), groups by name prefix and dimensionality, global-norm clipping, and a state
// dict of named tensors for checkpoints.
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "../core/torch_compat.h"
#include "../core/torch_internal.h"
#include "optim.h"
#include "optim_api.h"

namespace pn::optim {

RAdamOptions::RAdamOptions(double lr) : lr_(lr) {}

RAdam::RAdam(std::vector<torch::optim::OptimizerParamGroup> groups, RAdamOptions defaults)
    : torch::optim::Optimizer(std::move(groups), std::make_unique<RAdamOptions>(defaults)) {
  TORCH_CHECK(defaults.lr() >= 0, "Invalid learning rate: ", defaults.lr());
  TORCH_CHECK(defaults.eps() >= 0, "Invalid epsilon value: ", defaults.eps());
  const auto [beta1, beta2] = defaults.betas();
  TORCH_CHECK(beta1 >= 0 && beta1 < 1, "Invalid beta1: ", beta1);
  TORCH_CHECK(beta2 >= 0 && beta2 < 1, "Invalid beta2: ", beta2);
  TORCH_CHECK(defaults.weight_decay() >= 0, "Invalid weight_decay value: ", defaults.weight_decay());
}

torch::Tensor RAdam::step(LossClosure closure) {
  torch::NoGradGuard noGrad;
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enableGrad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const RAdamOptions&>(group.options());
    const auto [beta1, beta2] = o.betas();
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      torch::Tensor grad = p.grad();
      TORCH_CHECK(!grad.is_sparse(), "RAdam does not support sparse gradients");
      const auto key = compat::optimizerStateKey<decltype(state_)>(p);
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto fresh = std::make_unique<RAdamParamState>();
        fresh->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        it = state_.emplace(key, std::move(fresh)).first;
      }
      auto& s = static_cast<RAdamParamState&>(*it->second);
      s.step(s.step() + 1);
      const double step = static_cast<double>(s.step());
      const double correction1 = 1 - std::pow(beta1, step);
      const double correction2 = 1 - std::pow(beta2, step);
      if (o.weight_decay() != 0) grad = grad.add(p, o.weight_decay());
      s.exp_avg().mul_(beta1).add_(grad, 1 - beta1);
      s.exp_avg_sq().mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      const torch::Tensor corrected = s.exp_avg() / correction1;
      const double rhoInf = 2 / (1 - beta2) - 1;
      const double rhoT = rhoInf - 2 * step * std::pow(beta2, step) / correction2;
      if (rhoT > 5) {
        const double rect = std::sqrt((rhoT - 4) * (rhoT - 2) * rhoInf / ((rhoInf - 4) * (rhoInf - 2) * rhoT));
        // As Python's scalar / tensor: reciprocal, then multiply.
        const torch::Tensor adaptive = s.exp_avg_sq().sqrt().add_(o.eps()).reciprocal().mul_(std::sqrt(correction2));
        p.add_(corrected * o.lr() * adaptive * rect, -1.0);
      } else {
        p.add_(corrected * o.lr(), -1.0);
      }
    }
  }
  return loss;
}

namespace {

std::unique_ptr<torch::optim::OptimizerOptions> groupOptions(const OptimizerOptions& o, double lr, double decay) {
  switch (o.kind) {
    case Algorithm::Adam:
      return std::make_unique<torch::optim::AdamOptions>(
          torch::optim::AdamOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(decay).amsgrad(o.amsgrad));
    case Algorithm::AdamW:
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(decay).amsgrad(o.amsgrad));
    case Algorithm::SGD:
      return std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(lr).momentum(o.momentum).dampening(o.dampening).weight_decay(decay).nesterov(o.nesterov));
    case Algorithm::RAdam:
      return std::make_unique<RAdamOptions>(RAdamOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(decay));
  }
  TORCH_CHECK(false, "unknown optimizer algorithm");
}

void checkOptions(const OptimizerOptions& o) {
  TORCH_CHECK(std::isfinite(o.lr) && o.lr >= 0, "optimizer: lr must be a finite number >= 0, got ", o.lr);
  TORCH_CHECK(std::isfinite(o.weightDecay) && o.weightDecay >= 0, "optimizer: weightDecay must be >= 0, got ", o.weightDecay);
  TORCH_CHECK(o.beta1 >= 0 && o.beta1 < 1, "optimizer: beta1 must be in [0, 1), got ", o.beta1);
  TORCH_CHECK(o.beta2 >= 0 && o.beta2 < 1, "optimizer: beta2 must be in [0, 1), got ", o.beta2);
  TORCH_CHECK(o.eps >= 0, "optimizer: eps must be >= 0, got ", o.eps);
  TORCH_CHECK(o.momentum >= 0, "optimizer: momentum must be >= 0, got ", o.momentum);
  TORCH_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
              "optimizer: nesterov needs momentum > 0 and dampening 0 (got momentum ", o.momentum, ", dampening ",
              o.dampening, ")");
  TORCH_CHECK(!o.amsgrad || o.kind == Algorithm::Adam || o.kind == Algorithm::AdamW,
              "optimizer: amsgrad applies to adam and adamw only");
  for (const auto& rule : o.lrRules) {
    TORCH_CHECK(std::isfinite(rule.second) && rule.second >= 0, "optimizer: the lr of prefix '", rule.first,
                "' must be a finite number >= 0, got ", rule.second);
  }
}

/** torch::optim::Optimizer's state map (keyed by a string in LibTorch 1.13, by void* in 2.x). */
using StateMap = std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>;

StateMap::key_type stateKey(const at::Tensor& p) { return compat::optimizerStateKey<StateMap>(p); }

/** The named tensors of one parameter's state (no copies; the caller clones). */
std::vector<std::pair<std::string, at::Tensor>> stateFields(const torch::optim::OptimizerParamState& state) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  const auto stepTensor = [](int64_t step) { return at::scalar_tensor(step, at::TensorOptions().dtype(at::kLong)); };
  const auto addAdam = [&](int64_t step, const at::Tensor& m, const at::Tensor& v, const at::Tensor& vmax) {
    out.emplace_back("step", stepTensor(step));
    out.emplace_back("exp_avg", m);
    out.emplace_back("exp_avg_sq", v);
    if (vmax.defined()) out.emplace_back("max_exp_avg_sq", vmax);
  };
  if (const auto* s = dynamic_cast<const torch::optim::AdamParamState*>(&state)) {
    addAdam(s->step(), s->exp_avg(), s->exp_avg_sq(), s->max_exp_avg_sq());
  } else if (const auto* s = dynamic_cast<const torch::optim::AdamWParamState*>(&state)) {
    addAdam(s->step(), s->exp_avg(), s->exp_avg_sq(), s->max_exp_avg_sq());
  } else if (const auto* s = dynamic_cast<const RAdamParamState*>(&state)) {
    addAdam(s->step(), s->exp_avg(), s->exp_avg_sq(), at::Tensor());
  } else if (const auto* s = dynamic_cast<const torch::optim::SGDParamState*>(&state)) {
    if (s->momentum_buffer().defined()) out.emplace_back("momentum_buffer", s->momentum_buffer());
  }
  return out;
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> namedParameters(const torch::jit::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace_back(p.name, p.value);
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> namedParameters(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  return out;
}

Optimizer::Optimizer(std::vector<std::pair<std::string, at::Tensor>> parameters, const OptimizerOptions& options)
    : options_(options), parameters_(std::move(parameters)) {
  checkOptions(options_);
  TORCH_CHECK(!parameters_.empty(), "optimizer: no parameters to optimise");
  std::set<std::string> seen;
  std::map<std::pair<int, bool>, size_t> groupOf;
  std::vector<std::vector<at::Tensor>> members;
  for (const auto& [name, p] : parameters_) {
    TORCH_CHECK(p.defined(), "optimizer: parameter '", name, "' is undefined");
    TORCH_CHECK(at::isFloatingType(p.scalar_type()), "optimizer: parameter '", name, "' is ", p.scalar_type(),
                ", not floating point");
    TORCH_CHECK(seen.insert(name).second, "optimizer: parameter name '", name, "' appears twice");
    int rule = -1;
    for (size_t r = 0; r < options_.lrRules.size(); ++r) {
      if (name.compare(0, options_.lrRules[r].first.size(), options_.lrRules[r].first) == 0) {
        rule = static_cast<int>(r);
        break;
      }
    }
    const bool decay = options_.decayBiasesAndNorms || p.dim() > 1;
    const auto key = std::make_pair(rule, decay);
    auto it = groupOf.find(key);
    if (it == groupOf.end()) {
      GroupInfo g;
      g.name = (rule >= 0 ? options_.lrRules[rule].first : std::string()) + (decay ? "" : "/no_decay");
      g.lr = g.initialLr = rule >= 0 ? options_.lrRules[rule].second : options_.lr;
      g.weightDecay = decay ? options_.weightDecay : 0.0;
      it = groupOf.emplace(key, groups_.size()).first;
      groups_.push_back(std::move(g));
      members.emplace_back();
    }
    groups_[it->second].parameters.push_back(name);
    members[it->second].push_back(p);
  }
  std::vector<torch::optim::OptimizerParamGroup> torchGroups;
  for (size_t g = 0; g < groups_.size(); ++g) {
    torchGroups.emplace_back(members[g], groupOptions(options_, groups_[g].lr, groups_[g].weightDecay));
  }
  switch (options_.kind) {
    case Algorithm::Adam:
      impl_ = std::make_unique<torch::optim::Adam>(torchGroups, torch::optim::AdamOptions(options_.lr));
      break;
    case Algorithm::AdamW:
      impl_ = std::make_unique<torch::optim::AdamW>(torchGroups, torch::optim::AdamWOptions(options_.lr).weight_decay(0));
      break;
    case Algorithm::SGD: impl_ = std::make_unique<torch::optim::SGD>(torchGroups, torch::optim::SGDOptions(options_.lr)); break;
    case Algorithm::RAdam: impl_ = std::make_unique<RAdam>(torchGroups, RAdamOptions(options_.lr)); break;
  }
}

void Optimizer::zeroGrad() { impl_->zero_grad(); }

void Optimizer::step() { impl_->step(); }

namespace {
std::vector<at::Tensor> gradients(const std::vector<std::pair<std::string, at::Tensor>>& parameters) {
  std::vector<at::Tensor> out;
  for (const auto& entry : parameters) {
    if (entry.second.grad().defined()) out.push_back(entry.second.grad());
  }
  return out;
}

at::Tensor totalNorm(const std::vector<at::Tensor>& grads) {
  // One multi-tensor kernel per device for the per-gradient norms (at::_foreach_norm), then the
  // norm of the norms: torch.nn.utils.clip_grad_norm_'s foreach path.
  std::vector<at::Tensor> norms;
  norms.reserve(grads.size());
  std::vector<at::Tensor> same;
  for (const auto& g : grads) {
    if (g.device() == grads[0].device() && !g.is_sparse()) same.push_back(g.detach());
    else norms.push_back(g.detach().norm(2).to(grads[0].device()));
  }
  if (!same.empty()) {
    for (const at::Tensor& n : at::_foreach_norm(same, 2)) norms.push_back(n);
  }
  return at::stack(norms).norm(2);
}
}  // namespace

double Optimizer::gradNorm() const {
  torch::NoGradGuard noGrad;
  const auto grads = gradients(parameters_);
  return grads.empty() ? 0.0 : totalNorm(grads).item<double>();
}

double Optimizer::clipGradNorm(double maxNorm) {
  TORCH_CHECK(maxNorm > 0, "clipGradNorm: maxNorm must be > 0, got ", maxNorm);
  torch::NoGradGuard noGrad;
  const auto grads = gradients(parameters_);
  if (grads.empty()) return 0.0;
  // torch.nn.utils.clip_grad_norm_: coefficient max / (norm + 1e-6), clamped at 1.
  const at::Tensor total = totalNorm(grads);
  const at::Tensor coefficient = (maxNorm / (total + 1e-6)).clamp_max(1.0);
  for (const auto& g : grads) g.detach().mul_(coefficient.to(g.device()));
  return total.item<double>();
}

void Optimizer::scaleGrads(double factor) {
  torch::NoGradGuard noGrad;
  std::vector<at::Tensor> grads;
  for (const auto& g : gradients(parameters_)) grads.push_back(g.detach());
  if (!grads.empty()) at::_foreach_mul_(grads, factor);
}

size_t Optimizer::groupCount() const { return groups_.size(); }

GroupInfo Optimizer::group(size_t index) const {
  TORCH_CHECK(index < groups_.size(), "optimizer: group ", index, " does not exist (", groups_.size(), " groups)");
  GroupInfo g = groups_[index];
  g.lr = impl_->param_groups()[index].options().get_lr();
  return g;
}

void Optimizer::setLr(size_t index, double lr) {
  TORCH_CHECK(index < groups_.size(), "optimizer: group ", index, " does not exist (", groups_.size(), " groups)");
  TORCH_CHECK(std::isfinite(lr) && lr >= 0, "optimizer: lr must be a finite number >= 0, got ", lr);
  impl_->param_groups()[index].options().set_lr(lr);
}

void Optimizer::scaleLr(double factor) {
  TORCH_CHECK(std::isfinite(factor) && factor >= 0, "optimizer: lr factor must be a finite number >= 0, got ", factor);
  for (size_t g = 0; g < groups_.size(); ++g) setLr(g, groups_[g].initialLr * factor);
}

std::vector<std::pair<std::string, at::Tensor>> Optimizer::stateDict() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  const auto& state = impl_->state();
  for (const auto& [name, p] : parameters_) {
    const auto it = state.find(stateKey(p));
    if (it == state.end()) continue;
    for (auto& [field, value] : stateFields(*it->second)) {
      out.emplace_back("optimizer/" + name + "/" + field, value.detach().clone());
    }
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    out.emplace_back("optimizer/group/" + std::to_string(g) + "/lr",
                     at::scalar_tensor(impl_->param_groups()[g].options().get_lr(), at::TensorOptions().dtype(at::kDouble)));
  }
  return out;
}

void Optimizer::loadStateDict(const std::vector<std::pair<std::string, at::Tensor>>& entries) {
  std::map<std::string, size_t> indexOf;
  for (size_t i = 0; i < parameters_.size(); ++i) indexOf[parameters_[i].first] = i;
  std::map<size_t, std::map<std::string, at::Tensor>> fields;
  std::map<size_t, double> lrs;
  const std::string prefix = "optimizer/";
  for (const auto& [key, value] : entries) {
    TORCH_CHECK(key.compare(0, prefix.size(), prefix) == 0, "optimizer state: '", key, "' does not start with 'optimizer/'");
    TORCH_CHECK(value.defined(), "optimizer state: '", key, "' is undefined");
    const std::string rest = key.substr(prefix.size());
    const size_t slash = rest.rfind('/');
    TORCH_CHECK(slash != std::string::npos && slash > 0, "optimizer state: malformed name '", key, "'");
    const std::string owner = rest.substr(0, slash), field = rest.substr(slash + 1);
    if (owner.compare(0, 6, "group/") == 0 && field == "lr") {
      const std::string index = owner.substr(6);
      TORCH_CHECK(!index.empty() && index.find_first_not_of("0123456789") == std::string::npos,
                  "optimizer state: malformed name '", key, "'");
      const size_t g = std::stoul(index);
      TORCH_CHECK(g < groups_.size(), "optimizer state: '", key, "' names group ", g, " but this optimizer has ",
                  groups_.size(), " groups");
      lrs[g] = value.item<double>();
      continue;
    }
    const auto it = indexOf.find(owner);
    TORCH_CHECK(it != indexOf.end(), "optimizer state: '", key, "' names parameter '", owner, "', which this optimizer does not have");
    fields[it->second][field] = value;
  }
  auto& state = impl_->state();
  state.clear();
  for (auto& [index, f] : fields) {
    const auto& [name, p] = parameters_[index];
    const auto take = [&, &f = f, &name = name, &p = p](const char* field, bool required) -> at::Tensor {
      const auto it = f.find(field);
      if (it == f.end()) {
        TORCH_CHECK(!required, "optimizer state: parameter '", name, "' has no '", field, "'");
        return at::Tensor();
      }
      TORCH_CHECK(it->second.sizes() == p.sizes(), "optimizer state: '", name, "/", field, "' has shape ", it->second.sizes(),
                  " but the parameter has shape ", p.sizes());
      return it->second.detach().to(p.device(), p.scalar_type()).clone().contiguous();
    };
    const auto step = [&, &f = f, &name = name]() -> int64_t {
      const auto it = f.find("step");
      TORCH_CHECK(it != f.end() && it->second.numel() == 1, "optimizer state: parameter '", name, "' has no scalar 'step'");
      return it->second.item<int64_t>();
    };
    std::unique_ptr<torch::optim::OptimizerParamState> s;
    switch (options_.kind) {
      case Algorithm::Adam: {
        auto a = std::make_unique<torch::optim::AdamParamState>();
        a->step(step());
        a->exp_avg(take("exp_avg", true));
        a->exp_avg_sq(take("exp_avg_sq", true));
        a->max_exp_avg_sq(take("max_exp_avg_sq", options_.amsgrad));
        s = std::move(a);
        break;
      }
      case Algorithm::AdamW: {
        auto a = std::make_unique<torch::optim::AdamWParamState>();
        a->step(step());
        a->exp_avg(take("exp_avg", true));
        a->exp_avg_sq(take("exp_avg_sq", true));
        a->max_exp_avg_sq(take("max_exp_avg_sq", options_.amsgrad));
        s = std::move(a);
        break;
      }
      case Algorithm::RAdam: {
        auto a = std::make_unique<RAdamParamState>();
        a->step(step());
        a->exp_avg(take("exp_avg", true));
        a->exp_avg_sq(take("exp_avg_sq", true));
        s = std::move(a);
        break;
      }
      case Algorithm::SGD: {
        auto a = std::make_unique<torch::optim::SGDParamState>();
        a->momentum_buffer(take("momentum_buffer", false));
        s = std::move(a);
        break;
      }
    }
    state[stateKey(p)] = std::move(s);
  }
  for (const auto& [g, lr] : lrs) setLr(g, lr);
}

}  // namespace pn::optim

// ---- torch-free wrapper (optim_api.h) --------------------------------------------------------

namespace pn {

struct Optimizer::Impl {
  std::mutex mutex;
  std::unique_ptr<optim::Optimizer> optimizer;
};

Optimizer::Optimizer() = default;
Optimizer::Optimizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

namespace {
template <typename Fn>
auto withOptimizer(const Optimizer& handle, Fn&& fn) {
  if (!handle.defined() || !handle.impl()->optimizer) throw Error("optimizer is undefined (disposed or never created)");
  std::lock_guard<std::mutex> lock(handle.impl()->mutex);
  return guard([&] {
    return fn(*handle.impl()->optimizer);
  });
}

}  // namespace

optim::Optimizer& torchSide(const Optimizer& handle) {
  if (!handle.defined() || !handle.impl()->optimizer) throw Error("optimizer is undefined (disposed or never created)");
  return *handle.impl()->optimizer;
}

namespace {
optim::Algorithm parseAlgorithm(const std::string& name) {
  if (name == "adam") return optim::Algorithm::Adam;
  if (name == "adamw") return optim::Algorithm::AdamW;
  if (name == "sgd") return optim::Algorithm::SGD;
  if (name == "radam") return optim::Algorithm::RAdam;
  throw Error("unknown optimizer '" + name + "' (expected adam, adamw, sgd or radam)");
}
}  // namespace

Optimizer createOptimizer(const std::vector<std::pair<std::string, Tensor>>& parameters, const OptimizerSpec& spec) {
  optim::OptimizerOptions o;
  static_cast<OptimizerSpec&>(o) = spec;
  o.kind = parseAlgorithm(spec.algorithm);
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& [name, t] : parameters) named.emplace_back(name, unwrap(t));
  auto impl = std::make_shared<Optimizer::Impl>();
  impl->optimizer = guard([&] { return std::make_unique<optim::Optimizer>(std::move(named), o); });
  return Optimizer(std::move(impl));
}

void optimizerStep(const Optimizer& optimizer) {
  withOptimizer(optimizer, [](optim::Optimizer& o) {
    o.step();
    return 0;
  });
}

void optimizerZeroGrad(const Optimizer& optimizer) {
  withOptimizer(optimizer, [](optim::Optimizer& o) {
    o.zeroGrad();
    return 0;
  });
}

double optimizerGradNorm(const Optimizer& optimizer) {
  return withOptimizer(optimizer, [](optim::Optimizer& o) { return o.gradNorm(); });
}

double optimizerClipGradNorm(const Optimizer& optimizer, double maxNorm) {
  return withOptimizer(optimizer, [&](optim::Optimizer& o) { return o.clipGradNorm(maxNorm); });
}

void optimizerScaleGrads(const Optimizer& optimizer, double factor) {
  withOptimizer(optimizer, [&](optim::Optimizer& o) {
    o.scaleGrads(factor);
    return 0;
  });
}

std::vector<OptimizerGroupInfo> optimizerGroups(const Optimizer& optimizer) {
  return withOptimizer(optimizer, [](optim::Optimizer& o) {
    std::vector<OptimizerGroupInfo> out;
    for (size_t g = 0; g < o.groupCount(); ++g) {
      const optim::GroupInfo info = o.group(g);
      out.push_back({info.name, info.lr, info.initialLr, info.weightDecay, info.parameters});
    }
    return out;
  });
}

void optimizerSetLr(const Optimizer& optimizer, int64_t group, double lr) {
  if (group < 0) throw Error("optimizer: group index must be >= 0, got " + std::to_string(group));
  withOptimizer(optimizer, [&](optim::Optimizer& o) {
    o.setLr(static_cast<size_t>(group), lr);
    return 0;
  });
}

void optimizerScaleLr(const Optimizer& optimizer, double factor) {
  withOptimizer(optimizer, [&](optim::Optimizer& o) {
    o.scaleLr(factor);
    return 0;
  });
}

std::vector<std::pair<std::string, Tensor>> optimizerStateDict(const Optimizer& optimizer) {
  return withOptimizer(optimizer, [](optim::Optimizer& o) {
    std::vector<std::pair<std::string, Tensor>> out;
    for (auto& [name, t] : o.stateDict()) out.emplace_back(name, wrap(std::move(t)));
    return out;
  });
}

void optimizerLoadStateDict(const Optimizer& optimizer, const std::vector<std::pair<std::string, Tensor>>& state) {
  withOptimizer(optimizer, [&](optim::Optimizer& o) {
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (const auto& [name, t] : state) named.emplace_back(name, unwrap(t));
    o.loadStateDict(named);
    return 0;
  });
}

Tensor makeParameter(const Tensor& value) {
  return guard([&] { return wrap(unwrap(value).detach().clone().requires_grad_(true)); });
}

void setGradient(const Tensor& parameter, const Tensor& gradient, bool accumulate) {
  guard([&] {
    const at::Tensor& p = unwrap(parameter);
    const at::Tensor g = unwrap(gradient).detach();
    TORCH_CHECK(g.sizes() == p.sizes(), "setGradient: gradient shape ", g.sizes(), " does not match parameter shape ", p.sizes());
    const at::Tensor value = g.to(p.device(), p.scalar_type()).clone();
    if (accumulate && p.grad().defined()) {
      p.mutable_grad().add_(value);
    } else {
      p.mutable_grad() = value;
    }
    return 0;
  });
}

Tensor gradientOf(const Tensor& parameter) {
  return guard([&] {
    const at::Tensor& p = unwrap(parameter);
    return p.grad().defined() ? wrap(p.grad().detach().clone()) : Tensor();
  });
}

}  // namespace pn
