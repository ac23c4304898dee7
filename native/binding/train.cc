// The training slice of the N-API boundary (native/losses/loss_api.h, native/optim/optim_api.h and the
// engine of native/train/train_api.h <-> src/native/train.ts): one loss forward + backward for JS,
// the standalone optimizer handle over tensors made trainable with makeParameter, and the native
// training engine. Each option set is parsed by one function here: lossOptionsArg (a loss's
// options, for lossForwardBackward and each engine loss term), optimizerSpecArg (createOptimizer and
// the engine's optimizer) and engineSpecArg (createTrainEngine). The optimizer and engine handles
// (type-tagged Externals, freed by their finalizers or at once by *Dispose) share one implementation
// of their common calls (groups, learning rates, state) through HandleOps.
#include <napi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"
#include "../losses/loss_api.h"
#include "../optim/optim_api.h"
#include "../train/train_api.h"
#include "args.h"
#include "slices.h"
#include "task.h"

namespace pn::binding {
namespace {

// ---- option sets: one parser each ---------------------------------------------------------------

/** A loss's options object ({ bceWeight, diceWeight, ... }; absent fields keep loss_api.h's defaults). */
pn::LossOptions lossOptionsArg(const Napi::Object& o) {
  pn::LossOptions d;
  d.bceWeight = numberOption(o, "bceWeight", d.bceWeight);
  d.diceWeight = numberOption(o, "diceWeight", d.diceWeight);
  d.focalWeight = numberOption(o, "focalWeight", d.focalWeight);
  d.perImageDice = boolOption(o, "perImageDice", d.perImageDice);
  d.smooth = numberOption(o, "smooth", d.smooth);
  d.alpha = numberOption(o, "alpha", d.alpha);
  d.positiveMargin = numberOption(o, "positiveMargin", d.positiveMargin);
  d.negativeMargin = numberOption(o, "negativeMargin", d.negativeMargin);
  d.symmetric = boolOption(o, "symmetric", d.symmetric);
  return d;
}

/** An optimizer spec object ({ algorithm, lr, ..., lrRules }) -> pn::OptimizerSpec. */
pn::OptimizerSpec optimizerSpecArg(Napi::Env env, const Napi::Object& o) {
  pn::OptimizerSpec spec;
  const Napi::Value algorithm = o.Get("algorithm");
  if (!algorithm.IsString()) throwType(env, "Expected a string for spec.algorithm");
  spec.algorithm = algorithm.As<Napi::String>().Utf8Value();
  spec.lr = numberOption(o, "lr", spec.lr);
  spec.weightDecay = numberOption(o, "weightDecay", spec.weightDecay);
  spec.decayBiasesAndNorms = boolOption(o, "decayBiasesAndNorms", spec.decayBiasesAndNorms);
  spec.beta1 = numberOption(o, "beta1", spec.beta1);
  spec.beta2 = numberOption(o, "beta2", spec.beta2);
  spec.eps = numberOption(o, "eps", spec.eps);
  spec.amsgrad = boolOption(o, "amsgrad", spec.amsgrad);
  spec.momentum = numberOption(o, "momentum", spec.momentum);
  spec.dampening = numberOption(o, "dampening", spec.dampening);
  spec.nesterov = boolOption(o, "nesterov", spec.nesterov);
  const Napi::Value rules = o.Get("lrRules");
  if (!rules.IsUndefined() && !rules.IsNull()) {
    if (!rules.IsArray()) throwType(env, "Expected an array of [prefix, lr] pairs for spec.lrRules");
    const auto a = rules.As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); ++k) {
      const Napi::Value rule = a.Get(k);
      if (!rule.IsArray() || rule.As<Napi::Array>().Length() != 2 || !rule.As<Napi::Array>().Get(0u).IsString() ||
          !rule.As<Napi::Array>().Get(1u).IsNumber()) {
        throwType(env, "Expected an array of [prefix, lr] pairs for spec.lrRules");
      }
      spec.lrRules.emplace_back(rule.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value(),
                                rule.As<Napi::Array>().Get(1u).As<Napi::Number>().DoubleValue());
    }
  }
  return spec;
}

