// The SWA slice of the N-API boundary (native/train/train_api.h, SWA <-> src/native/swa.ts): weighted
// state-dict averaging and the BatchNorm statistics recompute (a type-tagged External session).
#include <napi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/api.h"
#include "../train/train_api.h"
#include "args.h"
#include "slices.h"
#include "task.h"

namespace pn::binding {
namespace {

const napi_type_tag kBatchNormTag = {0x706e62617463686eULL, 0x6f726d2d72656331ULL};

/** averageStateDicts([[[name, NativeTensor], ...], ...], weights: number[]) -> Promise<[name, NativeTensor][]>. */
Napi::Value AverageStateDicts(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsArray()) throwType(info.Env(), "Expected an array of state dicts for dicts");
  const auto a = info[0].As<Napi::Array>();
  std::vector<NamedTensors> dicts;
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value entry = a.Get(k);
    if (!entry.IsArray()) throwType(info.Env(), "Expected an array of [name, Tensor] pairs for dicts[" + std::to_string(k) + "]");
    const auto pairs = entry.As<Napi::Array>();
    NamedTensors dict;
    for (uint32_t j = 0; j < pairs.Length(); ++j) {
      const Napi::Value pair = pairs.Get(j);
      if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2 || !pair.As<Napi::Array>().Get(0u).IsString()) {
        throwType(info.Env(), "Expected [name, Tensor] pairs for dicts[" + std::to_string(k) + "]");
      }
      const pn::Tensor* t = tensorOf(info.Env(), pair.As<Napi::Array>().Get(1u));
      if (t == nullptr) throwType(info.Env(), "Expected [name, Tensor] pairs for dicts[" + std::to_string(k) + "]");
      dict.emplace_back(pair.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value(), *t);
    }
    dicts.push_back(std::move(dict));
  }
  std::vector<double> weights;
  if (info.Length() > 1 && info[1].IsArray()) {
    const auto w = info[1].As<Napi::Array>();
    for (uint32_t k = 0; k < w.Length(); ++k) {
      if (!w.Get(k).IsNumber()) throwType(info.Env(), "Expected an array of numbers for weights");
      weights.push_back(w.Get(k).As<Napi::Number>().DoubleValue());
    }
  }
  return Task<NamedTensors>::Run(
      info.Env(), "pneumo.averageStateDicts", [dicts, weights] { return pn::averageStateDicts(dicts, weights); },
      [](Napi::Env env, NamedTensors& r) -> Napi::Value { return namedTensorsResult(env, r); });
}

pn::BatchNormRecompute batchNormArg(const Napi::CallbackInfo& info, size_t i) {
  return taggedArg<pn::BatchNormRecompute>(info, i, kBatchNormTag, "a BatchNorm recompute handle");
}

/** batchNormRecomputeBegin(model) -> Promise<handle>: saves the statistics, train mode, measures each layer's update factor. */
Napi::Value BatchNormRecomputeBegin(const Napi::CallbackInfo& info) {
  pn::Model m = modelArg(info, 0);
  return Task<pn::BatchNormRecompute>::Run(info.Env(), "pneumo.batchNormRecomputeBegin", [m] { return pn::beginBatchNormRecompute(m); },
                                           [](Napi::Env env, pn::BatchNormRecompute& s) -> Napi::Value {
                                             return makeHandle(env, std::move(s), kBatchNormTag);
                                           });
}

Napi::Value BatchNormRecomputeAdd(const Napi::CallbackInfo& info) {
  pn::BatchNormRecompute s = batchNormArg(info, 0);
  pn::Tensor x = tensorArg(info, 1, "batch");
  return Task<int64_t>::Run(info.Env(), "pneumo.batchNormRecomputeAdd", [s, x] { return pn::batchNormRecomputeAdd(s, x); },
                            [](Napi::Env env, int64_t& n) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(n)); });
}

Napi::Value BatchNormRecomputeFinish(const Napi::CallbackInfo& info) {
  pn::BatchNormRecompute s = batchNormArg(info, 0);
  return Task<int64_t>::Run(info.Env(), "pneumo.batchNormRecomputeFinish", [s] { return pn::finishBatchNormRecompute(s); },
                            [](Napi::Env env, int64_t& n) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(n)); });
}

Napi::Value BatchNormRecomputeAbort(const Napi::CallbackInfo& info) {
  pn::BatchNormRecompute s = batchNormArg(info, 0);
  return Task<int>::Run(
      info.Env(), "pneumo.batchNormRecomputeAbort",
      [s] {
        pn::abortBatchNormRecompute(s);
        return 0;
      },
      [](Napi::Env env, int&) -> Napi::Value { return env.Undefined(); });
}

}  // namespace

void InitSwa(Napi::Env env, Napi::Object exports) {
  exports.Set("averageStateDicts", Napi::Function::New(env, AverageStateDicts, "averageStateDicts"));
  exports.Set("batchNormRecomputeBegin", Napi::Function::New(env, BatchNormRecomputeBegin, "batchNormRecomputeBegin"));
  exports.Set("batchNormRecomputeAdd", Napi::Function::New(env, BatchNormRecomputeAdd, "batchNormRecomputeAdd"));
  exports.Set("batchNormRecomputeFinish", Napi::Function::New(env, BatchNormRecomputeFinish, "batchNormRecomputeFinish"));
  exports.Set("batchNormRecomputeAbort", Napi::Function::New(env, BatchNormRecomputeAbort, "batchNormRecomputeAbort"));
}

}  // namespace pn::binding
