// The model slice of the N-API boundary (native/models/model_api.h, and prediction from
// native/train/train_api.h <-> src/native/model.ts). NativeModel wraps a pn::Model. Everything that
// runs the network, builds it or touches files is a Task; the model serialises its own work (one
// mutex), so JS may queue several calls on one model.
#include <napi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"
#include "../models/model_api.h"
#include "../train/train_api.h"
#include "args.h"
#include "slices.h"
#include "task.h"

namespace pn::binding {
namespace {

pn::ModelSpec argModelSpec(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsObject()) throwType(info.Env(), "Expected an object for spec");
  const auto o = info[i].As<Napi::Object>();
  pn::ModelSpec spec;
  spec.architecture = stringOption(o, "architecture");
  spec.encoder = stringOption(o, "encoder");
  spec.encoderPath = stringOption(o, "encoderPath");
  const Napi::Value widths = o.Get("decoderChannels");
  if (widths.IsArray()) {
    const auto a = widths.As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); ++k) spec.decoderChannels.push_back(static_cast<int64_t>(a.Get(k).ToNumber().DoubleValue()));
  }
  spec.classes = integerOption(o, "classes", 1);
  spec.inChannels = integerOption(o, "inChannels", 3);
  spec.classificationHead = flagOption(o, "classificationHead");
  spec.channelsLast = flagOption(o, "channelsLast");
  spec.precision = stringOption(o, "precision", "fp32");
  spec.json = stringOption(o, "json", "{}");
  return spec;
}

Napi::Value modelOutputToJs(Napi::Env env, pn::ModelOutput& r) {
  auto o = Napi::Object::New(env);
  o.Set("mask", wrapTensor(env, std::move(r.mask)));
  if (r.label.defined()) o.Set("label", wrapTensor(env, std::move(r.label)));
  return o;
}