/** One engine loss term { kind, weight, options }. */
pn::LossTermSpec lossTermArg(Napi::Env env, const Napi::Value& v) {
  if (!v.IsObject()) throwType(env, "Expected an object { kind, weight, options } for each loss term");
  const auto o = v.As<Napi::Object>();
  pn::LossTermSpec term;
  const Napi::Value kind = o.Get("kind");
  if (!kind.IsString() || !pn::parseLossKind(kind.As<Napi::String>().Utf8Value(), &term.kind)) {
    throwType(env, "Expected a loss name for loss[].kind");
  }
  term.weight = numberOption(o, "weight", 1.0);
  const Napi::Value options = o.Get("options");
  if (options.IsObject()) term.options = lossOptionsArg(options.As<Napi::Object>());
  return term;
}

/** The engine spec { optimizer, loss, accumulation, gradClip, task, labelWeight, maskWeight, auxWeight, scaler, cudaGraphs }. */
pn::TrainEngineSpec engineSpecArg(Napi::Env env, const Napi::Object& o) {
  pn::TrainEngineSpec spec;
  const Napi::Value optimizer = o.Get("optimizer");
  if (!optimizer.IsObject()) throwType(env, "Expected an object for options.optimizer");
  spec.optimizer = optimizerSpecArg(env, optimizer.As<Napi::Object>());
  const Napi::Value loss = o.Get("loss");
  if (loss.IsArray()) {
    const auto a = loss.As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); ++k) spec.loss.push_back(lossTermArg(env, a.Get(k)));
  } else if (!loss.IsUndefined()) {
    throwType(env, "Expected an array of loss terms for options.loss");
  }
  spec.accumulation = static_cast<int64_t>(numberOption(o, "accumulation", 1));
  spec.gradClip = numberOption(o, "gradClip", 0);
  const Napi::Value task = o.Get("task");
  spec.classify = task.IsString() && task.As<Napi::String>().Utf8Value() == "classify";
  spec.labelWeight = numberOption(o, "labelWeight", spec.classify ? 1.0 : 0.0);
  spec.maskWeight = numberOption(o, "maskWeight", 1.0);
  spec.auxWeight = numberOption(o, "auxWeight", 0.4);  // bisenet: auxiliary heads' loss weight
  const Napi::Value scaler = o.Get("scaler");
  if (scaler.IsObject()) {
    const auto so = scaler.As<Napi::Object>();
    spec.scaler.mode = stringOption(so, "mode", "auto");
    spec.scaler.initScale = numberOption(so, "initScale", spec.scaler.initScale);
    spec.scaler.growthFactor = numberOption(so, "growthFactor", spec.scaler.growthFactor);
    spec.scaler.backoffFactor = numberOption(so, "backoffFactor", spec.scaler.backoffFactor);
    spec.scaler.growthInterval = static_cast<int64_t>(numberOption(so, "growthInterval", static_cast<double>(spec.scaler.growthInterval)));
  } else if (!scaler.IsUndefined()) {
    throwType(env, "Expected an object for options.scaler");
  }
  spec.cudaGraphs = stringOption(o, "cudaGraphs", "auto");
  return spec;
}

// ---- losses -------------------------------------------------------------------------------------

/** lossForwardBackward(kind, logits, target, options) -> Promise<{ loss, grad }>. */
Napi::Value LossForwardBackward(const Napi::CallbackInfo& info) {
  const std::string name = argString(info, 0, "kind");
  pn::LossKind kind;
  if (!pn::parseLossKind(name, &kind)) throwType(info.Env(), "Unknown loss '" + name + "'");
  pn::Tensor logits = tensorArg(info, 1, "logits");
  pn::Tensor target = tensorArg(info, 2, "target");
  const pn::LossOptions options = lossOptionsArg(optionsArg(info, 3));
  return Task<pn::LossResult>::Run(
      info.Env(), "pneumo.lossForwardBackward", [kind, logits, target, options] { return pn::lossForwardBackward(kind, logits, target, options); },
      [](Napi::Env env, pn::LossResult& r) -> Napi::Value {
        auto out = Napi::Object::New(env);
        out.Set("loss", r.loss);
        out.Set("grad", wrapTensor(env, std::move(r.grad)));
        return out;
      });
}

