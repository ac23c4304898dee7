// The native training step: forward, the summed losses, backward with gradient accumulation,
// global-norm clipping and the optimizer step, in one call on one thread-pool thread.
#include <cmath>
#include <limits>

#include "../losses/losses.h"
#include "engine_internal.h"

namespace pn {


TrainEngine::TrainEngine() = default;
TrainEngine::TrainEngine(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

namespace {

TrainEngine::Impl& get(const TrainEngine& engine) {
  if (!engine.defined()) throw Error("train engine is undefined (disposed or never created)");
  return *engine.impl();
}

Model::Impl& modelOf(TrainEngine::Impl& engine) {
  if (!engine.model.defined()) throw Error("model is undefined (disposed or never created)");
  return *engine.model.impl();
}

/** Pushes learning rates set from JS into the optimizer. Call with the engine mutex held. */
void applyLearningRates(TrainEngine::Impl& e) {
  std::lock_guard<std::mutex> lock(e.lrMutex);
  if (!e.lrDirty) return;
  for (size_t g = 0; g < e.groups.size(); ++g) optimizerSetLr(e.optimizer, static_cast<int64_t>(g), e.groups[g].lr);
  e.lrDirty = false;
}

/** Re-reads the optimizer's learning rates (after loading a state). Call with the engine mutex held. */
void readLearningRates(TrainEngine::Impl& e) {
  std::vector<OptimizerGroupInfo> groups = optimizerGroups(e.optimizer);
  std::lock_guard<std::mutex> lock(e.lrMutex);
  e.groups = std::move(groups);
  e.lrDirty = false;
}

}  // namespace

namespace engine {

at::Tensor segmentationLoss(const TrainEngineSpec& spec, const at::Tensor& logits, const at::Tensor& target) {
  at::Tensor total;
  for (const LossTermSpec& term : spec.loss) {
    const LossOptions& o = term.options;
    at::Tensor value;
    switch (term.kind) {
      case LossKind::Combo:
        value = losses::comboLoss(logits, target, {o.bceWeight, o.diceWeight, o.focalWeight, o.perImageDice});
        break;
      case LossKind::ComboReference:
        value = losses::comboLossReference(logits, target, {o.bceWeight, o.diceWeight, o.focalWeight, o.perImageDice});
        break;
      case LossKind::SoftDice: value = losses::softDiceLoss(logits, target, o.smooth); break;
      case LossKind::BalancedBce: value = losses::balancedBceLoss(logits, target, o.alpha); break;
      case LossKind::Lovasz:
        value = losses::lovaszHingeLoss(logits, target, {o.positiveMargin, o.negativeMargin, o.symmetric});
        break;
    }
    value = value * term.weight;
    total = total.defined() ? total + value : value;
  }
  return total;
}

/** BCE + focal (gamma 2, SPEC 4's focal) on the label logit: the combo loss without its Dice. */
at::Tensor labelBceFocal(const at::Tensor& logits, const at::Tensor& labels) {
  return losses::comboLoss(logits, labels, {1.0, 0.0, 1.0, false});
}

at::Tensor trainingLoss(const TrainEngineSpec& spec, const zoo::TrainForward& out, const at::Tensor& target, const at::Tensor& labelTarget) {
  at::Tensor loss;
  if (spec.classify) {
    loss = spec.labelWeight * labelBceFocal(out.label, labelTarget) + spec.maskWeight * torch::binary_cross_entropy_with_logits(out.mask, target);
  } else {
    loss = segmentationLoss(spec, out.mask, target);
    if (spec.labelWeight > 0) loss = loss + spec.labelWeight * torch::binary_cross_entropy_with_logits(out.label, labelTarget);
  }
  // auxWeight x the mask loss on every auxiliary output (models with auxiliary heads, training only).
  if (spec.auxWeight > 0) {
    for (const at::Tensor& a : out.aux) {
      loss = loss + spec.auxWeight * (spec.classify ? spec.maskWeight * torch::binary_cross_entropy_with_logits(a, target)
                                                    : segmentationLoss(spec, a, target));
    }
  }
  return loss;
}

}  // namespace engine

namespace {

using engine::labelBceFocal;
using engine::segmentationLoss;

std::string shapeOf(const at::Tensor& t) { return c10::str(t.sizes()); }

}  // namespace

TrainEngine createTrainEngine(const Model& model, const TrainEngineSpec& spec) {
  if (!model.defined()) throw Error("model is undefined (disposed or never created)");
  if (spec.accumulation < 1) throw Error("Expected an accumulation of at least 1 but received " + std::to_string(spec.accumulation));
  if (!(spec.gradClip >= 0) || !std::isfinite(spec.gradClip)) {
    throw Error("Expected a finite gradClip >= 0 but received " + std::to_string(spec.gradClip));
  }
  if (!spec.classify && spec.loss.empty()) throw Error("Expected at least one loss term for the segment task but received none");
  Model::Impl& m = *model.impl();
  auto impl = std::make_shared<TrainEngine::Impl>();
  impl->model = model;
  impl->spec = spec;
  const GradScalerSpec& sc = spec.scaler;
  if (sc.mode != "auto" && sc.mode != "on" && sc.mode != "off") {
    throw Error("Expected a gradient scaler mode of auto, on or off but received '" + sc.mode + "'");
  }
  const bool fp16 = m.spec.precision == "fp16" && m.device.is_cuda();
  if (fp16 && sc.mode == "off") {
    throw Error("fp16 training needs the gradient scaler (small gradients underflow in fp16): use scaler mode auto or on, or precision bf16");
  }
  if (!(sc.initScale > 0) || !std::isfinite(sc.initScale) || !(sc.growthFactor > 1) || !std::isfinite(sc.growthFactor) ||
      !(sc.backoffFactor > 0 && sc.backoffFactor < 1) || sc.growthInterval < 1) {
    throw Error("Expected a gradient scaler with initScale > 0, growthFactor > 1, 0 < backoffFactor < 1 and growthInterval >= 1 but received " +
                std::to_string(sc.initScale) + ", " + std::to_string(sc.growthFactor) + ", " + std::to_string(sc.backoffFactor) + ", " +
                std::to_string(sc.growthInterval));
  }
  if (spec.cudaGraphs != "auto" && spec.cudaGraphs != "on" && spec.cudaGraphs != "off") {
    throw Error("Expected cudaGraphs auto, on or off but received '" + spec.cudaGraphs + "'");
  }
  impl->scalerOn = sc.mode == "on" || (sc.mode == "auto" && fp16);
  impl->scale = impl->scalerOn ? sc.initScale : 1.0;
  if ((spec.classify || spec.labelWeight > 0) && !m.spec.classificationHead) {
    throw Error(std::string("Expected a model with a classification head for ") +
                (spec.classify ? "the classify task" : "a label loss (labelWeight > 0)") + " but " + m.spec.architecture + " on " +
                m.spec.encoder + " has none (create it with classificationHead: true)");
  }
  std::vector<std::pair<std::string, Tensor>> parameters;
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    guard([&] {
      for (auto& [name, p] : optim::namedParameters(m.module)) parameters.emplace_back(name, wrap(p));
      return 0;
    });
  }
  impl->optimizer = createOptimizer(parameters, spec.optimizer);
  impl->groups = optimizerGroups(impl->optimizer);
  if (spec.cudaGraphs == "on") {
    const std::vector<std::string> reasons = graphs::blockers(*impl, m);
    if (!reasons.empty()) {
      std::string joined;
      for (const std::string& r : reasons) joined += (joined.empty() ? "" : "; ") + r;
      throw Error("cudaGraphs is 'on' but this engine's step cannot be captured: " + joined + " (use cudaGraphs 'auto' to run eagerly)");
    }
  }
  return TrainEngine(std::move(impl));
}

TrainStepResult trainEngineStep(const TrainEngine& engine, const Tensor& images, const Tensor& masks, const Tensor& labels) {
  TrainEngine::Impl& e = get(engine);
  std::lock_guard<std::mutex> engineLock(e.mutex);
  Model::Impl& m = modelOf(e);
  const TrainEngineSpec& spec = e.spec;
  const at::Tensor& x = unwrap(images);
  const at::Tensor& y = unwrap(masks);
  const bool wantLabels = spec.classify || spec.labelWeight > 0;
  if (wantLabels && !labels.defined()) {
    throw Error(std::string("Expected labels ([B] or [B, 1]) for ") + (spec.classify ? "the classify task" : "a label loss") +
                " but received none");
  }
  applyLearningRates(e);
  std::lock_guard<std::mutex> modelLock(m.mutex);
  return guard([&] {
    torch::AutoGradMode gradMode(true);
    if (!m.module.is_training()) m.module.train(true);
    m.inference.reset();  // the weights change below
    zoo::checkInput(m, x);
    const int64_t batch = x.size(0);
    if (y.dim() != 4 || y.size(0) != batch || y.size(1) != m.spec.classes || y.size(2) != x.size(2) || y.size(3) != x.size(3)) {
      throw Error("Expected masks of shape [" + std::to_string(batch) + ", " + std::to_string(m.spec.classes) + ", " +
                  std::to_string(x.size(2)) + ", " + std::to_string(x.size(3)) + "] (the images' batch and size) but received " +
                  shapeOf(y));
    }
    if (wantLabels) {
      const at::Tensor& l = unwrap(labels);
      if (l.numel() != batch || l.dim() > 2) {
        throw Error("Expected labels of shape [" + std::to_string(batch) + "] or [" + std::to_string(batch) + ", 1] but received " +
                    shapeOf(l));
      }
    }
    // The captured step replays here when it can; otherwise the eager step below runs (on the
    // graph's side stream while the graph warms up, so that capture sees the stream it warmed).
    graphs::StreamScope streamScope;
    if (auto graphed = graphs::step(e, m, x, y, wantLabels ? unwrap(labels) : at::Tensor(), streamScope)) return *graphed;
    at::Tensor target = y.to(m.device, at::kFloat);
    at::Tensor labelTarget;
    if (wantLabels) labelTarget = unwrap(labels).to(m.device, at::kFloat).reshape({batch, 1});

    // BatchNorm statistics as they were, put back if this batch turns out non-finite (a NaN batch
    // would otherwise poison every running mean it passed through).
    std::vector<at::Tensor> buffers;
    std::vector<at::Tensor> savedBuffers;
    {
      torch::NoGradGuard noGrad;
      for (const at::Tensor& b : m.module.buffers()) {
        buffers.push_back(b);
        savedBuffers.push_back(b.clone());
      }
    }

    if (e.hook) e.hook->beforeForward(m.module);
    // Auxiliary heads (training only) in out.aux; with SyncBatchNorm the hook's training twin runs.
    const zoo::TrainForward out = zoo::runTrainForward(m, e.hook ? e.hook->trainingModule(m.module) : m.module, x);
    const at::Tensor loss = engine::trainingLoss(spec, out, target, labelTarget);

    TrainStepResult result;
    result.loss = loss.item<double>();
    result.gradNorm = std::numeric_limits<double>::quiet_NaN();
    result.lossScale = e.scalerOn ? e.scale : 0;
    const bool finite = e.hook ? e.hook->agreeFinite(std::isfinite(result.loss)) : std::isfinite(result.loss);
    if (!finite) {
      // Nothing of this call reaches the weights, and what was accumulated before is dropped.
      {
        torch::NoGradGuard noGrad;
        for (size_t k = 0; k < buffers.size(); ++k) buffers[k].copy_(savedBuffers[k]);
      }
      optimizerZeroGrad(e.optimizer);
      e.pending = 0;
      result.finite = false;
      return result;
    }
    if (e.hook) e.hook->beforeBackward(loss, e.pending + 1 >= spec.accumulation);
    const double lossFactor = (e.scalerOn ? e.scale : 1.0) / static_cast<double>(spec.accumulation);
    (lossFactor != 1.0 ? loss * lossFactor : loss).backward();
    if (++e.pending < spec.accumulation) return result;
    e.pending = 0;

    // A frozen parameter keeps no gradient (it may hold a zeroed one from before it was frozen,
    // and Adam's momentum would still move it): the optimizer skips parameters without one.
    for (const at::Tensor& p : m.module.parameters()) {
      if (!p.requires_grad() && p.grad().defined()) p.mutable_grad().reset();
    }
    if (e.scalerOn) optimizerScaleGrads(e.optimizer, 1.0 / e.scale);  // unscale before clipping
    const double norm = spec.gradClip > 0 ? optimizerClipGradNorm(e.optimizer, spec.gradClip) : optimizerGradNorm(e.optimizer);
    result.gradNorm = norm;
    if (!std::isfinite(norm)) {
      optimizerZeroGrad(e.optimizer);
      if (e.scalerOn) {
        // An overflow of the scaled gradients, not a divergence: skip, back off, carry on.
        e.scale *= spec.scaler.backoffFactor;
        e.growthTracker = 0;
        result.overflow = true;
        result.lossScale = e.scale;
        return result;
      }
      result.finite = false;
      return result;
    }
    optimizerStep(e.optimizer);
    optimizerZeroGrad(e.optimizer);
    result.stepped = true;
    if (e.scalerOn && ++e.growthTracker >= spec.scaler.growthInterval) {
      e.scale *= spec.scaler.growthFactor;
      e.growthTracker = 0;
      result.lossScale = e.scale;
    }
    return result;
  });
}

std::vector<OptimizerGroupInfo> trainEngineGroups(const TrainEngine& engine) {
  TrainEngine::Impl& e = get(engine);
  std::lock_guard<std::mutex> lock(e.lrMutex);
  return e.groups;
}

void trainEngineSetLr(const TrainEngine& engine, int64_t group, double lr) {
  TrainEngine::Impl& e = get(engine);
  std::lock_guard<std::mutex> lock(e.lrMutex);
  if (group < 0 || static_cast<size_t>(group) >= e.groups.size()) {
    throw Error("Expected a group index between 0 and " + std::to_string(static_cast<int64_t>(e.groups.size()) - 1) +
                " but received " + std::to_string(group));
  }
  if (!std::isfinite(lr) || lr < 0) throw Error("Expected a finite lr >= 0 but received " + std::to_string(lr));
  e.groups[static_cast<size_t>(group)].lr = lr;
  e.lrDirty = true;
}

void trainEngineScaleLr(const TrainEngine& engine, double factor) {
  TrainEngine::Impl& e = get(engine);
  std::lock_guard<std::mutex> lock(e.lrMutex);
  if (!std::isfinite(factor) || factor < 0) throw Error("Expected a finite lr factor >= 0 but received " + std::to_string(factor));
  for (OptimizerGroupInfo& g : e.groups) g.lr = g.initialLr * factor;
  e.lrDirty = true;
}

std::vector<std::pair<std::string, Tensor>> trainEngineOptimizerState(const TrainEngine& engine) {
  TrainEngine::Impl& e = get(engine);
  std::lock_guard<std::mutex> lock(e.mutex);
  applyLearningRates(e);
  std::vector<std::pair<std::string, Tensor>> state = optimizerStateDict(e.optimizer);
  if (e.scalerOn) {
    guard([&] {
      state.emplace_back("scaler/scale", wrap(at::scalar_tensor(e.scale, at::TensorOptions().dtype(at::kDouble))));
      state.emplace_back("scaler/growth_tracker", wrap(at::scalar_tensor(e.growthTracker, at::TensorOptions().dtype(at::kLong))));
      return 0;
    });
  }
  return state;
}

void trainEngineLoadOptimizerState(const TrainEngine& engine, const std::vector<std::pair<std::string, Tensor>>& state) {
  TrainEngine::Impl& e = get(engine);
  std::lock_guard<std::mutex> lock(e.mutex);
  std::vector<std::pair<std::string, Tensor>> optimizerState;
  double scale = e.spec.scaler.initScale;
  int64_t tracker = 0;
  guard([&] {
    for (const auto& [name, t] : state) {
      if (name.rfind("scaler/", 0) != 0) {
        optimizerState.emplace_back(name, t);
        continue;
      }
      const at::Tensor& v = unwrap(t);
      if (v.numel() != 1) throw Error("optimizer state: '" + name + "' must be a scalar but has shape " + c10::str(v.sizes()));
      if (name == "scaler/scale") {
        scale = v.item<double>();
        if (!(scale > 0) || !std::isfinite(scale)) throw Error("optimizer state: scaler/scale must be a finite number > 0, got " + std::to_string(scale));
      } else if (name == "scaler/growth_tracker") {
        tracker = v.item<int64_t>();
      } else {
        throw Error("optimizer state: unknown gradient scaler entry '" + name + "'");
      }
    }
    return 0;
  });
  graphs::invalidate(e, "the optimizer state was loaded");
  optimizerLoadStateDict(e.optimizer, optimizerState);
  if (e.scalerOn) {
    e.scale = scale;
    e.growthTracker = tracker;
  }
  optimizerZeroGrad(e.optimizer);
  e.pending = 0;
  readLearningRates(e);
}

void setTrainStepHook(const TrainEngine& engine, std::shared_ptr<TrainStepHook> hook) {
  TrainEngine::Impl& e = get(engine);
  std::lock_guard<std::mutex> lock(e.mutex);
  graphs::invalidate(e, "a data-parallel hook was attached");
  e.hook = std::move(hook);
}

TrainEngineGraphStatus trainEngineGraphStatus(const TrainEngine& engine) {
  TrainEngine::Impl& e = get(engine);
  std::lock_guard<std::mutex> lock(e.mutex);
  return graphs::status(e, modelOf(e));
}

Model trainEngineModel(const TrainEngine& engine) { return get(engine).model; }

int64_t trainEnginePending(const TrainEngine& engine) {
  TrainEngine::Impl& e = get(engine);
  std::lock_guard<std::mutex> lock(e.mutex);
  return e.pending;
}

}  // namespace pn