/** A JS object owning one pn::Model; freed by dispose() or by its finalizer. */
class NativeModel final : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {
                           InstanceAccessor<&NativeModel::Disposed>("disposed"),
                           InstanceAccessor<&NativeModel::Training>("training"),
                           InstanceAccessor<&NativeModel::EncoderFrozen>("encoderFrozen"),
                           InstanceAccessor<&NativeModel::Device>("device"),
                           InstanceAccessor<&NativeModel::SpecJson>("specJson"),
                           InstanceAccessor<&NativeModel::EncoderInfo>("encoderInfo"),
                           InstanceMethod<&NativeModel::Dispose>("dispose"),
                           InstanceMethod<&NativeModel::Forward>("forward"),
                           InstanceMethod<&NativeModel::Encode>("encode"),
                           InstanceMethod<&NativeModel::Train>("train"),
                           InstanceMethod<&NativeModel::FreezeEncoder>("freezeEncoder"),
                           InstanceMethod<&NativeModel::SetPrecision>("setPrecision"),
                           InstanceMethod<&NativeModel::ParameterCounts>("parameterCounts"),
                           InstanceMethod<&NativeModel::To>("to"),
                           InstanceMethod<&NativeModel::StateDict>("stateDict"),
                           InstanceMethod<&NativeModel::LoadStateDict>("loadStateDict"),
                           InstanceMethod<&NativeModel::SaveCheckpoint>("saveCheckpoint"),
                           InstanceMethod<&NativeModel::ExportTorchScript>("exportTorchScript"),
                           InstanceMethod<&NativeModel::GradientStep>("gradientStep"),
                           InstanceMethod<&NativeModel::SetInferenceOptimization>("setInferenceOptimization"),
                       });
  }

  explicit NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throwType(info.Env(), "NativeModel cannot be constructed from JS: use createModel or loadModel");
    }
    model_ = *info[0].As<Napi::External<pn::Model>>().Data();
  }

  void Finalize(Napi::Env) override { model_ = pn::Model(); }

  const pn::Model& get(Napi::Env env) const {
    if (!model_.defined()) throw Napi::Error::New(env, "Model has been disposed");
    return model_;
  }

  static Napi::Function constructorOf(Napi::Env env) { return env.GetInstanceData<AddonData>()->modelConstructor.Value(); }

  static const pn::Model& argOf(const Napi::CallbackInfo& info, size_t i) {
    if (info.Length() <= i || !info[i].IsObject() || !info[i].As<Napi::Object>().InstanceOf(constructorOf(info.Env()))) {
      throwType(info.Env(), "Expected a NativeModel for model");
    }
    return Unwrap(info[i].As<Napi::Object>())->get(info.Env());
  }

 private:
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !model_.defined()); }
  Napi::Value Training(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), syncCall(info.Env(), [&] { return pn::modelIsTraining(get(info.Env())); }));
  }
  Napi::Value EncoderFrozen(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), syncCall(info.Env(), [&] { return pn::modelEncoderFrozen(get(info.Env())); }));
  }
  Napi::Value Device(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), syncCall(info.Env(), [&] { return pn::modelDevice(get(info.Env())); }));
  }
  Napi::Value SpecJson(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), syncCall(info.Env(), [&] { return pn::modelSpecJson(get(info.Env())); }));
  }
  Napi::Value EncoderInfo(const Napi::CallbackInfo& info) {
    const pn::EncoderInfo e = syncCall(info.Env(), [&] { return pn::modelEncoderInfo(get(info.Env())); });
    auto o = Napi::Object::New(info.Env());
    o.Set("channels", toJsArray(info.Env(), e.channels));
    o.Set("strides", toJsArray(info.Env(), e.strides));
    o.Set("requiredDivisor", static_cast<double>(e.requiredDivisor));
    return o;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_ = pn::Model();
    return info.Env().Undefined();
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    pn::Tensor x = tensorArg(info, 0, "input");
    return Task<pn::ModelOutput>::Run(info.Env(), "pneumo.modelForward", [m, x] { return pn::modelForward(m, x); }, modelOutputToJs);
  }

  Napi::Value Encode(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    pn::Tensor x = tensorArg(info, 0, "input");
    return Task<std::vector<pn::Tensor>>::Run(info.Env(), "pneumo.modelEncode", [m, x] { return pn::modelEncode(m, x); },
                                              [](Napi::Env env, std::vector<pn::Tensor>& r) -> Napi::Value {
                                                auto a = Napi::Array::New(env, r.size());
                                                for (size_t k = 0; k < r.size(); ++k) a.Set(static_cast<uint32_t>(k), wrapTensor(env, std::move(r[k])));
                                                return a;
                                              });
  }

  Napi::Value Train(const Napi::CallbackInfo& info) {
    const bool on = info.Length() == 0 || info[0].ToBoolean().Value();
    syncCall(info.Env(), [&] {
      pn::modelSetTraining(get(info.Env()), on);
      return 0;
    });
    return info.Env().Undefined();
  }

  Napi::Value FreezeEncoder(const Napi::CallbackInfo& info) {
    const bool on = info.Length() == 0 || info[0].ToBoolean().Value();
    syncCall(info.Env(), [&] {
      pn::modelFreezeEncoder(get(info.Env()), on);
      return 0;
    });
    return info.Env().Undefined();
  }

  Napi::Value SetPrecision(const Napi::CallbackInfo& info) {
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
      throwType(info.Env(), "Expected (precision: string, specJson: string) for setPrecision");
    }
    const std::string precision = info[0].As<Napi::String>().Utf8Value();
    const std::string json = info[1].As<Napi::String>().Utf8Value();
    syncCall(info.Env(), [&] {
      pn::modelSetPrecision(get(info.Env()), precision, json);
      return 0;
    });
    return info.Env().Undefined();
  }

  Napi::Value ParameterCounts(const Napi::CallbackInfo& info) {
    const pn::ParameterCounts c = syncCall(info.Env(), [&] { return pn::modelParameterCounts(get(info.Env())); });
    auto o = Napi::Object::New(info.Env());
    o.Set("total", static_cast<double>(c.total));
    o.Set("encoder", static_cast<double>(c.encoder));
    o.Set("decoder", static_cast<double>(c.decoder));
    o.Set("trainable", static_cast<double>(c.trainable));
    return o;
  }

  Napi::Value To(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    const std::string device = argString(info, 0, "device");
    return Task<int>::Run(
        info.Env(), "pneumo.modelTo",
        [m, device] {
          pn::modelTo(m, device);
          return 0;
        },
        [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
  }

  Napi::Value StateDict(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    return Task<NamedTensors>::Run(
        info.Env(), "pneumo.stateDict", [m] { return pn::modelStateDict(m); },
        [](Napi::Env env, NamedTensors& r) -> Napi::Value { return namedTensorsResult(env, r); }, RunOn::Pool);
  }

  Napi::Value LoadStateDict(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    auto tensors = namedTensorsArg(info, 0, "tensors");
    const std::string prefix = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    const bool strict = info.Length() > 2 && info[2].ToBoolean().Value();
    return Task<pn::StateDictReport>::Run(
        info.Env(), "pneumo.loadStateDict", [m, tensors, prefix, strict] { return pn::modelLoadStateDict(m, tensors, prefix, strict); },
        [](Napi::Env env, pn::StateDictReport& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("loaded", static_cast<double>(r.loaded));
          o.Set("missing", stringsToJs(env, r.missing));
          o.Set("unexpected", stringsToJs(env, r.unexpected));
          return o;
        }, RunOn::Pool);
  }

  Napi::Value SaveCheckpoint(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    const std::string path = argString(info, 0, "path");
    pn::CheckpointExtras extras;
    extras.metadataJson = argString(info, 1, "metadataJson");
    if (info.Length() > 2 && !info[2].IsUndefined()) extras.optimizer = namedTensorsArg(info, 2, "optimizer");
    return Task<int>::Run(
        info.Env(), "pneumo.saveCheckpoint",
        [m, path, extras] {
          pn::saveCheckpoint(m, path, extras);
          return 0;
        },
        [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); }, RunOn::Pool);
  }

  Napi::Value ExportTorchScript(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    const std::string path = argString(info, 0, "path");
    return Task<int>::Run(
        info.Env(), "pneumo.exportTorchScript",
        [m, path] {
          pn::exportTorchScript(m, path);
          return 0;
        },
        [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); }, RunOn::Pool);
  }

  Napi::Value GradientStep(const Napi::CallbackInfo& info) {
    pn::Model m = get(info.Env());
    pn::Tensor x = tensorArg(info, 0, "input");
    const double lr = argNumber(info, 1, "lr");
    const bool statistics = info.Length() < 3 || info[2].ToBoolean().Value();
    return Task<pn::GradientReport>::Run(info.Env(), "pneumo.gradientStep",
                                         [m, x, lr, statistics] { return pn::modelGradientStep(m, x, lr, statistics); },
                                         [](Napi::Env env, pn::GradientReport& r) -> Napi::Value {
                                           auto o = Napi::Object::New(env);
                                           o.Set("loss", r.loss);
                                           o.Set("gradientNorm", r.gradientNorm);
                                           o.Set("finite", r.finite);
                                           o.Set("trainableTensors", static_cast<double>(r.trainableTensors));
                                           o.Set("tensorsWithGradient", static_cast<double>(r.tensorsWithGradient));
                                           o.Set("tensorsWithNonzeroGradient", static_cast<double>(r.tensorsWithNonzeroGradient));
                                           return o;
                                         });
  }

  Napi::Value SetInferenceOptimization(const Napi::CallbackInfo& info) {
    const bool on = info.Length() > 0 && info[0].ToBoolean().Value();
    syncCall(info.Env(), [&] {
      pn::modelSetInferenceOptimization(get(info.Env()), on);
      return 0;
    });
    return info.Env().Undefined();
  }

  pn::Model model_;
};