// ---- the calls optimizer and engine handles share -----------------------------------------------

const napi_type_tag kOptimizerTag = {0x706e6f7074696d69ULL, 0x7a65722d68616e64ULL};
const napi_type_tag kTrainEngineTag = {0x706e747261696e65ULL, 0x6e67696e652d6831ULL};

/** The standalone optimizer handle (optim_api.h). */
struct OptimizerOps {
  using Handle = pn::Optimizer;
  static constexpr const napi_type_tag* tag = &kOptimizerTag;
  static constexpr const char* expected = "an optimizer handle for optimizer";
  static constexpr const char* disposed = "Optimizer has been disposed";
  static constexpr const char* stateTask = "pneumo.optimizerStateDict";
  static constexpr const char* loadStateTask = "pneumo.optimizerLoadStateDict";
  static std::vector<pn::OptimizerGroupInfo> groups(const Handle& h) { return pn::optimizerGroups(h); }
  static void setLr(const Handle& h, int64_t group, double lr) { pn::optimizerSetLr(h, group, lr); }
  static void scaleLr(const Handle& h, double factor) { pn::optimizerScaleLr(h, factor); }
  static NamedTensors state(const Handle& h) { return pn::optimizerStateDict(h); }
  static void loadState(const Handle& h, const NamedTensors& s) { pn::optimizerLoadStateDict(h, s); }
};

/** The training engine's optimizer (train_api.h). */
struct EngineOps {
  using Handle = pn::TrainEngine;
  static constexpr const napi_type_tag* tag = &kTrainEngineTag;
  static constexpr const char* expected = "a train engine handle";
  static constexpr const char* disposed = "TrainEngine has been disposed";
  static constexpr const char* stateTask = "pneumo.trainEngineOptimizerState";
  static constexpr const char* loadStateTask = "pneumo.trainEngineLoadOptimizerState";
  static std::vector<pn::OptimizerGroupInfo> groups(const Handle& h) { return pn::trainEngineGroups(h); }
  static void setLr(const Handle& h, int64_t group, double lr) { pn::trainEngineSetLr(h, group, lr); }
  static void scaleLr(const Handle& h, double factor) { pn::trainEngineScaleLr(h, factor); }
  static NamedTensors state(const Handle& h) { return pn::trainEngineOptimizerState(h); }
  static void loadState(const Handle& h, const NamedTensors& s) { pn::trainEngineLoadOptimizerState(h, s); }
};

template <typename Ops>
typename Ops::Handle handleArg(const Napi::CallbackInfo& info, size_t i) {
  const typename Ops::Handle& h = taggedArg<typename Ops::Handle>(info, i, *Ops::tag, Ops::expected);
  if (!h.defined()) throw Napi::Error::New(info.Env(), Ops::disposed);
  return h;
}

/** xDispose(handle): frees the native object now (the handle's finalizer would later). */
template <typename Ops>
Napi::Value HandleDispose(const Napi::CallbackInfo& info) {
  taggedArg<typename Ops::Handle>(info, 0, *Ops::tag, Ops::expected) = typename Ops::Handle();
  return info.Env().Undefined();
}

