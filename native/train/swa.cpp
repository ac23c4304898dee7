// SWA helpers: the weighted average of state dicts, and BatchNorm statistics recomputed over data
// as torch.optim.swa_utils.update_bn does (cumulative average, momentum=None).
#include <cmath>
#include <map>

#include "../models/model_internal.h"
#include "train_api.h"

namespace pn {

std::vector<std::pair<std::string, Tensor>> averageStateDicts(const std::vector<std::vector<std::pair<std::string, Tensor>>>& dicts,
                                                              const std::vector<double>& weights) {
  if (dicts.empty()) throw Error("Expected at least one state dict to average but received none");
  if (!weights.empty() && weights.size() != dicts.size()) {
    throw Error("Expected " + std::to_string(dicts.size()) + " weights (one per state dict) but received " + std::to_string(weights.size()));
  }
  std::vector<double> w(dicts.size(), 1.0);
  if (!weights.empty()) w = weights;
  double total = 0;
  for (size_t k = 0; k < w.size(); ++k) {
    if (!std::isfinite(w[k]) || w[k] < 0) throw Error("Expected finite weights >= 0 but weight " + std::to_string(k) + " is " + std::to_string(w[k]));
    total += w[k];
  }
  if (!(total > 0)) throw Error("Expected weights with a positive sum but they sum to " + std::to_string(total));
  for (double& v : w) v /= total;

  return guard([&] {
    torch::NoGradGuard noGrad;
    const auto& first = dicts[0];
    std::vector<std::map<std::string, const at::Tensor*>> index(dicts.size());
    for (size_t k = 0; k < dicts.size(); ++k) {
      for (const auto& [name, t] : dicts[k]) {
        if (!index[k].emplace(name, &unwrap(t)).second) throw Error("state dict " + std::to_string(k) + " has '" + name + "' twice");
      }
      if (index[k].size() != index[0].size()) {
        throw Error("Expected state dicts with the same names but state dict " + std::to_string(k) + " has " +
                    std::to_string(index[k].size()) + " tensors and state dict 0 has " + std::to_string(index[0].size()));
      }
    }
    std::vector<std::pair<std::string, Tensor>> out;
    out.reserve(first.size());
    for (const auto& [name, t0] : first) {
      const at::Tensor& a = unwrap(t0);
      if (!a.is_floating_point()) {
        out.emplace_back(name, wrap(a.detach().clone()));
        continue;
      }
      at::Tensor sum = at::zeros(a.sizes(), a.options().dtype(at::kDouble));
      for (size_t k = 0; k < dicts.size(); ++k) {
        const auto it = index[k].find(name);
        if (it == index[k].end()) throw Error("state dict " + std::to_string(k) + " has no '" + name + "' (state dict 0 has it)");
        const at::Tensor& t = *it->second;
        if (!t.sizes().equals(a.sizes())) {
          throw Error("Expected '" + name + "' of shape " + c10::str(a.sizes()) + " in state dict " + std::to_string(k) +
                      " (as in state dict 0) but received " + c10::str(t.sizes()));
        }
        sum.add_(t.detach().to(a.device(), at::kDouble), w[k]);
      }
      out.emplace_back(name, wrap(sum.to(a.scalar_type()).contiguous()));
    }
    return out;
  });
}

// ---- BatchNorm recompute ------------------------------------------------------------------------

namespace swa_detail {

/** One BatchNorm layer: its buffers and what the recompute has accumulated. */
struct BatchNormLayer {
  std::string name;
  torch::jit::Module module;
  at::Tensor runningMean;
  at::Tensor runningVar;
  at::Tensor batchesTracked;  // may be undefined
  /** The factor of its running-average update (its momentum, 1 for momentum=None). */
  double factor = 0;
  at::Tensor sumMean;  // float64
  at::Tensor sumVar;   // float64
  at::Tensor savedMean, savedVar, savedTracked;
  /** Batches whose forward reached this layer (a layer no forward reaches keeps its statistics). */
  int64_t visits = 0;
};

bool isBatchNorm(const torch::jit::Module& m) {
  if (!m.hasattr("running_mean") || !m.hasattr("running_var")) return false;
  return m.attr("running_mean").isTensor() && m.attr("running_var").isTensor() && m.attr("running_mean").toTensor().defined();
}

void resetForBatch(BatchNormLayer& layer) {
  layer.runningMean.zero_();
  layer.runningVar.zero_();
  if (layer.batchesTracked.defined()) layer.batchesTracked.zero_();
}

/** Whether the forward since resetForBatch updated the layer (it counts batches, or its variance moved). */
bool updatedSinceReset(const BatchNormLayer& layer) {
  if (layer.batchesTracked.defined()) return layer.batchesTracked.item<int64_t>() > 0;
  return layer.runningVar.abs().sum().item<double>() > 0;
}

}  // namespace swa_detail

using swa_detail::BatchNormLayer;
using swa_detail::isBatchNorm;
using swa_detail::resetForBatch;

struct BatchNormRecompute::Impl {
  Model model;
  std::vector<BatchNormLayer> layers;
  bool wasTraining = false;
  int64_t batches = 0;
  bool done = false;
  std::mutex mutex;
};

BatchNormRecompute::BatchNormRecompute() = default;
BatchNormRecompute::BatchNormRecompute(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

namespace {

BatchNormRecompute::Impl& get(const BatchNormRecompute& session) {
  if (!session.defined()) throw Error("BatchNorm recompute session is undefined");
  BatchNormRecompute::Impl& s = *session.impl();
  if (s.done) throw Error("BatchNorm recompute session is already finished");
  if (!s.model.defined()) throw Error("model is undefined (disposed or never created)");
  return s;
}

void restore(BatchNormRecompute::Impl& s, Model::Impl& m) {
  for (BatchNormLayer& layer : s.layers) {
    layer.runningMean.copy_(layer.savedMean);
    layer.runningVar.copy_(layer.savedVar);
    if (layer.batchesTracked.defined()) layer.batchesTracked.copy_(layer.savedTracked);
  }
  m.module.train(s.wasTraining);
  m.inference.reset();
}

}  // namespace

BatchNormRecompute beginBatchNormRecompute(const Model& model) {
  if (!model.defined()) throw Error("model is undefined (disposed or never created)");
  Model::Impl& m = *model.impl();
  auto s = std::make_shared<BatchNormRecompute::Impl>();
  s->model = model;
  std::lock_guard<std::mutex> lock(m.mutex);
  guard([&] {
    torch::NoGradGuard noGrad;
    s->wasTraining = m.module.is_training();
    for (const auto& child : m.module.named_modules()) {
      if (!isBatchNorm(child.value)) continue;
      BatchNormLayer layer;
      layer.name = child.name;
      layer.module = child.value;
      layer.runningMean = child.value.attr("running_mean").toTensor();
      layer.runningVar = child.value.attr("running_var").toTensor();
      if (child.value.hasattr("num_batches_tracked") && child.value.attr("num_batches_tracked").isTensor()) {
        layer.batchesTracked = child.value.attr("num_batches_tracked").toTensor();
      }
      layer.savedMean = layer.runningMean.clone();
      layer.savedVar = layer.runningVar.clone();
      if (layer.batchesTracked.defined()) layer.savedTracked = layer.batchesTracked.clone();
      s->layers.push_back(std::move(layer));
    }
    if (s->layers.empty()) throw Error("the model has no BatchNorm layer to recompute");
    m.module.train(true);
    m.inference.reset();
    // Each layer's update factor, measured rather than assumed (zoo layers have their momentum
    // compiled in, TorchScript encoders their own): from zeroed statistics, one batch whose mean is
    // 1 leaves running_mean = factor.
    try {
      // As runForward: no profiling/fusion passes (they would run once per layer class).
      torch::jit::GraphOptimizerEnabledGuard plain(false);
      for (BatchNormLayer& layer : s->layers) {
        resetForBatch(layer);
        const int64_t channels = layer.runningMean.size(0);
        const at::Tensor ones = at::ones({2, channels, 1, 1}, layer.runningMean.options());
        layer.module.forward({ones});
        layer.factor = layer.runningMean[0].item<double>();
        if (!(layer.factor > 0) || !std::isfinite(layer.factor)) {
          throw Error("BatchNorm '" + layer.name + "' does not update its running statistics in training mode (momentum 0?)");
        }
        layer.sumMean = at::zeros(layer.runningMean.sizes(), layer.runningMean.options().dtype(at::kDouble));
        layer.sumVar = at::zeros(layer.runningVar.sizes(), layer.runningVar.options().dtype(at::kDouble));
      }
    } catch (...) {
      restore(*s, m);
      throw;
    }
    return 0;
  });
  return BatchNormRecompute(std::move(s));
}

int64_t batchNormRecomputeAdd(const BatchNormRecompute& session, const Tensor& batch) {
  BatchNormRecompute::Impl& s = get(session);
  std::lock_guard<std::mutex> sessionLock(s.mutex);
  Model::Impl& m = *s.model.impl();
  const at::Tensor& x = unwrap(batch);
  std::lock_guard<std::mutex> lock(m.mutex);
  return guard([&] {
    torch::NoGradGuard noGrad;
    if (!m.module.is_training()) m.module.train(true);
    m.inference.reset();
    zoo::checkInput(m, x);
    if (x.size(0) < 2) throw Error("Expected batches of at least 2 images for BatchNorm statistics but received a batch of 1");
    // From zeroed statistics, one update leaves factor * (batch mean) and factor * (unbiased batch
    // variance): divided back out and summed, their average is update_bn's cumulative average.
    // The training forward: models with auxiliary heads (BiSeNet, the dual-attention UNet) run
    // them there, so their BatchNorm layers are recomputed too, as training would see them.
    for (BatchNormLayer& layer : s.layers) resetForBatch(layer);
    zoo::runTrainForward(m, m.module, x);
    for (BatchNormLayer& layer : s.layers) {
      if (!swa_detail::updatedSinceReset(layer)) continue;
      layer.sumMean.add_(layer.runningMean.to(at::kDouble), 1.0 / layer.factor);
      layer.sumVar.add_(layer.runningVar.to(at::kDouble), 1.0 / layer.factor);
      ++layer.visits;
    }
    return ++s.batches;
  });
}

int64_t finishBatchNormRecompute(const BatchNormRecompute& session) {
  BatchNormRecompute::Impl& s = get(session);
  std::lock_guard<std::mutex> sessionLock(s.mutex);
  Model::Impl& m = *s.model.impl();
  std::lock_guard<std::mutex> lock(m.mutex);
  return guard([&] {
    torch::NoGradGuard noGrad;
    if (s.batches == 0) {
      restore(s, m);
      s.done = true;
      throw Error("Expected at least one batch to recompute BatchNorm statistics but received none");
    }
    int64_t recomputed = 0;
    for (BatchNormLayer& layer : s.layers) {
      if (layer.visits == 0) {
        // No forward reached it (a head the model does not run): its statistics stay as they were.
        layer.runningMean.copy_(layer.savedMean);
        layer.runningVar.copy_(layer.savedVar);
        if (layer.batchesTracked.defined()) layer.batchesTracked.copy_(layer.savedTracked);
        continue;
      }
      const double n = static_cast<double>(layer.visits);
      layer.runningMean.copy_(layer.sumMean / n);
      layer.runningVar.copy_(layer.sumVar / n);
      if (layer.batchesTracked.defined()) layer.batchesTracked.fill_(layer.visits);
      ++recomputed;
    }
    m.module.train(false);
    m.inference.reset();
    s.done = true;
    return recomputed;
  });
}

void abortBatchNormRecompute(const BatchNormRecompute& session) {
  if (!session.defined() || session.impl()->done || !session.impl()->model.defined()) return;
  BatchNormRecompute::Impl& s = *session.impl();
  std::lock_guard<std::mutex> sessionLock(s.mutex);
  Model::Impl& m = *s.model.impl();
  std::lock_guard<std::mutex> lock(m.mutex);
  guard([&] {
    torch::NoGradGuard noGrad;
    restore(s, m);
    s.done = true;
    return 0;
  });
}

}  // namespace pn