/** createModel(spec, device) -> Promise<NativeModel>. */
Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  const pn::ModelSpec spec = argModelSpec(info, 0);
  const std::string device = argString(info, 1, "device");
  return Task<pn::Model>::Run(info.Env(), "pneumo.createModel", [spec, device] { return pn::createModel(spec, device); },
                              [](Napi::Env env, pn::Model& m) -> Napi::Value { return wrapModel(env, std::move(m)); });
}

/** loadModel(path, device) -> Promise<{ model, kind, metadataJson, optimizer }>. */
Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  const std::string path = argString(info, 0, "path");
  const std::string device = argString(info, 1, "device");
  return Task<pn::LoadedCheckpoint>::Run(info.Env(), "pneumo.loadModel", [path, device] { return pn::loadCheckpoint(path, device); },
                                         [](Napi::Env env, pn::LoadedCheckpoint& r) -> Napi::Value {
                                           auto o = Napi::Object::New(env);
                                           o.Set("model", wrapModel(env, std::move(r.model)));
                                           o.Set("kind", r.kind);
                                           o.Set("metadataJson", r.extras.metadataJson);
                                           o.Set("optimizer", namedTensorsResult(env, r.extras.optimizer));
                                           return o;
                                         });
}

/** readStateDict(path) -> Promise<[name, NativeTensor][]> from a Python torch.save file. */
Napi::Value ReadStateDict(const Napi::CallbackInfo& info) {
  const std::string path = argString(info, 0, "path");
  return Task<NamedTensors>::Run(
      info.Env(), "pneumo.readStateDict", [path] { return pn::readTorchStateDict(path); },
      [](Napi::Env env, NamedTensors& r) -> Napi::Value { return namedTensorsResult(env, r); }, RunOn::Pool);
}

/** writeStateDict(path, [[name, NativeTensor], ...]) -> Promise<void> (torch.load reads it). */
Napi::Value WriteStateDict(const Napi::CallbackInfo& info) {
  const std::string path = argString(info, 0, "path");
  auto tensors = namedTensorsArg(info, 1, "tensors");
  return Task<int>::Run(
      info.Env(), "pneumo.writeStateDict",
      [path, tensors] {
        pn::writeTorchStateDict(path, tensors);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); }, RunOn::Pool);
}