/** xGroups(handle) -> [{ name, lr, initialLr, weightDecay, parameters }]. */
template <typename Ops>
Napi::Value HandleGroups(const Napi::CallbackInfo& info) {
  const typename Ops::Handle h = handleArg<Ops>(info, 0);
  const auto groups = syncCall(info.Env(), [&] { return Ops::groups(h); });
  auto out = Napi::Array::New(info.Env(), groups.size());
  for (size_t k = 0; k < groups.size(); ++k) {
    auto g = Napi::Object::New(info.Env());
    g.Set("name", groups[k].name);
    g.Set("lr", groups[k].lr);
    g.Set("initialLr", groups[k].initialLr);
    g.Set("weightDecay", groups[k].weightDecay);
    g.Set("parameters", stringsToJs(info.Env(), groups[k].parameters));
    out.Set(static_cast<uint32_t>(k), g);
  }
  return out;
}

/** xSetLr(handle, group, lr). */
template <typename Ops>
Napi::Value HandleSetLr(const Napi::CallbackInfo& info) {
  const typename Ops::Handle h = handleArg<Ops>(info, 0);
  const int64_t group = argInteger(info, 1, "group");
  const double lr = argNumber(info, 2, "lr");
  syncCall(info.Env(), [&] {
    Ops::setLr(h, group, lr);
    return 0;
  });
  return info.Env().Undefined();
}

/** xScaleLr(handle, factor): every group's lr = its initial lr x factor. */
template <typename Ops>
Napi::Value HandleScaleLr(const Napi::CallbackInfo& info) {
  const typename Ops::Handle h = handleArg<Ops>(info, 0);
  const double factor = argNumber(info, 1, "factor");
  syncCall(info.Env(), [&] {
    Ops::scaleLr(h, factor);
    return 0;
  });
  return info.Env().Undefined();
}

/** optimizerStateDict / trainEngineOptimizerState(handle) -> Promise<[name, NativeTensor][]>. */
template <typename Ops>
Napi::Value HandleState(const Napi::CallbackInfo& info) {
  const typename Ops::Handle h = handleArg<Ops>(info, 0);
  return Task<NamedTensors>::Run(
      info.Env(), Ops::stateTask, [h] { return Ops::state(h); }, [](Napi::Env env, NamedTensors& r) -> Napi::Value { return namedTensorsResult(env, r); },
      RunOn::Pool);
}

/** optimizerLoadStateDict / trainEngineLoadOptimizerState(handle, state) -> Promise<void>. */
template <typename Ops>
Napi::Value HandleLoadState(const Napi::CallbackInfo& info) {
  const typename Ops::Handle h = handleArg<Ops>(info, 0);
  auto state = namedTensorsArg(info, 1, "state");
  return Task<int>::Run(
      info.Env(), Ops::loadStateTask,
      [h, state] {
        Ops::loadState(h, state);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); }, RunOn::Pool);
}

// ---- the standalone optimizer -------------------------------------------------------------------

/** createOptimizer([[name, NativeTensor], ...], spec) -> handle (sync: builds groups only). */
Napi::Value CreateOptimizer(const Napi::CallbackInfo& info) {
  auto parameters = namedTensorsArg(info, 0, "parameters");
  const pn::OptimizerSpec spec = optimizerSpecArg(info.Env(), optionsArg(info, 1));
  pn::Optimizer optimizer = syncCall(info.Env(), [&] { return pn::createOptimizer(parameters, spec); });
  return makeHandle(info.Env(), std::move(optimizer), kOptimizerTag);
}

Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
  pn::Optimizer o = handleArg<OptimizerOps>(info, 0);
  return Task<int>::Run(
      info.Env(), "pneumo.optimizerStep",
      [o] {
        pn::optimizerStep(o);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

Napi::Value OptimizerZeroGrad(const Napi::CallbackInfo& info) {
  pn::Optimizer o = handleArg<OptimizerOps>(info, 0);
  syncCall(info.Env(), [&] {
    pn::optimizerZeroGrad(o);
    return 0;
  });
  return info.Env().Undefined();
}

Napi::Value OptimizerGradNorm(const Napi::CallbackInfo& info) {
  pn::Optimizer o = handleArg<OptimizerOps>(info, 0);
  return Task<double>::Run(info.Env(), "pneumo.optimizerGradNorm", [o] { return pn::optimizerGradNorm(o); },
                           [](Napi::Env env, double& v) -> Napi::Value { return Napi::Number::New(env, v); });
}

Napi::Value OptimizerClipGradNorm(const Napi::CallbackInfo& info) {
  pn::Optimizer o = handleArg<OptimizerOps>(info, 0);
  const double maxNorm = argNumber(info, 1, "maxNorm");
  return Task<double>::Run(info.Env(), "pneumo.optimizerClipGradNorm", [o, maxNorm] { return pn::optimizerClipGradNorm(o, maxNorm); },
                           [](Napi::Env env, double& v) -> Napi::Value { return Napi::Number::New(env, v); });
}

Napi::Value MakeParameter(const Napi::CallbackInfo& info) {
  const pn::Tensor& value = tensorArg(info, 0, "value");
  return syncCall(info.Env(), [&] { return wrapTensor(info.Env(), pn::makeParameter(value)); });
}

Napi::Value SetGradient(const Napi::CallbackInfo& info) {
  const pn::Tensor& parameter = tensorArg(info, 0, "parameter");
  const pn::Tensor& gradient = tensorArg(info, 1, "gradient");
  const bool accumulate = info.Length() > 2 && info[2].ToBoolean().Value();
  syncCall(info.Env(), [&] {
    pn::setGradient(parameter, gradient, accumulate);
    return 0;
  });
  return info.Env().Undefined();
}

Napi::Value GradientOf(const Napi::CallbackInfo& info) {
  const pn::Tensor& parameter = tensorArg(info, 0, "parameter");
  pn::Tensor grad = syncCall(info.Env(), [&] { return pn::gradientOf(parameter); });
  if (!grad.defined()) return info.Env().Undefined();
  return wrapTensor(info.Env(), std::move(grad));
}

// ---- the training engine ------------------------------------------------------------------------

/** createTrainEngine(model, spec) -> handle. */
Napi::Value CreateTrainEngine(const Napi::CallbackInfo& info) {
  const pn::Model& model = modelArg(info, 0);
  const pn::TrainEngineSpec spec = engineSpecArg(info.Env(), optionsArg(info, 1));
  pn::TrainEngine engine = syncCall(info.Env(), [&] { return pn::createTrainEngine(model, spec); });
  return makeHandle(info.Env(), std::move(engine), kTrainEngineTag);
}

/** trainEngineStep(engine, images, masks, labels?) -> Promise<{ loss, gradNorm, finite, stepped }>. */
Napi::Value TrainEngineStep(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  pn::Tensor images = tensorArg(info, 1, "images");
  pn::Tensor masks = tensorArg(info, 2, "masks");
  pn::Tensor labels;
  if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) labels = tensorArg(info, 3, "labels");
  return Task<pn::TrainStepResult>::Run(info.Env(), "pneumo.trainEngineStep",
                                        [e, images, masks, labels] { return pn::trainEngineStep(e, images, masks, labels); },
                                        [](Napi::Env env, pn::TrainStepResult& r) -> Napi::Value {
                                          auto o = Napi::Object::New(env);
                                          o.Set("loss", r.loss);
                                          o.Set("gradNorm", r.gradNorm);
                                          o.Set("finite", r.finite);
                                          o.Set("stepped", r.stepped);
                                          o.Set("lossScale", r.lossScale);
                                          o.Set("overflow", r.overflow);
                                          o.Set("graphed", r.graphed);
                                          return o;
                                        });
}

/** trainEngineGraphStatus(engine) -> { mode, active, captures, replays, eagerSteps, reason }. */
Napi::Value TrainEngineGraphStatus(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  const pn::TrainEngineGraphStatus s = syncCall(info.Env(), [&] { return pn::trainEngineGraphStatus(e); });
  auto o = Napi::Object::New(info.Env());
  o.Set("mode", s.mode);
  o.Set("active", s.active);
  o.Set("captures", static_cast<double>(s.captures));
  o.Set("replays", static_cast<double>(s.replays));
  o.Set("eagerSteps", static_cast<double>(s.eagerSteps));
  o.Set("reason", s.reason);
  return o;
}

Napi::Value TrainEnginePending(const Napi::CallbackInfo& info) {
  pn::TrainEngine e = engineArg(info, 0);
  return Napi::Number::New(info.Env(), static_cast<double>(syncCall(info.Env(), [&] { return pn::trainEnginePending(e); })));
}

}  // namespace