/** readSafetensors(path, dataOffset, [{ name, dtype, shape, begin, end }]) -> Promise<[name, NativeTensor][]>. */
Napi::Value ReadSafetensors(const Napi::CallbackInfo& info) {
  const std::string path = argString(info, 0, "path");
  const auto offset = static_cast<uint64_t>(argInteger(info, 1, "dataOffset"));
  if (info.Length() <= 2 || !info[2].IsArray()) throwType(info.Env(), "Expected an array of entries for entries");
  const auto a = info[2].As<Napi::Array>();
  std::vector<pn::SafetensorsEntry> entries;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    if (!a.Get(k).IsObject()) throwType(info.Env(), "Expected an array of entries for entries");
    const auto e = a.Get(k).As<Napi::Object>();
    pn::SafetensorsEntry entry;
    entry.name = e.Get("name").ToString().Utf8Value();
    entry.dtype = e.Get("dtype").ToString().Utf8Value();
    const auto shape = e.Get("shape").As<Napi::Array>();
    for (uint32_t d = 0; d < shape.Length(); ++d) entry.shape.push_back(static_cast<int64_t>(shape.Get(d).ToNumber().DoubleValue()));
    entry.begin = static_cast<uint64_t>(e.Get("begin").ToNumber().DoubleValue());
    entry.end = static_cast<uint64_t>(e.Get("end").ToNumber().DoubleValue());
    if (e.Has("strides") && e.Get("strides").IsArray()) {
      const auto strides = e.Get("strides").As<Napi::Array>();
      for (uint32_t d = 0; d < strides.Length(); ++d) entry.strides.push_back(static_cast<int64_t>(strides.Get(d).ToNumber().DoubleValue()));
    }
    entries.push_back(std::move(entry));
  }
  return Task<NamedTensors>::Run(
      info.Env(), "pneumo.readSafetensors", [path, offset, entries] { return pn::readSafetensors(path, offset, entries); },
      [](Napi::Env env, NamedTensors& r) -> Napi::Value { return namedTensorsResult(env, r); }, RunOn::Pool);
}

/** modelPredict(model, input, tta, cudaGraph = true) -> Promise<{ mask, label? }> (sigmoid probabilities). */
Napi::Value ModelPredict(const Napi::CallbackInfo& info) {
  pn::Model m = NativeModel::argOf(info, 0);
  pn::Tensor x = tensorArg(info, 1, "input");
  const bool tta = info.Length() > 2 && info[2].ToBoolean().Value();
  const bool cudaGraph = info.Length() <= 3 || info[3].IsUndefined() || info[3].ToBoolean().Value();
  return Task<pn::ModelOutput>::Run(info.Env(), "pneumo.modelPredict", [m, x, tta, cudaGraph] { return pn::modelPredict(m, x, tta, cudaGraph); },
                                    modelOutputToJs);
}

/** modelGraphStatus(model) -> { graphs, captures, replays, eagerCalls, reason } (waits for a running call). */
Napi::Value ModelGraphStatus(const Napi::CallbackInfo& info) {
  pn::Model m = NativeModel::argOf(info, 0);
  const pn::ModelGraphStatus s = syncCall(info.Env(), [&] { return pn::modelGraphStatus(m); });
  auto o = Napi::Object::New(info.Env());
  o.Set("graphs", static_cast<double>(s.graphs));
  o.Set("captures", static_cast<double>(s.captures));
  o.Set("replays", static_cast<double>(s.replays));
  o.Set("eagerCalls", static_cast<double>(s.eagerCalls));
  o.Set("reason", s.reason);
  return o;
}

}  // namespace

Napi::Object wrapModel(Napi::Env env, pn::Model model) {
  return NativeModel::constructorOf(env).New({Napi::External<pn::Model>::New(env, &model)});
}

const pn::Model& modelArg(const Napi::CallbackInfo& info, size_t i) { return NativeModel::argOf(info, i); }

void InitModel(Napi::Env env, Napi::Object exports) {
  Napi::Function modelClass = NativeModel::Define(env);
  env.GetInstanceData<AddonData>()->modelConstructor = Napi::Persistent(modelClass);
  exports.Set("NativeModel", modelClass);
  exports.Set("createModel", Napi::Function::New(env, CreateModel, "createModel"));
  exports.Set("loadModel", Napi::Function::New(env, LoadModel, "loadModel"));
  exports.Set("readStateDict", Napi::Function::New(env, ReadStateDict, "readStateDict"));
  exports.Set("writeStateDict", Napi::Function::New(env, WriteStateDict, "writeStateDict"));
  exports.Set("readSafetensors", Napi::Function::New(env, ReadSafetensors, "readSafetensors"));
  exports.Set("modelPredict", Napi::Function::New(env, ModelPredict, "modelPredict"));
  exports.Set("modelGraphStatus", Napi::Function::New(env, ModelGraphStatus, "modelGraphStatus"));
}

}  // namespace pn::binding