pn::TrainEngine engineArg(const Napi::CallbackInfo& info, size_t i) { return handleArg<EngineOps>(info, i); }

void InitTrain(Napi::Env env, Napi::Object exports) {
  exports.Set("lossForwardBackward", Napi::Function::New(env, LossForwardBackward, "lossForwardBackward"));
  exports.Set("createOptimizer", Napi::Function::New(env, CreateOptimizer, "createOptimizer"));
  exports.Set("optimizerDispose", Napi::Function::New(env, HandleDispose<OptimizerOps>, "optimizerDispose"));
  exports.Set("optimizerStep", Napi::Function::New(env, OptimizerStep, "optimizerStep"));
  exports.Set("optimizerZeroGrad", Napi::Function::New(env, OptimizerZeroGrad, "optimizerZeroGrad"));
  exports.Set("optimizerGradNorm", Napi::Function::New(env, OptimizerGradNorm, "optimizerGradNorm"));
  exports.Set("optimizerClipGradNorm", Napi::Function::New(env, OptimizerClipGradNorm, "optimizerClipGradNorm"));
  exports.Set("optimizerGroups", Napi::Function::New(env, HandleGroups<OptimizerOps>, "optimizerGroups"));
  exports.Set("optimizerSetLr", Napi::Function::New(env, HandleSetLr<OptimizerOps>, "optimizerSetLr"));
  exports.Set("optimizerScaleLr", Napi::Function::New(env, HandleScaleLr<OptimizerOps>, "optimizerScaleLr"));
  exports.Set("optimizerStateDict", Napi::Function::New(env, HandleState<OptimizerOps>, "optimizerStateDict"));
  exports.Set("optimizerLoadStateDict", Napi::Function::New(env, HandleLoadState<OptimizerOps>, "optimizerLoadStateDict"));
  exports.Set("makeParameter", Napi::Function::New(env, MakeParameter, "makeParameter"));
  exports.Set("setGradient", Napi::Function::New(env, SetGradient, "setGradient"));
  exports.Set("gradientOf", Napi::Function::New(env, GradientOf, "gradientOf"));
  exports.Set("createTrainEngine", Napi::Function::New(env, CreateTrainEngine, "createTrainEngine"));
  exports.Set("trainEngineDispose", Napi::Function::New(env, HandleDispose<EngineOps>, "trainEngineDispose"));
  exports.Set("trainEngineStep", Napi::Function::New(env, TrainEngineStep, "trainEngineStep"));
  exports.Set("trainEngineGroups", Napi::Function::New(env, HandleGroups<EngineOps>, "trainEngineGroups"));
  exports.Set("trainEngineSetLr", Napi::Function::New(env, HandleSetLr<EngineOps>, "trainEngineSetLr"));
  exports.Set("trainEngineScaleLr", Napi::Function::New(env, HandleScaleLr<EngineOps>, "trainEngineScaleLr"));
  exports.Set("trainEngineOptimizerState", Napi::Function::New(env, HandleState<EngineOps>, "trainEngineOptimizerState"));
  exports.Set("trainEngineLoadOptimizerState", Napi::Function::New(env, HandleLoadState<EngineOps>, "trainEngineLoadOptimizerState"));
  exports.Set("trainEnginePending", Napi::Function::New(env, TrainEnginePending, "trainEnginePending"));
  exports.Set("trainEngineGraphStatus", Napi::Function::New(env, TrainEngineGraphStatus, "trainEngineGraphStatus"));
}

}  // namespace pn::binding
